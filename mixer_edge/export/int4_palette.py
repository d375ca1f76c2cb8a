"""`--int4-format palette` (Core ML): the MLP Linears as palettized weights (calibration/palette.py)
whose bits are spread over the layers so the program is no larger than with a uniform 4-bit palette
on every layer, the format of coremltools' PostTrainingPalettizer at n_bits=4.

    budget      the bytes of a 4-bit palette on every MLP Linear (indices and float16 tables)
    token       the token-mixing MLPs at TOKEN_BITS: 3-5 % of the weights but, at 4 bits, most of the
                error (measured for the per-block grid: 28.2 dB with only them at 4 bits, 48.7 with only
                the channel-mixing ones; docs/quantization.md)
    paid by     channel-mixing layers at LOW_BITS, the least sensitive first, until the total is within
                the budget. Sensitivity: the calibration logits' squared error with only that layer
                palettized at LOW_BITS (k-means, no GPTQ: a ranking, cheap), measured, never by position
    rounding    every layer at its bits by GPTQ with table refits on the calibration inputs

On a T/4 (8 blocks of 128 channels) that is the 8 token-mixing layers at 6 bits and one
channel-mixing layer at 3; measured in docs/quantization.md.
"""
from __future__ import annotations

import copy

import numpy as np
import torch

from ..calibration.palette import Palette, nbytes, palettize
from ..progress import progress

BITS = 4                             # the uniform palette whose size is the budget
TOKEN_BITS = 6
LOW_BITS = 3
SENSITIVITY_IMAGES = 64              # calibration images the ranking's forward passes use


def size(shapes: dict, bits: dict) -> int:
    """Bytes of the palettized layers: {layer: numel}, {layer: bits}."""
    return sum(nbytes(shapes[n], bits[n]) for n in shapes)


def allocate(model, names: list[str], x: np.ndarray) -> tuple[dict, dict]:
    """({layer: bits}, {layer: sensitivity}) within the uniform 4-bit palette's bytes, as the
    module docstring says. x: calibration images (N, C, H, W)."""
    modules = dict(model.named_modules())
    shapes = {n: modules[n].weight.numel() for n in names}
    budget = size(shapes, dict.fromkeys(names, BITS))
    bits = {n: TOKEN_BITS if ".mlp_tokens." in n else BITS for n in names}
    channel = [n for n in names if ".mlp_tokens." not in n]
    sens = sensitivity(model, channel, x[:SENSITIVITY_IMAGES])
    for n in sorted(channel, key=sens.get):
        if size(shapes, bits) <= budget:
            break
        bits[n] = LOW_BITS
    if size(shapes, bits) > budget:     # too few channel layers to pay for the token layers' bits
        bits = dict.fromkeys(names, BITS)
    return bits, sens


def sensitivity(model, names: list[str], x: np.ndarray) -> dict[str, float]:
    """{layer: squared logit error over x with only that layer at LOW_BITS (k-means palette)}."""
    xt = torch.from_numpy(np.ascontiguousarray(x, np.float32))
    with torch.no_grad():
        ref = model(xt)
    trial = copy.deepcopy(model).eval()
    modules = dict(trial.named_modules())
    out = {}
    for n in progress(names, desc="palette: layer sensitivity", leave=False):
        lin = modules[n]
        keep = lin.weight.detach().clone()
        with torch.no_grad():
            lin.weight.copy_(torch.from_numpy(palettize(keep.double().numpy(), None, LOW_BITS).dequantize()))
            out[n] = float(((trial(xt) - ref) ** 2).sum())
            lin.weight.copy_(keep)
    return out


def palettes(model, names: list[str], hessians: dict, x: np.ndarray) -> tuple[dict[str, Palette], dict]:
    """({layer: Palette}, details): every named Linear palettized at its allocated bits."""
    bits, sens = allocate(model, names, x)
    modules = dict(model.named_modules())
    out = {}
    for n in progress(names, desc="palette: GPTQ, layer by layer", leave=False):
        out[n] = palettize(modules[n].weight.detach().double().numpy(), hessians[n], bits[n])
    shapes = {n: modules[n].weight.numel() for n in names}
    details = {"weights": "palettized: one float16 table per layer, indices of the bits below",
               "bits": bits, "table": "k-means, refitted to the layer's output error; GPTQ rounding",
               "palette_bytes": size(shapes, bits), "budget_bytes": size(shapes, dict.fromkeys(names, BITS)),
               "sensitivity": {n: float(f"{v:.4g}") for n, v in sens.items()}}
    return out, details
