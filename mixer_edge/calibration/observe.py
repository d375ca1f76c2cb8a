"""Tensors inside a PyTorch model over calibration images, for what quantizes on the PyTorch side
(Core ML's W8A8, smoothing, the token-mixing rule): the same TensorStats, hence the same range
estimators, as the ONNX graph's activation statistics give the Q/DQ targets."""
from __future__ import annotations

import numpy as np
import torch

from . import ranges


def module_tensors(model, x: np.ndarray, names, *, inputs: bool, batch: int = 64):
    """A re-callable generator of {module name: its first input (inputs=True) or its output} as
    numpy, one dict per batch of images x (N, C, H, W)."""
    modules = dict(model.named_modules())

    def batches():
        seen: dict[str, np.ndarray] = {}

        def hook(name):
            if inputs:
                return lambda _m, args: seen.__setitem__(name, args[0].detach().numpy())
            return lambda _m, _args, out: seen.__setitem__(name, out.detach().numpy())

        handles = [modules[n].register_forward_pre_hook(hook(n)) if inputs else
                   modules[n].register_forward_hook(hook(n)) for n in names]
        try:
            with torch.no_grad():
                for i in range(0, len(x), batch):
                    seen.clear()
                    model(torch.from_numpy(np.ascontiguousarray(x[i:i + batch], np.float32)))
                    yield dict(seen)
        finally:
            for h in handles:
                h.remove()
    return batches


def channel_amax(model, x: np.ndarray, names, batch: int = 64) -> dict[str, np.ndarray]:
    """max |output| per channel (last axis) of the named modules over images x (N, C, H, W): a
    LayerNorm's channels (smoothing), an MLP's hidden units (split.py)."""
    amax: dict[str, np.ndarray] = {}
    for outs in module_tensors(model, x, names, inputs=False, batch=batch)():
        for n, v in outs.items():                                   # v: (B, rows, C)
            m = np.abs(v).reshape(-1, v.shape[-1]).max(0)
            amax[n] = m if n not in amax else np.maximum(amax[n], m)
    return {n: amax[n] for n in names}


def input_stats(model, x: np.ndarray, names, batch: int = 64) -> dict[str, ranges.TensorStats]:
    """TensorStats of the first input of each named module over images x."""
    return ranges.collect(module_tensors(model, x, names, inputs=True, batch=batch))
