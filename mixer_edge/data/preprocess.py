"""The Preprocess spec: how raw images become model input, identically in training, evaluation,
calibration, export and on the device.

Raw images are uint8 arrays (H, W) or (H, W, C) with C in {1, 3}. The steps, in order:
channel conversion (gray -> RGB by repetition, RGB -> gray by ITU-R 601 luma), resize (PIL), scale
to [0, 1], then (x - mean) / std. The same steps are written out in plain numpy + PIL in every
artifact's runtime script, so a device reproduces them without mixer_edge.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np

from ..errors import BadInput, unknown

RESIZE_METHODS = {"bilinear": 2, "nearest": 0, "bicubic": 3}  # name -> PIL.Image resampling code
LUMA = np.array([0.299, 0.587, 0.114], dtype=np.float32)     # ITU-R 601, as PIL's convert("L")


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
        """images: an array (N, H, W[, C]) uint8 or a list of such single images -> (N, C, H, W) float32."""
        if isinstance(images, np.ndarray) and images.ndim in (3, 4) and _same_size(images, self.size):
            batch = _to_channels(images if images.ndim == 4 else images[..., None], self.channels)
        else:
            batch = np.stack([self.one(img) for img in images]) if len(images) else \
                np.zeros((0, *self.size, self.channels), np.float32)
            return self._normalize(batch)
        return self._normalize(batch.astype(np.float32))

    def one(self, img: np.ndarray) -> np.ndarray:
        """One raw image -> (H, W, C) float32 in 0..255, converted and resized."""
        img = np.asarray(img)
        if img.dtype != np.uint8:
            raise BadInput(f"raw images must be uint8, got dtype {img.dtype}")
        if img.ndim == 2:
            img = img[..., None]
        if img.ndim != 3:
            raise BadInput(f"an image must be (H, W) or (H, W, C), got shape {img.shape}")
        img = _to_channels(img[None], self.channels)[0]
        if img.shape[:2] != self.size:
            img = _resize(img, self.size, self.resize)
        return img.astype(np.float32)

    def _normalize(self, batch: np.ndarray) -> np.ndarray:  # (N, H, W, C) in 0..255
        mean = np.asarray(self.mean, np.float32)
        std = np.asarray(self.std, np.float32)
        x = (batch / np.float32(255.0) - mean) / std
        return np.ascontiguousarray(x.transpose(0, 3, 1, 2), dtype=np.float32)  # (N, C, H, W)


def _same_size(images: np.ndarray, size) -> bool:
    return tuple(images.shape[1:3]) == tuple(size)


def _to_channels(batch: np.ndarray, channels: int) -> np.ndarray:
    """(N, H, W, c) uint8 -> (N, H, W, channels); keeps uint8 for 1->1 and 3->3."""
    have = batch.shape[-1]
    if have == channels:
        return batch
    if have == 1 and channels == 3:
        return np.repeat(batch, 3, axis=-1)
    if have == 3 and channels == 1:
        luma = batch.astype(np.float32) @ LUMA
        return np.clip(np.rint(luma), 0, 255).astype(np.uint8)[..., None]
    raise BadInput(f"images with {have} channels cannot be converted to the model's {channels}; "
                   f"accepted: 1 (grayscale) or 3 (RGB)")


def _resize(img: np.ndarray, size, method: str) -> np.ndarray:
    from PIL import Image  # a dependency of the data stage only

    h, w = size
    if img.shape[-1] == 1:
        out = Image.fromarray(img[..., 0]).resize((w, h), RESIZE_METHODS[method])
        return np.asarray(out)[..., None]
    return np.asarray(Image.fromarray(img).resize((w, h), RESIZE_METHODS[method]))
