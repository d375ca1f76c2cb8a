"""Image files: which files of a folder are images, and one file decoded to a uint8 array, upright.

Only Pillow decodes (imported when an image is read); hidden files and folders and other suffixes
are skipped. Every reader of images (training, calibration, evaluation, prediction, the device
script) comes through read_image, so all of them see the same upright pixels (docs/data.md).
"""
from __future__ import annotations

import os
import sys
import warnings
from pathlib import Path

import numpy as np

from .errors import BadInput
from .needs import pil

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp")
GRAY_MODES = {"1", "L", "LA", "I", "I;16", "I;16L", "I;16B", "I;16N", "F"}
ORIENTATION = 0x0112   # the EXIF tag a camera sets instead of turning the pixels
# EXIF orientation -> the Pillow transpose that shows the picture upright (as Pillow's ImageOps.exif_transpose;
# codes, not Image.Transpose names, so any Pillow >= 9 takes them): FLIP_LEFT_RIGHT 0, FLIP_TOP_BOTTOM 1,
# ROTATE_90 2, ROTATE_180 3, ROTATE_270 4, TRANSPOSE 5, TRANSVERSE 6.
UPRIGHT = {2: 0, 3: 3, 4: 1, 5: 5, 6: 4, 7: 6, 8: 2}
# An image whose shorter side is under 1/SMALL_FACTOR of the model's is stretched so far that little
# is left to classify (a 1x1 upload, a thumbnail). MNIST's 28 px at a 224 px model is exactly 8 times: fine.
SMALL_FACTOR = 8
_WARNED: set = set()   # paths already warned about: a streamed file is decoded once an epoch, said once


class UnreadableImage(BadInput):
    """One image file that cannot be decoded: `path` and `reason` for the lists of --skip-bad."""

    def __init__(self, path, reason: str):
        super().__init__(f"cannot read image {shown(path)}: {reason}")
        self.path, self.reason = str(path), reason


def shown(path) -> str:
    """A path as text that any output takes: a file name that is not UTF-8 (a Latin-1 name from an
    old camera card) keeps its bytes visible as \\xNN instead of lone surrogates, which a strict
    JSON reader or a UTF-8 stdout refuses."""
    return os.fsencode(os.fspath(path)).decode("utf-8", "backslashreplace")


def warn(text: str) -> None:
    """Our own warning line on stderr: visible without --verbose (other packages' warnings are not)."""
    print(f"warning: {text}", file=sys.stderr)


def read_image(path) -> np.ndarray:
    """(H, W, 1) uint8 for grayscale files, (H, W, 3) for everything else, turned upright by its EXIF
    orientation; alpha dropped; 16-bit scaled to 8. Pillow's decompression-bomb limits: above its
    warning limit a `warning:` line, above its error limit refused (nothing decoded)."""
    Image = pil()
    try:
        with warnings.catch_warnings():
            # Pillow's own DecompressionBombWarning would be hidden without --verbose (noise.py): said below
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            with Image.open(path) as img:
                _warn_if_large(path, img.size, Image.MAX_IMAGE_PIXELS)
                img.load()  # decode now, so a corrupt file fails here with its name
                return _pixels(upright(img))
    except Image.DecompressionBombError as e:
        limit = 2 * (Image.MAX_IMAGE_PIXELS or 0) / 1e6
        raise UnreadableImage(path, f"larger than Pillow's decompression-bomb limit of {limit:.0f} megapixels "
                                    f"({e}); downscale it") from None
    except (OSError, SyntaxError, ValueError) as e:
        raise UnreadableImage(path, str(e)) from None


def upright(img):
    """The image as a viewer shows it: its EXIF orientation applied (a phone stores a portrait photo
    sideways and tags it 6 or 8). An unreadable EXIF block counts as no orientation."""
    try:
        orientation = img.getexif().get(ORIENTATION, 1)
    except (OSError, SyntaxError, ValueError, TypeError, KeyError):
        return img
    return img.transpose(UPRIGHT[orientation]) if orientation in UPRIGHT else img


def _pixels(img) -> np.ndarray:
    if img.mode not in GRAY_MODES:
        return np.asarray(img.convert("RGB"))
    if img.mode.startswith("I"):  # 16-bit PNGs: scale 0..65535 to 0..255 (convert("L") would clip)
        wide = np.asarray(img, dtype=np.float64)
        return np.rint(np.clip(wide, 0, 65535) / 257.0).astype(np.uint8)[..., None]
    return np.asarray(img.convert("L"))[..., None]  # "1" -> 0/255, "LA" drops alpha, "F" clips


def _warn_if_large(path, size, limit) -> None:
    w, h = size
    if limit and w * h > limit and str(path) not in _WARNED:
        _WARNED.add(str(path))
        warn(f"{shown(path)} is {w}x{h} ({w * h / 1e6:.0f} megapixels), above Pillow's decompression-bomb "
             f"warning limit of {limit / 1e6:.0f}: it takes {w * h * 3 / 2 ** 20:.0f} MiB to decode, and the model "
             f"sees it shrunk to its input size")


def read_images(files, wrap=None, bad: list | None = None):
    """Stacked (N, H, W, C) uint8 when every image has one shape, else a list of (H, W, C) arrays.
    wrap: an optional iterator wrapper over the files being decoded (the host's progress bar).
    bad: None, the first unreadable file stops the read (UnreadableImage names it); a list, each
    unreadable file is left out and appended to it as (path, reason) (--skip-bad)."""
    images = []
    for p in (wrap(files) if wrap else files):
        try:
            images.append(read_image(p))
        except UnreadableImage as e:
            if bad is None:
                raise
            bad.append((e.path, e.reason))
    return np.stack(images) if len({im.shape for im in images}) == 1 else images


def header_size(path) -> tuple:
    """(height, width) of an image file as its header says, nothing decoded (as stored: the EXIF
    orientation may swap them, which leaves the shorter side, all small_images looks at, as it is)."""
    Image = pil()
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            with Image.open(path) as img:
                return img.size[1], img.size[0]
    except Image.DecompressionBombError as e:
        raise UnreadableImage(path, f"larger than Pillow's decompression-bomb limit ({e})") from None
    except (OSError, SyntaxError, ValueError) as e:
        raise UnreadableImage(path, str(e)) from None


def small_images(sizes, input_size, names=None) -> str | None:
    """The warning for images much smaller than the model's input (shorter side under 1/SMALL_FACTOR
    of the input's), or None. sizes: (N, 2) heights and widths; names: the files, to name a few."""
    sizes = np.asarray(sizes, np.int64).reshape(-1, 2)
    h, w = (int(s) for s in input_size)
    small = np.flatnonzero(sizes.min(axis=1) * SMALL_FACTOR < min(h, w))
    if not len(small):
        return None
    some = ", ".join(f"{shown(names[i]) + ' ' if names is not None else ''}({sizes[i, 0]}x{sizes[i, 1]})"
                     for i in small[np.argsort(sizes[small].min(axis=1), kind="stable")][:5])
    more = f" and {len(small) - 5} more" if len(small) > 5 else ""
    return (f"{len(small)} of {len(sizes)} images are much smaller than the model's {h}x{w} input (under "
            f"1/{SMALL_FACTOR} of its side: stretched to fit, little is left to classify): {some}{more}")


# ---- finding image files -----------------------------------------------------------------------------

def image_files(paths, bad: list | None = None) -> list:
    """Image files from files and folders (a folder: every image below it, sorted). bad: None, a
    missing path or a folder without images stops here; a list, each is appended as (path, reason)
    and the others kept (`predict` answers per file)."""
    files = []
    for p in map(Path, paths):
        try:
            files += _image_files_of(p)
        except BadInput as e:
            if bad is None:
                raise
            bad.append((str(p), str(e)))
    return files


def _image_files_of(p: Path) -> list:
    if p.is_dir():
        found = images_below(p)
        if not found:
            raise BadInput(f"folder {shown(p)} has no images ({'/'.join(s[1:] for s in IMAGE_SUFFIXES)})")
        return found
    if p.is_file():
        return [p]
    if p.is_symlink():   # a link to nothing, or to itself: an image that cannot be read, said so when read
        return [p]
    raise BadInput(f"image not found: {shown(p)}")


def visible(folder: Path) -> list:
    return sorted(p for p in folder.iterdir() if not p.name.startswith("."))


def is_image(p: Path) -> bool:
    """An image file by its name: a file, or a link that leads nowhere or to itself (listed, so that
    reading it says why it cannot be read: no file is left out without a word)."""
    return p.suffix.lower() in IMAGE_SUFFIXES and not p.is_dir() and (p.is_file() or p.is_symlink())


def images_in(folder: Path) -> list:
    """The image files directly in folder, sorted."""
    return [p for p in visible(folder) if is_image(p)]


def images_below(folder: Path, _above: tuple = ()) -> list:
    """Every image file in folder and its sub-folders, hidden ones skipped, sorted by path. Linked
    folders are followed, except a link to a folder being walked or to one holding it (a loop: walked,
    it would never end or read the class's neighbours into it)."""
    real = os.path.realpath(folder)
    if any(a == real or a.startswith(real.rstrip(os.sep) + os.sep) for a in _above):
        return []
    found = []
    for p in visible(folder):
        if p.is_dir():
            found += images_below(p, (*_above, real))
        elif is_image(p):
            found.append(p)
    return sorted(found)


# ---- image folders: imagefolder:DIR (one sub-folder per class) and folder:DIR (unlabeled) ----------

def class_dirs(root: Path) -> list:
    return [p for p in visible(root) if p.is_dir()]


def imagefolder_files(root: Path) -> tuple:
    """(files, labels int64 (N,), classes) of imagefolder:DIR, nothing decoded yet: one sub-folder of
    images per class, images in its own sub-folders included; sorted folder names are the classes,
    files sorted within each."""
    dirs = class_dirs(root)
    if not dirs:
        raise BadInput(f"no class sub-folders in {shown(root)}; imagefolder:DIR wants one folder per class "
                       f"(use folder:DIR for unlabeled images)")
    files, labels = [], []
    for index, d in enumerate(dirs):
        found = images_below(d)
        if not found:
            raise BadInput(f"class folder {shown(d)} has no images (png/jpg/jpeg/bmp)")
        files += found
        labels += [index] * len(found)
    # class names are text the model records and prints: a folder name that is not UTF-8 shows its bytes
    return files, np.array(labels, np.int64), tuple(shown(d.name) for d in dirs)


def folder_files(root: Path) -> list:
    """The sorted image files of folder:DIR (unlabeled) and its sub-folders, nothing decoded yet."""
    files = images_below(root)
    if not files:
        raise BadInput(f"folder {shown(root)} has no images (png/jpg/jpeg/bmp)")
    return files


def folder_kind(root: Path) -> str | None:
    """"imagefolder" when a bare folder holds class sub-folders of images, "folder" when it holds
    images, None when it holds both or neither (the caller asks the user to say)."""
    has_images = bool(images_in(root))
    has_classes = any(images_below(d) for d in class_dirs(root))
    if has_images == has_classes:
        return None
    return "imagefolder" if has_classes else "folder"
