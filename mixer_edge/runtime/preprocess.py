"""Raw images -> model input, as the manifest's `preprocess` says: channel conversion (gray -> RGB
by repetition, RGB -> gray by ITU-R 601 luma), resize (Pillow), scale to [0, 1], (x - mean) / std.
The one implementation: the host's Preprocess (mixer_edge/data/preprocess.py) computes with it in
training, evaluation, calibration and export, so a device feeds its model what validation fed.
"""
from __future__ import annotations

import numpy as np

from .errors import BadInput
from .needs import pil

RESIZE_METHODS = {"bilinear": 2, "nearest": 0, "bicubic": 3}  # name -> PIL.Image resampling code
LUMA = np.array([0.299, 0.587, 0.114], dtype=np.float32)     # ITU-R 601, as PIL's convert("L")


def preprocess(images, spec: dict) -> np.ndarray:
    """Raw uint8 (N, H, W[, C]) or a list of (H, W[, C]) -> (N, C, H, W) float32, per the manifest."""
    size, channels = tuple(spec["size"]), int(spec["channels"])
    method = spec.get("resize", "bilinear")
    if channels not in (1, 3) or method not in RESIZE_METHODS:
        raise BadInput(f"manifest preprocess {spec} is not supported: channels 1 or 3, "
                       f"resize {', '.join(RESIZE_METHODS)}")
    if isinstance(images, np.ndarray) and images.ndim in (3, 4) and tuple(images.shape[1:3]) == size:
        batch = _to_channels(images if images.ndim == 4 else images[..., None], channels).astype(np.float32)
    elif len(images):
        batch = np.stack([_fitted(img, size, channels, method).astype(np.float32) for img in images])
    else:
        batch = np.zeros((0, *size, channels), np.float32)
    mean, std = np.asarray(spec["mean"], np.float32), np.asarray(spec["std"], np.float32)
    x = (batch / np.float32(255.0) - mean) / std
    return np.ascontiguousarray(x.transpose(0, 3, 1, 2), dtype=np.float32)  # (N, C, H, W)


def fit_image(img, spec: dict) -> np.ndarray:
    """One raw image at the manifest's channels and size, still uint8 (H, W, C): preprocessing's
    first steps (training augments here, then normalizes as inference does)."""
    return _fitted(img, tuple(spec["size"]), int(spec["channels"]), spec.get("resize", "bilinear"))


def _fitted(img, size, channels: int, method: str) -> np.ndarray:
    img = np.asarray(img)
    if img.dtype != np.uint8:
        raise BadInput(f"raw images must be uint8, got dtype {img.dtype}")
    if img.ndim == 2:
        img = img[..., None]
    if img.ndim != 3:
        raise BadInput(f"an image must be (H, W) or (H, W, C), got shape {img.shape}")
    img = _to_channels(img[None], channels)[0]
    if img.shape[:2] != size:
        img = _resize(img, size, method)
    return img


def _to_channels(batch: np.ndarray, channels: int) -> np.ndarray:
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
    Image = pil()
    h, w = size
    if img.shape[-1] == 1:
        return np.asarray(Image.fromarray(img[..., 0]).resize((w, h), RESIZE_METHODS[method]))[..., None]
    return np.asarray(Image.fromarray(img).resize((w, h), RESIZE_METHODS[method]))
