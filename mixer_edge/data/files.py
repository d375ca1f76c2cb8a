"""ImageFiles: a folder of images too large to hold decoded, read one image at a time.

An image folder is decoded into memory when that is small (faster: each file is decoded once, not
once per epoch) and streamed otherwise: `streams` estimates the decoded size from the first image
and the file count. An ImageFiles is a sequence like the decoded array it stands for: `len`, `x[i]`
decodes one image with the device runtime's own decoder (runtime/edge_bench.read_image, so training
reads a file exactly as a device does), `x[index_array]` and `x[a:b]` are lazy subsets, iteration
decodes one image at a time. Nothing holds more than one decoded image (docs/data.md, Streaming).
"""
from __future__ import annotations

import os

import numpy as np

from ..errors import BadInput
from ..runtime import edge_bench as eb

# Above this decoded size (MiB) an image folder is streamed. Decoding once into memory saves decoding
# every file again every epoch, which matters while the set is small next to the training process
# itself (T/4 trains in ~0.5 GB, B/16 at 224 px in ~4.5 GB). 256 MiB keeps every small set in
# memory (MNIST's 70,000 digits as PNGs: 55 MB; CIFAR-10's 60,000: 184 MB) and streams what grows
# with the data: 2,000 RGB images at 224 px are already 287 MiB, ImageNet's 1.28 million are 180 GiB.
STREAM_ABOVE_MB = 256
STREAM_ENV = "MIXER_EDGE_STREAM_ABOVE_MB"   # overrides STREAM_ABOVE_MB (torchrun children, tests)
PROGRESS_ABOVE = 500   # images; fewer are read in well under a second, a bar would only flicker


class ImageFiles:
    """Image files decoded on access: x[i] is uint8 (H, W, C), as the runtime reads it."""

    def __init__(self, paths):
        self.paths = tuple(str(p) for p in paths)

    def __len__(self) -> int:
        return len(self.paths)

    def __repr__(self) -> str:
        return f"ImageFiles({len(self)} files)"

    def __getitem__(self, index):
        if isinstance(index, (int, np.integer)):
            return _decode(self.paths[index])
        if isinstance(index, slice):
            return ImageFiles(self.paths[index])
        idx = np.asarray(index)
        if idx.dtype == bool and idx.shape == (len(self),):
            idx = np.flatnonzero(idx)
        if idx.ndim != 1 or not (idx.dtype.kind in "iu" or idx.size == 0):
            raise BadInput(f"image files are indexed by an int, a slice or a 1-d index array, got "
                           f"{type(index).__name__} {getattr(idx, 'dtype', '')} {getattr(idx, 'shape', '')}")
        return ImageFiles([self.paths[i] for i in idx.astype(np.int64)])

    def __iter__(self):
        return (_decode(p) for p in self.paths)


def _decode(path: str) -> np.ndarray:
    # Looked up on the module each time, so a test can count decodes with a monkeypatch.
    try:
        return eb.read_image(path)
    except eb.BenchError as e:
        raise BadInput(str(e)) from None


def stream_above_mb() -> float:
    """STREAM_ABOVE_MB, or MIXER_EDGE_STREAM_ABOVE_MB when set (the one place it is read)."""
    text = os.environ.get(STREAM_ENV)
    if text is None:
        return STREAM_ABOVE_MB
    try:
        value = float(text)
    except ValueError:
        value = float("nan")
    if not value >= 0:
        raise BadInput(f"{STREAM_ENV}={text!r} is not a size; accepted: megabytes >= 0 of decoded images "
                       f"above which an image folder is streamed (default {STREAM_ABOVE_MB}; 0 streams every folder)")
    return value


def streams(files: ImageFiles) -> bool:
    """Whether a folder is too large to decode into memory: the first image's decoded size times the
    file count (the images of a folder are usually of one size) above stream_above_mb()."""
    estimate = files[0].nbytes * len(files)   # bytes, one image decoded to find out
    return estimate > stream_above_mb() * 2 ** 20
