"""Mixer-aware smoothing: move per-channel activation range from a LayerNorm's output into the
next linear layer's weights (SmoothQuant, Xiao et al. 2023), exactly in FP32.

Where it applies, in a Mixer: the LayerNorm -> channel-MLP fc1 path of every block, and the final
LayerNorm -> token mean -> head path (the mean over tokens commutes with a per-channel scale).
There LayerNorm's channels sit on the matmul's reduction axis, so for a scale s per channel

    LN(x) * gamma + beta  ->  (LN(x) * gamma + beta) / s        (LayerNorm affine, per channel)
    W                     ->  W * s                             (columns of the next weight)

leaves the function unchanged. Token mixing transposes LayerNorm's channels onto the row axis,
where no such fold exists; the token-mixing rule (calibration/policy.py) treats it from measured
statistics instead.

s_j = max|X_j|^alpha / max|W_:,j|^(1 - alpha), with max|X_j| measured on the calibration images.
It is invariant to any function-preserving rescaling of the same channels (X_j * k, W_:,j / k
gives s_j * k), which is why a model with LayerNorm outlier channels smooths to the same
quantization problem as the model without them. alpha is chosen by measurement
(docs/quantization.md; calibration/policy.DEFAULT_SMOOTH).
"""
from __future__ import annotations

import copy
from dataclasses import dataclass

import numpy as np
import torch

from ..errors import BadInput
from .observe import channel_amax

MIN_SCALE = 1e-5


@dataclass(frozen=True)
class Fold:
    """One LayerNorm -> Linear pair the fold applies to, by module path."""
    norm: str
    linear: str


def folds(model) -> list[Fold]:
    """The foldable pairs of an MlpMixer: every block's norm2 -> mlp_channels.fc1, and norm -> head."""
    pairs = [Fold(f"blocks.{i}.norm2", f"blocks.{i}.mlp_channels.fc1") for i in range(len(model.blocks))]
    return pairs + [Fold("norm", "head")]


def smooth(model, x: np.ndarray, alpha: float):
    """A smoothed copy of an MlpMixer (the caller's model is untouched) and what was done.
    x: calibration images (N, C, H, W) float32, preprocessed."""
    if not 0.0 <= alpha <= 1.0:
        raise BadInput(f"smoothing strength alpha must be in [0, 1], got {alpha}")
    out = copy.deepcopy(model).eval()
    modules = dict(out.named_modules())
    pairs = folds(out)
    act = {n: torch.from_numpy(a) for n, a in channel_amax(out, x, [f.norm for f in pairs]).items()}
    details = {"method": "smoothquant-fold", "alpha": alpha, "images": int(len(x)), "folds": []}
    with torch.no_grad():
        for f in pairs:
            norm, lin = modules[f.norm], modules[f.linear]
            w = lin.weight.abs().amax(0).clamp_min(MIN_SCALE)           # (C,) per input column
            s = (act[f.norm].clamp_min(MIN_SCALE) ** alpha / w ** (1 - alpha)).clamp_min(MIN_SCALE)
            norm.weight.div_(s)
            norm.bias.div_(s)
            lin.weight.mul_(s)                                           # (out, C) * (C,)
            details["folds"].append({"norm": f.norm, "linear": f.linear,
                                     "act_spread_before": _spread(act[f.norm]),
                                     "act_spread_after": _spread(act[f.norm] / s)})
    return out, details


def _spread(amax: torch.Tensor) -> float:
    """max / median of per-channel max |x|: 1 for a flat tensor, 30-100 with outlier channels."""
    return round(float(amax.max() / amax.median().clamp_min(1e-12)), 2)


def inject_outliers(model, channels: int = 3, low: float = 30.0, high: float = 100.0, seed: int = 0):
    """A copy of an MlpMixer with pretrained-like LayerNorm outlier channels, made by a
    function-preserving rescaling: on every foldable pair, `channels` LayerNorm output channels
    scaled up by a factor in [low, high] and the next linear layer's input columns scaled down by
    it. FP32 logits stay the same (up to rounding). For tests and benchmarks."""
    out = copy.deepcopy(model).eval()
    modules = dict(out.named_modules())
    rng = np.random.default_rng(seed)
    record = []
    with torch.no_grad():
        for f in folds(out):
            norm, lin = modules[f.norm], modules[f.linear]
            idx = rng.choice(norm.weight.numel(), size=channels, replace=False)
            k = torch.from_numpy(rng.uniform(low, high, size=channels)).float()
            norm.weight[idx] *= k
            norm.bias[idx] *= k
            lin.weight[:, idx] /= k
            record.append({"norm": f.norm, "channels": idx.tolist(), "factors": [round(float(v), 2) for v in k]})
    return out, record
