"""The Preprocess spec: how raw images become model input, identically in training, evaluation,
calibration, export and on the device.

Raw images are uint8 arrays (H, W) or (H, W, C) with C in {1, 3}. The steps, in order:
channel conversion (gray -> RGB by repetition, RGB -> gray by ITU-R 601 luma), resize (PIL), scale
to [0, 1], then (x - mean) / std. They are computed by the runtime module every artifact carries
(runtime/preprocess.py, numpy + PIL), so a device reproduces them without mixer_edge.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np

from ..errors import BadInput, unknown
from ..runtime.preprocess import RESIZE_METHODS, preprocess


@dataclass(frozen=True)
class Preprocess:
    size: tuple[int, int]          # (H, W) the model takes
    channels: int                  # 1 or 3
    mean: tuple[float, ...] = (0.5,)
    std: tuple[float, ...] = (0.5,)
    resize: str = "bilinear"

    def __post_init__(self):
        if self.channels not in (1, 3):
            raise BadInput(f"preprocess channels must be 1 or 3, got {self.channels}")
        if self.resize not in RESIZE_METHODS:
            raise unknown("resize method", self.resize, RESIZE_METHODS)
        for name in ("mean", "std"):
            if len(getattr(self, name)) not in (1, self.channels):
                raise BadInput(f"preprocess {name} needs 1 or {self.channels} values, "
                               f"got {list(getattr(self, name))}")
        if any(s <= 0 for s in self.std):
            raise BadInput(f"preprocess std must be positive, got {list(self.std)}")

    @classmethod
    def default(cls, size, channels: int) -> "Preprocess":
        """mean = std = 0.5, i.e. (x - 127.5) / 127.5, as the official Mixer checkpoints expect."""
        size = (size, size) if isinstance(size, int) else tuple(size)
        return cls(size=size, channels=channels, mean=(0.5,) * channels, std=(0.5,) * channels)

    def to_dict(self) -> dict:
        d = asdict(self)
        d.update(size=list(self.size), mean=list(self.mean), std=list(self.std))
        return d

    @classmethod
    def from_dict(cls, d: dict) -> "Preprocess":
        return cls(size=tuple(d["size"]), channels=int(d["channels"]), mean=tuple(d["mean"]),
                   std=tuple(d["std"]), resize=d.get("resize", "bilinear"))

    def __call__(self, images) -> np.ndarray:
        """images: an array (N, H, W[, C]) uint8 or a list of such single images -> (N, C, H, W) float32.
        The computation is the device runtime's (runtime/preprocess.py): one implementation,
        so what a device feeds its model is what training and validation fed."""
        return preprocess(images, self.to_dict())
