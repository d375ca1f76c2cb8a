"""Massive hidden units: an MLP split exactly into two narrower MLPs, so that a per-tensor int8 range
for the few huge GELU outputs no longer coarsens the grid of all the others.

A Mixer MLP is fc2(GELU(fc1(x))). Its hidden units are independent until fc2 sums them, so for any
partition of the hidden units into a main group M and a massive group K

    fc2(GELU(fc1(x)))  ==  fc2[:, M](GELU(fc1[M](x))) + fc2[:, K](GELU(fc1[K](x)))

(rows of fc1 and its bias, columns of fc2; fc2's bias goes with the main group). Exact in FP32 up to
the order of the sum; the two halves are ordinary Linear -> GELU -> Linear, so every target quantizes
each with its own ranges by the rules it already has (ONNX Q/DQ, OpenVINO, TensorRT, Core ML's
PyTorch-side quantizers), and the fc2 input of each group gets its own per-tensor scale.

Why not channel duplication (OCS): a unit duplicated with its fc2 column halved splits a large
*weight*; the activation in both copies is as large as before. Dividing the activation would need
the unit repeated k times for a k-fold smaller range: hundreds of copies for a 300-1000x unit.

Which units, from statistics only: per hidden unit j, a_j = max |GELU output| over the calibration
images and w_j = |fc2[:, j]|^2. Rounding noise at fc2's output is about step^2 / 12 per unit times
w_j, with step proportional to its group's largest a; the massive group is the k largest units that
minimise a_max(K)^2 w(K) + a_max(M)^2 w(M). A layer is split when its units' spread (max / median
of a) exceeds MASSIVE_SPREAD and the estimate drops by SPLIT_GAIN; measured values in
docs/quantization.md and benchmarks/RESULTS.md section 13.
"""
from __future__ import annotations

import copy

import numpy as np
import torch
from torch import nn

from .observe import channel_amax, module_tensors

MASSIVE_SPREAD = 20.0       # max / median of a layer's per-unit max |GELU output|: trained Mixers measure < 20
SPLIT_GAIN = 4.0            # and the estimated fc2 rounding noise must drop at least this much (6 dB)
MAX_MASSIVE = 0.5           # at most this fraction of a layer's hidden units in the massive group


class SplitMlp(nn.Module):
    """Two MLPs over disjoint hidden units whose outputs add: main (with fc2's bias) + massive.
    `units`: the massive group's indices among the original MLP's hidden units (ascending)."""

    def __init__(self, main: nn.Module, massive: nn.Module, units=()):
        super().__init__()
        self.main = main
        self.massive = massive
        self.units = tuple(int(u) for u in units)

    def forward(self, x):
        return self.main(x) + self.massive(x)


def mlps(model) -> list[str]:
    """Module paths of every block's two MLPs."""
    return [f"blocks.{i}.{kind}" for i in range(len(model.blocks)) for kind in ("mlp_tokens", "mlp_channels")]


def choose(amax: np.ndarray, col_norm2: np.ndarray) -> dict:
    """The massive group of one MLP from its per-unit max |hidden| (H,) and fc2 column norms^2 (H,):
    {"spread", "units" (indices, largest first; empty: no split), "gain" (noise before / after)}."""
    order = np.argsort(-amax, kind="stable")
    a, w = amax[order].astype(np.float64), col_norm2[order].astype(np.float64)
    spread = float(a[0] / max(np.median(a), 1e-12))
    before = a[0] ** 2 * w.sum()
    ks = np.arange(1, max(1, int(len(a) * MAX_MASSIVE)) + 1)
    head = np.cumsum(w)[ks - 1]                                    # w of the k largest
    after = a[0] ** 2 * head + a[np.minimum(ks, len(a) - 1)] ** 2 * (w.sum() - head)
    best = int(np.argmin(after))
    gain = float(before / max(after[best], 1e-30))
    split = spread > MASSIVE_SPREAD and gain >= SPLIT_GAIN
    return {"spread": round(spread, 2), "gain": round(gain, 2),
            "units": order[:ks[best]].tolist() if split else []}


def split_massive(model, x: np.ndarray, skip=frozenset()):
    """A copy of an MlpMixer whose MLPs with massive hidden units are split (SplitMlp), and what was
    measured: {"method", "threshold", "gain", "layers": {mlp: {"spread", "gain", "massive"}}}. MLPs
    whose fc1 or fc2 is in `skip` (layers kept in float by name) are left whole. The caller's model
    is untouched; with nothing to split the copy is the same model."""
    out = copy.deepcopy(model).eval()                               # measured as it infers (no dropout)
    names = [n for n in mlps(out) if f"{n}.fc1" not in skip and f"{n}.fc2" not in skip]
    amax = channel_amax(out, x, [f"{n}.act" for n in names])        # max |GELU output| per hidden unit
    modules = dict(out.named_modules())
    record, units = {}, {}
    for n in names:
        pick = choose(amax[f"{n}.act"], modules[n].fc2.weight.detach().double().pow(2).sum(0).numpy())
        record[n] = {"spread": pick["spread"], "gain": pick["gain"], "massive": len(pick["units"])}
        if pick["units"]:
            units[n] = pick["units"]
    _apply(out, units)
    details = {"method": "exact MLP split by hidden unit", "threshold": {"spread": MASSIVE_SPREAD, "gain": SPLIT_GAIN},
               "images": int(len(x)), "layers": record,
               "split": [n for n, r in record.items() if r["massive"]]}
    return out, details


def _split(mlp, units) -> SplitMlp:
    """mlp (fc1 -> act -> drop -> fc2 -> drop) as main + massive over the hidden units `units`."""
    hidden = mlp.fc1.out_features
    massive = torch.tensor(sorted(units))
    main = torch.tensor(sorted(set(range(hidden)) - set(units)))
    halves = []
    for idx, bias in ((main, True), (massive, False)):
        part = copy.deepcopy(mlp)
        with torch.no_grad():
            part.fc1 = _linear(mlp.fc1.weight[idx], mlp.fc1.bias[idx])                      # rows: (k, in)
            part.fc2 = _linear(mlp.fc2.weight[:, idx],                                         # cols: (out, k)
                               mlp.fc2.bias if bias else torch.zeros_like(mlp.fc2.bias))
        halves.append(part)
    return SplitMlp(*halves, units=massive.tolist())


def split_units(model, units: dict):
    """A copy of an MlpMixer with the named MLPs split at the given massive units ({mlp: [unit]}),
    as a quantization-aware checkpoint records them (train/qat.py): the split it was trained with."""
    out = copy.deepcopy(model).eval()
    _apply(out, units)
    return out


def _apply(model, units: dict) -> None:
    """Split the named MLPs of `model` in place at their massive units ({mlp: [unit]})."""
    modules = dict(model.named_modules())
    for name, massive in units.items():
        parent, attr = name.rsplit(".", 1)
        setattr(modules[parent], attr, _split(modules[name], list(massive)))


def merge(model):
    """(a copy with every SplitMlp put back into one Mlp, {mlp: massive units}): exact (fc1 rows and
    fc2 columns back in their places, the two fc2 biases summed), so a checkpoint stays a plain
    MlpMixer whatever was split while it trained."""
    out = copy.deepcopy(model)
    record = {}
    for name, m in [(n, m) for n, m in out.named_modules() if isinstance(m, SplitMlp)]:
        main, massive = m.main, m.massive
        hidden = main.fc1.out_features + massive.fc1.out_features
        big = torch.tensor(m.units)
        rest = torch.tensor(sorted(set(range(hidden)) - set(m.units)))
        whole = copy.deepcopy(main)
        with torch.no_grad():
            w1 = torch.empty(hidden, main.fc1.in_features)
            b1 = torch.empty(hidden)
            w1[rest], w1[big] = main.fc1.weight, massive.fc1.weight                   # rows: (hidden, in)
            b1[rest], b1[big] = main.fc1.bias, massive.fc1.bias
            w2 = torch.empty(main.fc2.out_features, hidden)
            w2[:, rest], w2[:, big] = main.fc2.weight, massive.fc2.weight             # cols: (out, hidden)
            whole.fc1 = _linear(w1, b1)
            whole.fc2 = _linear(w2, main.fc2.bias + massive.fc2.bias)
        parent, attr = name.rsplit(".", 1)
        setattr(out.get_submodule(parent), attr, whole)
        record[name] = list(m.units)
    return out, record


def _linear(weight: torch.Tensor, bias: torch.Tensor) -> nn.Linear:
    lin = nn.Linear(weight.shape[1], weight.shape[0])
    with torch.no_grad():
        lin.weight.copy_(weight)
        lin.bias.copy_(bias)
    return lin


def inject_massive_units(model, units: int, low: float, high: float, x: np.ndarray | None = None, seed: int = 0,
                         kinds=("mlp_channels",)):
    """A copy of an MlpMixer with pretrained-like massive activations, made by a function-preserving
    rescaling: per block and MLP kind (mlp_channels, mlp_tokens), `units` hidden units (at most the
    MLP's width) get their fc1 row and bias scaled up by a factor in [low, high] and their fc2
    column scaled down by it (GELU(k z) / k is GELU(z) away from 0 and ReLU(z) near it: FP32 top-1
    stays). With images x (N, C, H, W) the units are the most important ones (mean |GELU output|
    times their fc2 column norm), so clipping them costs what the model uses; else random. For
    tests and benchmarks (benchmarks/massive_int8.py, RESULTS 8.1)."""
    out = copy.deepcopy(model).eval()
    rng = np.random.default_rng(seed)
    mlps_ = [f"blocks.{i}.{kind}" for i in range(len(out.blocks)) for kind in kinds]
    names = [f"{m}.act" for m in mlps_]
    means = None
    if x is not None:
        sums: dict[str, np.ndarray] = {}
        for outs in module_tensors(out, x, names, inputs=False)():
            for n, v in outs.items():                                          # v: (B, N, hidden)
                s = np.abs(v).reshape(-1, v.shape[-1]).sum(0)
                sums[n] = s if n not in sums else sums[n] + s
        means = [sums[n] for n in names]
    record = []
    modules = dict(out.named_modules())
    with torch.no_grad():
        for j, name in enumerate(mlps_):
            fc1, fc2 = modules[f"{name}.fc1"], modules[f"{name}.fc2"]
            n = min(units, fc1.out_features)
            if means is None:
                idx = rng.choice(fc1.out_features, size=n, replace=False)
            else:
                importance = means[j] * fc2.weight.norm(dim=0).numpy()                 # (hidden,)
                idx = np.argsort(-importance, kind="stable")[:n]
            k = torch.from_numpy(rng.uniform(low, high, size=n)).float()              # (n,)
            fc1.weight[idx] *= k[:, None]
            fc1.bias[idx] *= k
            fc2.weight[:, idx] /= k
            record.append({"block": int(name.split(".")[1]), "mlp": name.rsplit(".", 1)[1],
                           "units": [int(u) for u in idx], "factors": [round(float(v), 1) for v in k]})
    return out, record
