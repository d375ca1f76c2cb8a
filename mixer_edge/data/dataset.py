"""ImageSet: raw images with labels, as every data source returns them, and the seeded splits.

Images are known by content (runtime/identity.image_keys): splits and the images held out from
evaluation follow the pixels, not the spec string or the path they were read through (docs/data.md).
"""
from __future__ import annotations

from dataclasses import asdict, dataclass
from functools import cached_property

import numpy as np

from ..errors import BadInput
from ..progress import PROGRESS_ABOVE, first_process, progress, say
from ..runtime.identity import fingerprint, image_keys
from ..runtime.identity import split_indices as runtime_split
from ..runtime.images import UnreadableImage, header_size, shown, small_images
from ..runtime.streaming import ImageFiles

SPLITS = ("train", "calib", "eval")
SKIP_HINT = "--skip-bad leaves such files out"


@dataclass(frozen=True)
class ImageSet:
    """images: uint8 (N, H, W, C) when all share one size, else a tuple of (H, W, C) uint8 arrays, or,
    for an image folder too large to hold decoded, ImageFiles (each image decoded when it is used).
    labels: int64 (N,) indices into classes, or None for unlabeled folders. files: each image's file
    for image folders (to name them), else empty. skipped: (file, reason) of the files --skip-bad left out."""
    images: object
    labels: np.ndarray | None
    classes: tuple[str, ...]
    spec: str
    files: tuple[str, ...] = ()
    skipped: tuple[tuple[str, str], ...] = ()

    def __len__(self) -> int:
        return len(self.images)

    @property
    def num_classes(self) -> int:
        return len(self.classes)

    def subset(self, idx: np.ndarray) -> "ImageSet":
        idx = np.asarray(idx, dtype=np.int64)
        if isinstance(self.images, (np.ndarray, ImageFiles)):
            images = self.images[idx]   # ImageFiles: a lazy subset, nothing decoded
        else:
            images = tuple(self.images[i] for i in idx)
        labels = None if self.labels is None else self.labels[idx]
        files = tuple(self.files[i] for i in idx) if self.files else ()
        part = ImageSet(images, labels, self.classes, self.spec, files, self.skipped)
        for name in ("keys", "sizes"):   # already computed: the subset's are a slice of them
            if name in self.__dict__:
                part.__dict__[name] = self.__dict__[name][idx]
        return part

    @cached_property
    def keys(self) -> np.ndarray:
        """(N,) uint64 content keys, one per image. Streamed images are decoded one at a time for it,
        and their sizes noted on the way (sizes)."""
        if not isinstance(self.images, ImageFiles):
            return image_keys(self.images)
        keys, sizes = np.empty(len(self), np.uint64), np.empty((len(self), 2), np.int64)
        # a pass over the files: say how far it is
        try:
            for i, im in enumerate(progress(self.images, desc="hashing images", enabled=len(self) > PROGRESS_ABOVE,
                                            leave=False)):
                keys[i], sizes[i] = image_keys([im])[0], im.shape[:2]
        except UnreadableImage as e:   # the first unreadable file of a streamed folder: named, and the way past it
            raise BadInput(f"{e}; {SKIP_HINT}") from None
        self.__dict__["sizes"] = sizes
        return keys

    @cached_property
    def sizes(self) -> np.ndarray:
        """(N, 2) int64 height and width of each image: from the arrays; for streamed images noted in the
        keys' pass (which every command makes anyway), or, when the keys came from elsewhere (torchrun's
        shares), read from the files' headers (nothing decoded)."""
        if isinstance(self.images, np.ndarray):
            return np.tile(np.asarray(self.images.shape[1:3], np.int64), (len(self), 1))
        if not isinstance(self.images, ImageFiles):
            return np.array([im.shape[:2] for im in self.images], np.int64).reshape(-1, 2)
        self.keys
        if "sizes" in self.__dict__:
            return self.__dict__["sizes"]
        return np.array([header_size(p) for p in self.images.paths], np.int64).reshape(-1, 2)

    @property
    def fingerprint(self) -> str:
        return fingerprint(self.keys)

    def without(self, keys) -> "ImageSet":
        """The images whose content is not among `keys` (training or calibration images)."""
        if keys is None or not len(keys):
            return self
        return self.subset(np.flatnonzero(~np.isin(self.keys, keys)))

    def describe(self, **extra) -> dict:
        """What a manifest or result says about an image set: spec, content fingerprint, count, and
        the files --skip-bad left out, when it did."""
        skipped = {"skipped": [{"image": f, "error": why} for f, why in self.skipped]} if self.skipped else {}
        return {"spec": shown(self.spec), "fingerprint": self.fingerprint, "n": len(self), **skipped, **extra}


def warn_small(data: ImageSet, size) -> None:
    """A `warning:` line when images of data are much smaller than the model's input size (H, W),
    naming the smallest (runtime/images.small_images)."""
    if not first_process():   # the others would only repeat it (and read a streamed folder's headers for it)
        return
    text = small_images(data.sizes, size, data.files or None)
    if text:
        say(f"{text} ({data.spec})" if not data.files else text)


@dataclass(frozen=True)
class SplitSpec:
    """Fractions of a data set for train / calibration / evaluation, drawn per class with a seed.
    The default 0.8 / 0.1 / 0.1 gives MNIST's test set 8,000 / 1,000 / 1,000."""
    seed: int = 0
    train: float = 0.8
    calib: float = 0.1
    eval: float = 0.1

    def __post_init__(self):
        total = self.train + self.calib + self.eval
        if min(self.train, self.calib, self.eval) < 0 or abs(total - 1.0) > 1e-9:
            raise BadInput(f"split fractions must be >= 0 and add up to 1, got "
                           f"train={self.train} calib={self.calib} eval={self.eval}")

    def to_dict(self) -> dict:
        return asdict(self)


def split_indices(data: ImageSet, spec: SplitSpec = SplitSpec()) -> dict[str, np.ndarray]:
    """Seeded, class-stratified split by content: sorted index arrays for 'train', 'calib', 'eval'.
    The computation is the device runtime's (runtime/identity.split_indices)."""
    return runtime_split(data.labels, data.keys, spec.to_dict())


def take_split(data: ImageSet, split: str, spec: SplitSpec = SplitSpec()) -> ImageSet:
    """One named split of a data set, or 'all' of it."""
    if split == "all":
        return data
    if split not in SPLITS:
        raise BadInput(f"unknown split {split!r}; accepted: all, {', '.join(SPLITS)}")
    return data.subset(split_indices(data, spec)[split])
