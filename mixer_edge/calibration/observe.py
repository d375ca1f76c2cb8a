"""Statistics of PyTorch module inputs over calibration images, for targets that quantize on the
PyTorch side (Core ML's W8A8): the same TensorStats, hence the same range estimators, as the ONNX
graph's activation statistics give the Q/DQ targets."""
from __future__ import annotations

import numpy as np
import torch

from . import ranges


def input_stats(model, x: np.ndarray, names, batch: int = 64) -> dict[str, ranges.TensorStats]:
    """TensorStats of the first input of each named module over images x (N, C, H, W): two passes,
    the range then the histogram, so memory stays one batch of activations."""
    lo = {n: np.inf for n in names}
    hi = {n: -np.inf for n in names}
    hist = {n: np.zeros(ranges.HIST_BINS, np.int64) for n in names}

    def extremes(name):
        def hook(_module, args):
            v = args[0].detach()
            lo[name], hi[name] = min(lo[name], float(v.min())), max(hi[name], float(v.max()))
        return hook

    def histogram(name):
        def hook(_module, args):
            a = max(abs(lo[name]), abs(hi[name]), 1e-30)
            hist[name] += np.histogram(args[0].detach().numpy(), bins=ranges.HIST_BINS, range=(-a, a))[0]
        return hook

    for make in (extremes, histogram):
        run_with_hooks(model, x, {n: make(n) for n in names}, pre=True, batch=batch)
    return {n: ranges.TensorStats(lo[n], hi[n], hist[n]) for n in names}


def run_with_hooks(model, x: np.ndarray, hooks: dict, *, pre: bool, batch: int = 64) -> None:
    """Run the model over images x in batches with {module name: hook} attached (forward pre-hooks
    with pre=True, forward hooks otherwise), then remove them."""
    modules = dict(model.named_modules())
    handles = [modules[n].register_forward_pre_hook(h) if pre else modules[n].register_forward_hook(h)
               for n, h in hooks.items()]
    try:
        with torch.no_grad():
            for i in range(0, len(x), batch):
                model(torch.from_numpy(np.ascontiguousarray(x[i:i + batch], np.float32)))
    finally:
        for h in handles:
            h.remove()
