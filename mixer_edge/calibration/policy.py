"""The INT8 policy a Mixer is quantized by, shared by post-training export (export/int8.py) and
quantization-aware training (train/qat.py), so that what training simulates is what export does:

    layer_macs          the quantizable layers (every Conv2d / Linear) and their MACs per image
    prepare_model       smoothing (on by default, strength DEFAULT_SMOOTH), then the MLP split for
                        massive hidden units (split.py), then the token-mixing rule, which keeps
                        token-mixing layers whose input rows carry outlier channels in float
    learned_ranges      the activation ranges a quantization-aware checkpoint learned, and their check;
    learned_model       the model they belong to (split where training split it), learned_grid its grid

docs/quantization.md has the measurements behind each default. torch (and the modules that use it)
is imported by the functions that inspect a model, so the option tables that read DEFAULT_SMOOTH
(export/base.ExportSpec, `mixer-edge --help`) load without torch.
"""
from __future__ import annotations

import numpy as np

DEFAULT_SMOOTH = 0.5   # --smooth: SmoothQuant's alpha for export and QAT alike (measured); None turns it off

# Token mixing transposes LayerNorm's channels onto the rows of its first matmul's input, where
# no fold moves them and a per-tensor scale must cover the largest row. Measured on the MNIST T/4
# model fine-tuned with 3 norm1 channels per block scaled 30-100x (benchmarks/token_outliers.py,
# spreads 27-83): keeping its token-mixing layers in float takes logit SQNR from 13.4-14.2 dB to
# 35.2-37.3 dB on the four targets; plain trained Mixers measure spreads of 1.1-2.8.
TOKEN_ROW_SPREAD = 20.0


def layer_macs(model) -> dict[str, int]:
    """Multiply-accumulates per image of each quantizable layer of an MlpMixer, by module path:
    a token-mixing linear runs once per channel, a channel-mixing one once per token."""
    import torch

    cfg = model.config
    out = {}
    for name, m in model.named_modules():
        if isinstance(m, torch.nn.Conv2d):
            out[name] = m.weight.numel() * cfg.num_tokens
        elif isinstance(m, torch.nn.Linear):
            repeat = cfg.hidden_dim if ".mlp_tokens." in name else cfg.num_tokens if ".mlp_channels." in name else 1
            out[name] = m.weight.numel() * repeat
    return out


def token_mixing_rule(model, x: np.ndarray) -> dict:
    """Spread (max / median of per-row max |x|) of every token-mixing layer's input over images x
    (rows are the model's channels there), and the layers whose spread exceeds TOKEN_ROW_SPREAD, to
    be kept in float: an outlier channel of norm1 makes its row of fc1's input and, through GELU,
    of fc2's input large. Measured on the PyTorch model: no extra ONNX export."""
    from .observe import module_tensors

    names = [n for n in layer_macs(model) if ".mlp_tokens." in n]
    rows: dict[str, np.ndarray] = {}
    for inputs in module_tensors(model, x, names, inputs=True)():
        for n, v in inputs.items():                                 # v: (B, C, D): rows are channels
            m = np.abs(v).max(axis=(0, 2))
            rows[n] = m if n not in rows else np.maximum(rows[n], m)
    spreads = {n: round(float(rows[n].max() / max(np.median(rows[n]), 1e-12)), 2) for n in names}
    return {"threshold": TOKEN_ROW_SPREAD, "row_spread": spreads,
            "kept_float": [n for n, v in spreads.items() if v > TOKEN_ROW_SPREAD]}


def prepare_model(model, x: np.ndarray, smooth_alpha: float | None, split: bool = False,
                  keep=frozenset()) -> tuple:
    """(model, details) as the INT8 recipe quantizes it: smoothed with smooth_alpha (a copy; exact
    in FP32; None: not smoothed), its MLPs with massive hidden units split when `split` (exact; MLPs
    with a layer in `keep`, the layers kept in float by name, stay whole), then the token-mixing rule
    measured on that model. details: {"smoothing": ... when smoothed, "split": ... when asked,
    "token_mixing": token_mixing_rule}. Smoothing comes first: it folds into fc1, which the split
    divides."""
    from .smoothing import smooth
    from .split import split_massive

    details = {}
    if smooth_alpha is not None:
        model, details["smoothing"] = smooth(model, x, smooth_alpha)
    if split:
        model, details["split"] = split_massive(model, x, keep)
    details["token_mixing"] = token_mixing_rule(model, x)
    return model, details


def learned_ranges(checkpoint) -> dict | None:
    """{layer: [lo, hi]} a quantization-aware fine-tuning learned (train/qat.py), or None: such a
    checkpoint is exported with these ranges, already smoothed, without a calibration set."""
    qat = checkpoint.meta.get("qat") if isinstance(checkpoint.meta, dict) else None
    return qat["ranges"] if isinstance(qat, dict) and isinstance(qat.get("ranges"), dict) else None


def learned_model(checkpoint):
    """The model a quantization-aware checkpoint's ranges belong to: its MLPs split where training
    split them (qat.split, {mlp: massive units}; split.py), else the model as stored."""
    from .split import split_units

    qat = checkpoint.meta.get("qat") if isinstance(checkpoint.meta, dict) else None
    units = qat.get("split") if isinstance(qat, dict) else None
    return split_units(checkpoint.model, units) if units else checkpoint.model


def learned_grid(checkpoint) -> dict:
    """The integer grid a quantization-aware checkpoint trained on (train/qat.py), for export to
    reproduce: weight bits and activation levels; checkpoints from before the grid was recorded
    trained on 8-bit weights and 256 activation levels."""
    qat = checkpoint.meta.get("qat") if isinstance(checkpoint.meta, dict) else None
    grid = qat.get("grid") if isinstance(qat, dict) else None
    return {"weight_bits": 8, "activation_levels": 256, "symmetric": [], **(grid or {})}


def check_ranges(qat: dict, layers) -> list[str]:
    """Problems with a checkpoint's `qat` section against the model's quantizable layers."""
    problems = []
    r = qat.get("ranges") if isinstance(qat, dict) else None
    if not isinstance(r, dict):
        return ["qat.ranges is missing"]
    for name, v in r.items():
        if name not in layers:
            problems.append(f"qat.ranges names no layer of the model: {name}")
        elif not (isinstance(v, list) and len(v) == 2 and all(isinstance(a, (int, float)) for a in v)
                  and np.isfinite(v).all() and v[0] <= 0 <= v[1]):
            problems.append(f"qat.ranges[{name}] must be [lo <= 0, hi >= 0], got {v!r}")
    return problems
