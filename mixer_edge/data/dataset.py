"""ImageSet: raw images with labels, as every data source returns them, and the seeded splits."""
from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np

from ..errors import BadInput

SPLITS = ("train", "calib", "eval")


@dataclass(frozen=True)
class ImageSet:
    """images: uint8 (N, H, W, C) when all share one size, else a tuple of (H, W, C) uint8 arrays.
    labels: int64 (N,) indices into classes, or None for unlabeled folders."""
    images: object
    labels: np.ndarray | None
    classes: tuple[str, ...]
    spec: str

    def __len__(self) -> int:
        return len(self.images)

    @property
    def num_classes(self) -> int:
        return len(self.classes)

    def subset(self, idx: np.ndarray) -> "ImageSet":
        idx = np.asarray(idx, dtype=np.int64)
        if isinstance(self.images, np.ndarray):
            images = self.images[idx]
        else:
            images = tuple(self.images[i] for i in idx)
        labels = None if self.labels is None else self.labels[idx]
        return ImageSet(images, labels, self.classes, self.spec)


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


def split_indices(labels: np.ndarray | None, n: int, spec: SplitSpec = SplitSpec()) -> dict[str, np.ndarray]:
    """Seeded, class-stratified split: each class is shuffled and cut by the fractions, so every
    split keeps the class balance. Returns sorted index arrays for 'train', 'calib', 'eval'."""
    rng = np.random.default_rng(spec.seed)
    groups = [np.arange(n)] if labels is None else [np.flatnonzero(labels == c) for c in np.unique(labels)]
    # Cut the whole set by rounded cumulative counts, then hand out per class in that proportion;
    # rounding the totals (not per class) makes 10,000 -> exactly 8,000 / 1,000 / 1,000.
    want = _counts(n, spec)
    parts = {s: [] for s in SPLITS}
    order = np.concatenate([rng.permutation(g) for g in groups])
    # Interleave classes so that a cut at any point is stratified: sort by rank within class.
    ranks = np.concatenate([np.arange(len(g)) / max(len(g), 1) for g in groups])
    order = order[np.argsort(ranks, kind="stable")]
    start = 0
    for s in SPLITS:
        parts[s] = np.sort(order[start:start + want[s]])
        start += want[s]
    return parts


def _counts(n: int, spec: SplitSpec) -> dict[str, int]:
    train = int(round(n * spec.train))
    calib = int(round(n * spec.calib))
    return {"train": train, "calib": calib, "eval": n - train - calib}


def take_split(data: ImageSet, split: str, spec: SplitSpec = SplitSpec()) -> ImageSet:
    """One named split of a data set, or 'all' of it."""
    if split == "all":
        return data
    if split not in SPLITS:
        raise BadInput(f"unknown split {split!r}; accepted: all, {', '.join(SPLITS)}")
    return data.subset(split_indices(data.labels, len(data), spec)[split])
