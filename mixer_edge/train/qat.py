"""Quantization-aware fine-tuning: the deployment recipe's INT8 simulated in the training graph, so
the weights adapt to it and the activation ranges are learned, then handed to export instead of a
calibration (docs/quantization.md, "Quantization-aware training").

Placement is the export's (export/qdq.py): every Conv2d / Linear not kept in float gets
- its input fake-quantized per tensor, asymmetric, 256 levels over a learned [lo, hi] holding 0
  (qdq.activation_qparams: the scale and zero point every target derives from that range);
- its weight fake-quantized per output channel, symmetric, max |w| / 127 (qdq.weight_qparams);
LayerNorm, GELU, the residual Adds and the token mean stay float. Before that, the model is smoothed
and the token-mixing rule picks the layers kept in float, exactly as an INT8 export would
(calibration/policy.prepare_model), on calibration images drawn from the training data's calib split; the same
images give the initial ranges (the default estimator), so epoch 0 is the post-training recipe.

Rounding is straight-through; the range gets gradients through the step size and zero point
(LSQ, Esser et al. 2020). A quantized layer is an nn.Linear / nn.Conv2d subclass sharing the
original parameters plus an `act` submodule, so the model stays an MlpMixer for the training loop;
`plain` gives back ordinary layers and `learned` the ranges for the checkpoint.
"""
from __future__ import annotations

import copy

import torch
import torch.nn.functional as F
from torch import nn

from ..calibration import ranges
from ..calibration.observe import input_stats
from ..calibration.policy import layer_macs, prepare_model

QMIN, QMAX = -128, 127     # int8 activations: 256 levels
WEIGHT_QMAX = 127          # symmetric int8 weights, per output channel
MIN_SCALE = 1e-8           # qdq.activation_qparams / weight_qparams floor


def _round_ste(v: torch.Tensor) -> torch.Tensor:
    """round() forward, identity backward."""
    return v + (torch.round(v) - v).detach()


class ActQuant(nn.Module):
    """Per-tensor asymmetric fake quantization over a learned [lo, hi] = [lo0 e^a_lo, hi0 e^a_hi].
    Logarithms, so an optimizer step moves a range by a fraction of itself whatever its size. They
    learn with the weights (same rate, no weight decay: 0-d parameters); docs/quantization.md says
    what a faster rate did."""

    def __init__(self, lo: float, hi: float):
        super().__init__()
        self.register_buffer("lo0", torch.tensor(float(min(lo, 0.0))))
        self.register_buffer("hi0", torch.tensor(float(max(hi, 0.0))))
        self.a_lo = nn.Parameter(torch.zeros(()))
        self.a_hi = nn.Parameter(torch.zeros(()))

    def bounds(self) -> tuple[torch.Tensor, torch.Tensor]:
        return self.lo0 * self.a_lo.exp(), self.hi0 * self.a_hi.exp()

    def range(self) -> tuple[float, float]:
        return tuple(float(v.detach()) for v in self.bounds())

    def forward(self, x):
        lo, hi = (v.double() for v in self.bounds())
        # In float64, then the scale rounded to float32, exactly as qdq.activation_qparams: a zero
        # point computed in float32 can land one step off export's at a half-way value.
        scale = (hi - lo).clamp(min=MIN_SCALE) / (QMAX - QMIN)
        zero = _round_ste(QMIN - lo / scale).clamp(QMIN, QMAX).float()
        scale = scale.float()
        q = torch.clamp(_round_ste(x / scale) + zero, QMIN, QMAX)   # gradient to x only inside [lo, hi]
        return (q - zero) * scale


def fake_quant_weight(w: torch.Tensor) -> torch.Tensor:
    """w: (out, ...) -> w on its per-output-channel symmetric int8 grid (scale from max |w|, as export)."""
    amax = w.detach().abs().flatten(1).amax(dim=1).clamp(min=MIN_SCALE * WEIGHT_QMAX)   # (out,)
    scale = (amax / WEIGHT_QMAX).view(-1, *([1] * (w.ndim - 1)))
    return torch.clamp(_round_ste(w / scale), -WEIGHT_QMAX, WEIGHT_QMAX) * scale


class QatLinear(nn.Linear):
    def forward(self, x):
        return F.linear(self.act(x), fake_quant_weight(self.weight), self.bias)


class QatConv2d(nn.Conv2d):
    def forward(self, x):
        return self._conv_forward(self.act(x), fake_quant_weight(self.weight), self.bias)


def _quantized_copy(m: nn.Module, lo: float, hi: float) -> nn.Module:
    """A QatLinear / QatConv2d sharing m's weight and bias."""
    if type(m) is nn.Linear:
        q = QatLinear(m.in_features, m.out_features, bias=m.bias is not None, device="meta")
    elif type(m) is nn.Conv2d:
        q = QatConv2d(m.in_channels, m.out_channels, m.kernel_size, stride=m.stride, padding=m.padding,
                      dilation=m.dilation, groups=m.groups, bias=m.bias is not None, device="meta")
    else:
        raise TypeError(f"cannot quantize {type(m).__name__}")
    q.weight, q.bias = m.weight, m.bias
    q.act = ActQuant(lo, hi).to(m.weight.device)
    return q


def _swap(model: nn.Module, name: str, new: nn.Module) -> None:
    parent, _, leaf = name.rpartition(".")
    setattr(model.get_submodule(parent) if parent else model, leaf, new)


def quantize(model: nn.Module, act_ranges: dict[str, tuple[float, float]]) -> nn.Module:
    """Fake quantization on the named layers (in place), each input starting at its range."""
    modules = dict(model.named_modules())
    for name, (lo, hi) in act_ranges.items():
        _swap(model, name, _quantized_copy(modules[name], lo, hi))
    return model


def quantized_layers(model: nn.Module) -> list[str]:
    return [n for n, m in model.named_modules() if isinstance(m, (QatLinear, QatConv2d))]


def learned(model: nn.Module) -> dict[str, list[float]]:
    """{layer: [lo, hi]} of every fake-quantized layer input, unrounded: export derives its scales
    from exactly these."""
    return {n: list(m.act.range()) for n, m in model.named_modules() if isinstance(m, (QatLinear, QatConv2d))}


def simulation(model: nn.Module, ranges: dict) -> nn.Module:
    """A copy of a checkpoint's model with its learned fake quantization back in: the function QAT
    trained and its W8A8 exports compute (validation's reference for them)."""
    return quantize(copy.deepcopy(model), {n: tuple(r) for n, r in ranges.items()}).eval()


def plain(model: nn.Module) -> nn.Module:
    """A copy with ordinary Linear / Conv2d layers holding the trained float weights: what a
    checkpoint stores. Export quantizes them onto the grid training saw (same scale rule)."""
    out = copy.deepcopy(model)
    for name in quantized_layers(out):
        q = out.get_submodule(name)
        base = nn.Linear if isinstance(q, QatLinear) else nn.Conv2d
        m = base.__new__(base)
        m.__dict__ = {k: v for k, v in q.__dict__.items()}
        m._modules = {k: v for k, v in q._modules.items() if k != "act"}
        _swap(out, name, m)
    return out


def is_qat(model: nn.Module) -> bool:
    return bool(quantized_layers(model))


# ---- preparing a model: the export's recipe on the training data's calibration images ---------------

def prepare(model: nn.Module, calib, smooth_alpha: float | None, method: str | None) -> tuple[nn.Module, dict]:
    """Smooth, choose the float layers, measure the initial ranges and fake-quantize the rest, all as
    an INT8 export would for these calibration images (calibration/policy.prepare_model, then the
    range estimator). Returns (model, record): the record joins the checkpoint's metadata as `qat.recipe`."""
    model, details = prepare_model(model, calib.x, smooth_alpha)
    record = {"calibration": {"images": int(len(calib.x)), "sha256": calib.sha256}, **details}
    layers = [n for n in layer_macs(model) if n not in details["token_mixing"]["kept_float"]]
    name, estimate = ranges.method(method)
    stats = input_stats(model, calib.x, layers)
    start = {n: tuple(float(v) for v in estimate(stats[n], False)) for n in layers}
    record["calibration"].update(method=name, estimator=ranges.describe(name),
                                 initial_ranges={n: [round(v, 6) for v in r] for n, r in start.items()})
    return quantize(model, start), record


def describe(model: nn.Module, recipe: dict) -> dict:
    """The checkpoint's `qat` section: the learned ranges by layer, the layers kept in float, the
    grid, and how the model was prepared. export/int8 reads `ranges` and `float_layers`."""
    quantized = quantized_layers(model)
    return {"ranges": learned(model), "float_layers": [n for n in layer_macs(model) if n not in quantized],
            "activations": "int8 per tensor, asymmetric over [lo, hi] (learned)",
            "weights": "int8 per output channel, symmetric, max |w| / 127", "recipe": recipe}

