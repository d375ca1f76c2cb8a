"""Folders too large to hold, decoded and preprocessed a batch at a time.

An image folder is decoded into memory when that is small (each file decoded once, not once per
epoch or per artifact) and streamed otherwise; a model input is held when small and made a batch
at a time otherwise. The host's training, evaluation, calibration, validation and benchmark use
these same classes (docs/data.md, Streaming).
"""
from __future__ import annotations

import os
from typing import Callable

import numpy as np

from . import images as _images
from .errors import BadInput

# Above this decoded size (MiB) an image folder is streamed, and above this float32 size a benchmark's
# or a validation's model input is made a batch at a time. 256 MiB keeps every small set in memory
# (MNIST's 70,000 digits as PNGs: 55 MB; CIFAR-10's 60,000: 184 MB) and streams what grows with the
# data: 2,000 RGB images at 224 px are already 287 MiB, ImageNet's 1.28 million are 180 GiB.
STREAM_ABOVE_MB = 256
STREAM_ENV = "MIXER_EDGE_STREAM_ABOVE_MB"   # overrides STREAM_ABOVE_MB (torchrun children, tests)


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
                       f"(or of model input) above which an image folder is streamed (or the input made a "
                       f"batch at a time); default {STREAM_ABOVE_MB}, 0 streams everything")
    return value


class ImageFiles:
    """Image files decoded on access, a sequence like the decoded array it stands for: len, x[i] is
    uint8 (H, W, C) by images.read_image, x[index_array] and x[a:b] are lazy subsets, iteration
    decodes one image at a time. Nothing holds more than one decoded image."""

    def __init__(self, paths):
        self.paths = tuple(str(p) for p in paths)

    def __len__(self) -> int:
        return len(self.paths)

    def __repr__(self) -> str:
        return f"{type(self).__name__}({len(self)} files)"

    def __getitem__(self, index):
        if isinstance(index, (int, np.integer)):
            return _images.read_image(self.paths[index])
        if isinstance(index, slice):
            return type(self)(self.paths[index])
        idx = np.asarray(index)
        if idx.dtype == bool and idx.shape == (len(self),):
            idx = np.flatnonzero(idx)
        if idx.ndim != 1 or not (idx.dtype.kind in "iu" or idx.size == 0):
            raise BadInput(f"image files are indexed by an int, a slice or a 1-d index array, got "
                           f"{type(index).__name__} {getattr(idx, 'dtype', '')} {getattr(idx, 'shape', '')}")
        return type(self)([self.paths[i] for i in idx.astype(np.int64)])

    def __iter__(self):
        # images.read_image looked up at each call, so a test can count decodes
        return (_images.read_image(p) for p in self.paths)


def streams(files: ImageFiles, first=None) -> bool:
    """Whether a folder is too large to decode into memory: the first image's decoded size times the
    file count (the images of a folder are usually of one size) above stream_above_mb().
    first: an image already decoded to estimate from (the first readable one)."""
    estimate = (files[0] if first is None else first).nbytes * len(files)   # bytes, one image decoded to find out
    return estimate > stream_above_mb() * 2 ** 20


def decoded_or_streamed(files: ImageFiles, wrap=None, bad: list | None = None):
    """Every image decoded now when the folder fits (streams), else the files, decoded when used.
    wrap: an optional iterator wrapper over the files being decoded (the host's progress bar).
    bad: None, the first unreadable file stops the read; a list (--skip-bad), each unreadable file is
    left out and appended as (path, reason): a folder that streams is decoded once up front to find
    them, one image at a time, so that nothing fails half-way through training."""
    if bad is None:
        return files if streams(files) else _images.read_images(files.paths, wrap)
    # The first readable image gives the size estimate; the files before it are listed again below.
    first = next(_readable(files.paths, []), None)
    if first is None or not streams(files, first[1]):
        return _images.read_images(files.paths, wrap, bad)
    return type(files)([p for p, _ in _readable(wrap(files.paths) if wrap else files.paths, bad)])


def _readable(paths, bad: list):
    """(path, image) of each file that decodes; the others appended to bad as (path, reason)."""
    for p in paths:
        try:
            yield p, _images.read_image(p)
        except _images.UnreadableImage as e:
            bad.append((e.path, e.reason))


class Batches:
    """Raw images seen as their model input, made a slice at a time: x[i:j] -> prepare(images[i:j]),
    (j - i, C, H, W) float32. What the benchmark and validation run on when holding it would not fit."""

    def __init__(self, images, prepare: Callable):
        self.images, self.prepare = images, prepare

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, part: slice) -> np.ndarray:
        if not isinstance(part, slice):
            raise BadInput(f"model inputs are taken by slices (a batch), got {type(part).__name__}")
        return self.prepare(self.images[part])


def model_inputs(images, prepare: Callable):
    """The model input of raw images: (N, C, H, W) float32 held, made once for every run over it, up
    to stream_above_mb(); above it Batches, made a batch at a time each time (20,000 images at 224
    px are 12 GB of float32). The size is estimated from the first image's input."""
    lazy = Batches(images, prepare)
    mb = lazy[0:1].nbytes * len(lazy) / 2 ** 20 if len(lazy) else 0.0
    return lazy if mb > stream_above_mb() else lazy[0:len(lazy)]
