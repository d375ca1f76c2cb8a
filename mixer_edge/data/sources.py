"""Data sources: a spec string -> an ImageSet of raw uint8 images.

    digits             scikit-learn's bundled 8x8 digits
    mnist:DIR          IDX files, gzipped or not
    cifar10:DIR        the binary or the python (pickle) version
    imagefolder:DIR    one sub-folder per class
    folder:DIR         unlabeled images
    DIR                a bare folder: imagefolder if it holds class folders, folder if it holds images

Image folders larger than runtime/streaming.STREAM_ABOVE_MB decoded are not decoded here: their ImageSet
holds ImageFiles, which decodes each image when it is used (docs/data.md, Streaming).

SOURCES is the registry. A loader's parameter list is its spec grammar: no parameter means the bare
name, one parameter means NAME:DIR. The first docstring line is its --help text.
"""
from __future__ import annotations

import inspect
import re
from dataclasses import replace
from pathlib import Path

import numpy as np

from ..errors import BadInput, unknown
from ..progress import PROGRESS_ABOVE, progress
from ..runtime import readers
from ..runtime.images import folder_files, folder_kind, imagefolder_files, images_in
from ..runtime.streaming import ImageFiles, decoded_or_streamed
from .dataset import ImageSet


def load_data(spec: str) -> ImageSet:
    """Load the data set a spec names; ImageSet.spec keeps the spec exactly as given."""
    name, sep, arg = spec.partition(":")
    if name in SOURCES:
        data = _call(name, arg if sep else None, spec)
    else:
        data = _bare_path(spec)
    return replace(data, spec=spec)


def describe_sources() -> list[tuple[str, str]]:
    """(name, one-line help) for every source, for --help text."""
    return [(name, inspect.getdoc(fn).splitlines()[0]) for name, fn in SOURCES.items()]


def _takes_folder(loader) -> bool:
    return bool(inspect.signature(loader).parameters)


def _call(name: str, arg: str | None, spec: str) -> ImageSet:
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
    return loader(root)


def _bare_path(spec: str) -> ImageSet:
    """A spec with no known prefix: an existing folder of images, or a mistake we name."""
    root = Path(spec).expanduser()
    if root.is_dir():
        return SOURCES[_guess_kind(root)](root)
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

def load_imagefolder(root: Path) -> ImageSet:
    """imagefolder:DIR  one sub-folder of png/jpg/bmp images per class; sorted folder names are the classes."""
    files, labels, classes = imagefolder_files(root)
    return ImageSet(_decoded_or_streamed(files), labels, classes, f"imagefolder:{root}")


def load_folder(root: Path) -> ImageSet:
    """folder:DIR  a folder of unlabeled png/jpg/bmp images (for calibration or prediction)."""
    return ImageSet(_decoded_or_streamed(folder_files(root)), None, (), f"folder:{root}")


# The image-folder readers are the device runtime's (one implementation, so a device reads a folder
# as training did); these adapt them to ImageSet.

def _decoded_or_streamed(files: list):
    """All images decoded now when they fit, else ImageFiles: decoded when used (the runtime's
    decoded_or_streamed, with the host's progress bar)."""
    images = decoded_or_streamed(ImageFiles(files), _progress)
    return images if isinstance(images, ImageFiles) else _images(images)


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
