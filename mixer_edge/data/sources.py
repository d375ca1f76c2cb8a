"""Data sources: a spec string -> an ImageSet of raw uint8 images.

    digits             scikit-learn's bundled 8x8 digits
    mnist:DIR          IDX files, gzipped or not
    cifar10:DIR        the binary or the python (pickle) version
    imagefolder:DIR    one sub-folder per class
    folder:DIR         unlabeled images
    DIR                a bare folder: imagefolder if it holds class folders, folder if it holds images

Image folders larger than runtime/streaming.STREAM_ABOVE_MB decoded are not decoded here: their ImageSet
holds ImageFiles, which decodes each image when it is used (docs/data.md, Streaming). ReadOptions says
what to do with unreadable image files (--skip-bad) and how to rename classes (--class-map).

SOURCES is the registry. A loader's parameter list is its spec grammar: no parameter means the bare
name, one parameter means NAME:DIR. The first docstring line is its --help text.
"""
from __future__ import annotations

import inspect
import re
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np

from ..errors import BadInput, unknown
from ..progress import PROGRESS_ABOVE, progress, say
from ..runtime import readers
from ..runtime.images import UnreadableImage, folder_files, folder_kind, imagefolder_files, images_in, shown
from ..runtime.streaming import ImageFiles, decoded_or_streamed
from .classmap import apply_class_map, read_class_map
from .dataset import SKIP_HINT, ImageSet


@dataclass(frozen=True)
class ReadOptions:
    """How a data set is read beyond its spec: skip_bad leaves unreadable image files out (listed,
    counted) instead of stopping at the first; class_map, a --class-map FILE, renames classes."""
    skip_bad: bool = False
    class_map: str | None = None


def load_data(spec: str, options: ReadOptions = ReadOptions()) -> ImageSet:
    """Load the data set a spec names; ImageSet.spec keeps the spec exactly as given. options: unreadable
    image files left out (each said in a `warning:` line, with a count) or the first one stopping the read;
    classes renamed by a class map."""
    mapping = read_class_map(options.class_map) if options.class_map else None   # a bad map fails before reading
    name, sep, arg = spec.partition(":")
    try:
        if name in SOURCES:
            data = _call(name, arg if sep else None, spec, options.skip_bad)
        else:
            data = _bare_path(spec, options.skip_bad)
    except UnreadableImage as e:   # the first unreadable file: named, and the way past it
        raise BadInput(f"{e}; {SKIP_HINT}") from None
    data = replace(data, spec=spec)
    if mapping is not None:
        data = apply_class_map(data, mapping, options.class_map)
    for f, why in data.skipped:
        say(f"skipped unreadable image {f}: {why}")
    if data.skipped:
        say(f"--skip-bad left out {len(data.skipped)} of {len(data) + len(data.skipped)} images of {shown(spec)} "
            f"(listed above)")
    return data


def describe_sources() -> list[tuple[str, str]]:
    """(name, one-line help) for every source, for --help text."""
    return [(name, inspect.getdoc(fn).splitlines()[0]) for name, fn in SOURCES.items()]


def _takes_folder(loader) -> bool:
    return bool(inspect.signature(loader).parameters)


def _call(name: str, arg: str | None, spec: str, skip_bad: bool = False) -> ImageSet:
    loader = SOURCES[name]
    if not _takes_folder(loader):
        if arg is not None:
            raise BadInput(f"data source {name!r} takes no folder, got {spec!r}; use: {name}")
        return loader()
    if not arg:
        raise BadInput(f"data source {name!r} needs a folder: {name}:DIR")
    root = Path(arg).expanduser()
    if not root.is_dir():
        what = "is a file, not a folder" if root.exists() else "not found"
        raise BadInput(f"data folder {what}: {arg} (from spec {spec!r})")
    return _load(loader, root, skip_bad)


def _load(loader, root: Path, skip_bad: bool) -> ImageSet:
    """loader(root), with skip_bad for the loaders of image files (the others have no files to skip)."""
    takes = "skip_bad" in inspect.signature(loader).parameters
    return loader(root, skip_bad=skip_bad) if takes else loader(root)


def _bare_path(spec: str, skip_bad: bool = False) -> ImageSet:
    """A spec with no known prefix: an existing folder of images, or a mistake we name."""
    root = Path(spec).expanduser()
    if root.is_dir():
        return _load(SOURCES[_guess_kind(root)], root, skip_bad)
    if root.exists():
        raise BadInput(f"data spec {spec!r} is a file; accepted: a folder, or "
                       f"{', '.join(SOURCES)} (an .npz calibration set goes to the calibration stage)")
    name, sep, _ = spec.partition(":")
    # 'svhn:DIR' is a source name we lack; 'C:\\x' (one letter) or './x' is a path that is not there.
    looks_named = bool(sep) and re.fullmatch(r"[A-Za-z][\w-]+", name)
    if not looks_named and (any(c in spec for c in "/\\~") or spec.startswith(".")):
        raise BadInput(f"data folder not found: {spec} (from spec {spec!r})")
    raise unknown("data source", name, SOURCES)


def _guess_kind(root: Path) -> str:
    kind = folder_kind(root)
    if kind is None:
        found = "both loose images and class sub-folders" if images_in(root) else "no images"
        raise BadInput(f"cannot tell what folder {root} holds ({found}); "
                       f"say imagefolder:{root} (one sub-folder per class) or folder:{root} (unlabeled)")
    return kind


# ---- digits -------------------------------------------------------------------------------------

def load_digits() -> ImageSet:
    """digits  scikit-learn's bundled 8x8 handwritten digits, 1,797 images, 10 classes."""
    return _image_set(readers.read_digits())


# ---- mnist, cifar10: the device runtime's readers (one implementation) --------------------------

def load_mnist(root: Path) -> ImageSet:
    """mnist:DIR  MNIST-style IDX files (*-images-idx3-ubyte[.gz] + *-labels-idx1-ubyte[.gz])."""
    return _image_set(readers.read_mnist(root))


def load_cifar10(root: Path) -> ImageSet:
    """cifar10:DIR  CIFAR-10, binary or python version, in DIR or its cifar-10-batches-* folder."""
    return _image_set(readers.read_cifar10(root))


def _image_set(d) -> ImageSet:
    return ImageSet(_images(d.images), d.labels, tuple(d.classes or ()), d.spec)


# ---- image folders ------------------------------------------------------------------------------

def load_imagefolder(root: Path, skip_bad: bool = False) -> ImageSet:
    """imagefolder:DIR  one sub-folder of png/jpg/bmp images (in it or below) per class; sorted names: the classes."""
    files, labels, classes = imagefolder_files(root)
    images, kept, skipped = _decoded_or_streamed(files, skip_bad, f"imagefolder:{root}")
    return ImageSet(images, labels[kept], classes, f"imagefolder:{root}", tuple(str(files[i]) for i in kept), skipped)


def load_folder(root: Path, skip_bad: bool = False) -> ImageSet:
    """folder:DIR  a folder of unlabeled png/jpg/bmp images, sub-folders too (for calibration or prediction)."""
    files = folder_files(root)
    images, kept, skipped = _decoded_or_streamed(files, skip_bad, f"folder:{root}")
    return ImageSet(images, None, (), f"folder:{root}", tuple(str(files[i]) for i in kept), skipped)


# The image-folder readers are the device runtime's (one implementation, so a device reads a folder
# as training did); these adapt them to ImageSet.

def _decoded_or_streamed(files: list, skip_bad: bool, spec: str) -> tuple:
    """(images, positions of the files kept, skipped (file, reason)): all images decoded now when they
    fit, else ImageFiles, decoded when used (the runtime's decoded_or_streamed, with the host's progress
    bar). skip_bad: unreadable files left out and listed, else the first stops the read."""
    bad = [] if skip_bad else None
    images = decoded_or_streamed(ImageFiles(files), _progress, bad)
    gone = {p for p, _ in bad or ()}
    kept = np.array([i for i, f in enumerate(files) if str(f) not in gone], np.int64)
    if not len(kept):
        first = f"{shown(bad[0][0])}: {bad[0][1]}"
        raise BadInput(f"none of the {len(files)} images of {shown(spec)} can be read (first: {first})")
    skipped = tuple((shown(p), why) for p, why in bad or ())
    return (images if isinstance(images, ImageFiles) else _images(images)), kept, skipped


def _images(images):
    """Stacked (N, H, W, C) when every image has one shape, else a tuple of (H, W, C) arrays."""
    return images if isinstance(images, np.ndarray) else tuple(images)


def _progress(files):
    return progress(files, desc="reading images", enabled=len(files) > PROGRESS_ABOVE, leave=False)


SOURCES = {
    "digits": load_digits,
    "mnist": load_mnist,
    "cifar10": load_cifar10,
    "imagefolder": load_imagefolder,
    "folder": load_folder,
}
