"""Image files: which files of a folder are images, and one file decoded to a uint8 array.

Only Pillow decodes (imported when an image is read); hidden files and other suffixes are skipped.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from .errors import BadInput
from .needs import pil

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp")
GRAY_MODES = {"1", "L", "LA", "I", "I;16", "I;16L", "I;16B", "I;16N", "F"}


def read_image(path) -> np.ndarray:
    """(H, W, 1) uint8 for grayscale files, (H, W, 3) for everything else; alpha dropped; 16-bit
    scaled to 8; Pillow's decompression-bomb limit enforced (a huge image is refused, not decoded)."""
    Image = pil()
    try:
        with Image.open(path) as img:
            img.load()  # decode now, so a corrupt file fails here with its name
            if img.mode not in GRAY_MODES:
                return np.asarray(img.convert("RGB"))
            if img.mode.startswith("I"):  # 16-bit PNGs: scale 0..65535 to 0..255 (convert("L") would clip)
                wide = np.asarray(img, dtype=np.float64)
                return np.rint(np.clip(wide, 0, 65535) / 257.0).astype(np.uint8)[..., None]
            return np.asarray(img.convert("L"))[..., None]  # "1" -> 0/255, "LA" drops alpha, "F" clips
    except (OSError, SyntaxError, ValueError, Image.DecompressionBombError) as e:
        raise BadInput(f"cannot read image {path}: {e}") from None


def read_images(files, wrap=None):
    """Stacked (N, H, W, C) uint8 when every image has one shape, else a list of (H, W, C) arrays.
    wrap: an optional iterator wrapper over the files being decoded (the host's progress bar)."""
    images = [read_image(p) for p in (wrap(files) if wrap else files)]
    return np.stack(images) if len({im.shape for im in images}) == 1 else images


def image_files(paths) -> list:
    """Image files from files and folders (a folder: every image below it, sorted)."""
    files = []
    for p in map(Path, paths):
        if p.is_dir():
            found = sorted(f for f in p.rglob("*") if f.suffix.lower() in IMAGE_SUFFIXES and not f.name.startswith("."))
            if not found:
                raise BadInput(f"folder {p} has no images ({'/'.join(s[1:] for s in IMAGE_SUFFIXES)})")
            files += found
        elif p.is_file():
            files.append(p)
        else:
            raise BadInput(f"image not found: {p}")
    return files


# ---- image folders: imagefolder:DIR (one sub-folder per class) and folder:DIR (unlabeled) ----------

def visible(folder: Path) -> list:
    return sorted(p for p in folder.iterdir() if not p.name.startswith("."))


def class_dirs(root: Path) -> list:
    return [p for p in visible(root) if p.is_dir()]


def images_in(folder: Path) -> list:
    return [p for p in visible(folder) if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file()]


def imagefolder_files(root: Path) -> tuple:
    """(files, labels int64 (N,), classes) of imagefolder:DIR, nothing decoded yet: one sub-folder of
    images per class; sorted folder names are the classes, files sorted within each."""
    dirs = class_dirs(root)
    if not dirs:
        raise BadInput(f"no class sub-folders in {root}; imagefolder:DIR wants one folder per class "
                       f"(use folder:DIR for unlabeled images)")
    files, labels = [], []
    for index, d in enumerate(dirs):
        found = images_in(d)
        if not found:
            raise BadInput(f"class folder {d} has no images (png/jpg/jpeg/bmp)")
        files += found
        labels += [index] * len(found)
    return files, np.array(labels, np.int64), tuple(d.name for d in dirs)


def folder_files(root: Path) -> list:
    """The sorted image files of folder:DIR (unlabeled), nothing decoded yet."""
    files = images_in(root)
    if not files:
        raise BadInput(f"folder {root} has no images (png/jpg/jpeg/bmp)")
    return files


def folder_kind(root: Path) -> str | None:
    """"imagefolder" when a bare folder holds class sub-folders of images, "folder" when it holds
    images, None when it holds both or neither (the caller asks the user to say)."""
    has_images = bool(images_in(root))
    has_classes = any(images_in(d) for d in class_dirs(root))
    if has_images == has_classes:
        return None
    return "imagefolder" if has_classes else "folder"
