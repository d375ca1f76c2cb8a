"""Quantization-aware fine-tuning: the deployment recipe's INT8 simulated in the training graph, so
the weights adapt to it and the activation ranges are learned, then handed to export instead of a
calibration (docs/quantization.md, "Quantization-aware training").

Placement is the export's (export/qdq.py): every Conv2d / Linear not kept in float gets
- its input fake-quantized per tensor over a learned [lo, hi] holding 0, on the one grid every
  target can compute exactly (GRID): [lo, hi] on codes -127..127, saturating at -128 and 127 as
  every int8 quantizer does (ONNX Runtime as an asymmetric int8 scale and zero point; TensorRT and
  OpenVINO, whose activations are symmetric, by recentring the input by a whole number of steps,
  which is the same arithmetic: 256 levels over [lo, hi] cannot be), symmetric (zero point 0)
  for the patch stem's convolution, which a recentring cannot reach;
- its weight fake-quantized per output channel, symmetric, max |w| / 63: 7-bit values, what ONNX
  Runtime's int8 kernels need to stay exact on CPUs without VNNI, so every target uses them;
the head stays float (OpenVINO keeps it float by its own rule: export/openvino.py), as do
LayerNorm, GELU, the residual Adds and the token mean. Before that, the model is smoothed, MLPs with
massive hidden units are split and the token-mixing rule picks the layers kept in float, exactly as
an INT8 export would (calibration/policy.prepare_model), on calibration images drawn from the
training data's calib split; the same images give the initial ranges (the default estimator), so
epoch 0 is the post-training recipe on this grid. The checkpoint stores a plain MlpMixer (the split
merged back, exactly) with the split's units, so export splits it the same way.

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
from ..calibration.split import SplitMlp, merge

GRID = {"weight_bits": 7, "activation_levels": 255}   # what QAT trains on; recorded in the checkpoint
MIN_SCALE = 1e-8           # qdq.activation_qparams / weight_qparams floor
FLOAT_LAYERS = ("head",)   # kept float by QAT on every target (OpenVINO's rule, 0.02 % of a Mixer's MACs)


def act_codes(levels: int) -> tuple[int, int]:
    """(code of lo, code of hi) of an activation grid over [lo, hi]: 256 levels -128..127 (checkpoints
    before GRID), 255 levels -127..127. Either way every int8 quantizer saturates at -128 and 127, as
    ONNX QuantizeLinear, OpenVINO and TensorRT do, so the simulation clamps there too."""
    return (-128, 127) if levels == 256 else (-127, 127)


def _round_ste(v: torch.Tensor) -> torch.Tensor:
    """round() forward, identity backward."""
    return v + (torch.round(v) - v).detach()


class ActQuant(nn.Module):
    """Per-tensor asymmetric fake quantization over a learned [lo, hi] = [lo0 e^a_lo, hi0 e^a_hi].
    Logarithms, so an optimizer step moves a range by a fraction of itself whatever its size. They
    learn with the weights (same rate, no weight decay: 0-d parameters); docs/quantization.md says
    what a faster rate did."""

    def __init__(self, lo: float, hi: float, levels: int = GRID["activation_levels"], symmetric: bool = False):
        super().__init__()
        self.register_buffer("lo0", torch.tensor(float(min(lo, 0.0))))
        self.register_buffer("hi0", torch.tensor(float(max(hi, 0.0))))
        self.a_lo = nn.Parameter(torch.zeros(()))
        self.a_hi = nn.Parameter(torch.zeros(()))
        self.code_lo, self.code_hi = act_codes(levels)
        self.symmetric = symmetric

    def bounds(self) -> tuple[torch.Tensor, torch.Tensor]:
        lo, hi = self.lo0 * self.a_lo.exp(), self.hi0 * self.a_hi.exp()
        if self.symmetric:   # [-a, a]: zero point 0 on every target
            a = torch.maximum(-lo, hi)
            return -a, a
        return lo, hi

    def range(self) -> tuple[float, float]:
        return tuple(float(v.detach()) for v in self.bounds())

    def forward(self, x):
        lo, hi = (v.double() for v in self.bounds())
        # In float64, then the scale rounded to float32, exactly as qdq.activation_qparams: a zero
        # point computed in float32 can land one step off export's at a half-way value.
        scale = (hi - lo).clamp(min=MIN_SCALE) / (self.code_hi - self.code_lo)
        zero = _round_ste(self.code_lo - lo / scale).clamp(-128, 127).float()
        scale = scale.float()
        q = torch.clamp(_round_ste(x / scale) + zero, -128, 127)   # gradient to x only inside the int8 codes
        return (q - zero) * scale


class SharedAct(nn.Module):
    """Another layer's ActQuant, used by reference (not registered: a checkpoint holds each range once)."""

    def __init__(self, source: ActQuant):
        super().__init__()
        object.__setattr__(self, "source", source)

    @property
    def symmetric(self) -> bool:
        return self.source.symmetric

    def range(self) -> tuple[float, float]:
        return self.source.range()

    def forward(self, x):
        return self.source(x)


def fake_quant_weight(w: torch.Tensor, qmax: int) -> torch.Tensor:
    """w: (out, ...) -> w on its per-output-channel symmetric grid of +-qmax (scale from max |w|, as export)."""
    amax = w.detach().abs().flatten(1).amax(dim=1).clamp(min=MIN_SCALE * qmax)   # (out,)
    scale = (amax / qmax).view(-1, *([1] * (w.ndim - 1)))
    return torch.clamp(_round_ste(w / scale), -qmax, qmax) * scale


class QatLinear(nn.Linear):
    def forward(self, x):
        return F.linear(self.act(x), fake_quant_weight(self.weight, self.weight_qmax), self.bias)


class QatConv2d(nn.Conv2d):
    def forward(self, x):
        return self._conv_forward(self.act(x), fake_quant_weight(self.weight, self.weight_qmax), self.bias)


def _quantized_copy(m: nn.Module, lo: float, hi: float, grid: dict, symmetric: bool) -> nn.Module:
    """A QatLinear / QatConv2d sharing m's weight and bias."""
    if type(m) is nn.Linear:
        q = QatLinear(m.in_features, m.out_features, bias=m.bias is not None, device="meta")
    elif type(m) is nn.Conv2d:
        q = QatConv2d(m.in_channels, m.out_channels, m.kernel_size, stride=m.stride, padding=m.padding,
                      dilation=m.dilation, groups=m.groups, bias=m.bias is not None, device="meta")
    else:
        raise TypeError(f"cannot quantize {type(m).__name__}")
    q.weight, q.bias = m.weight, m.bias
    q.weight_qmax = 2 ** (grid["weight_bits"] - 1) - 1
    q.act = ActQuant(lo, hi, grid["activation_levels"], symmetric).to(m.weight.device)
    return q


def _swap(model: nn.Module, name: str, new: nn.Module) -> None:
    parent, _, leaf = name.rpartition(".")
    setattr(model.get_submodule(parent) if parent else model, leaf, new)


def quantize(model: nn.Module, act_ranges: dict[str, tuple[float, float]], grid: dict = GRID) -> nn.Module:
    """Fake quantization on the named layers (in place), each input starting at its range, on `grid`
    (GRID for training; a checkpoint's recorded grid for its simulation)."""
    modules = dict(model.named_modules())
    for name, (lo, hi) in act_ranges.items():
        m = modules[name]
        # symmetric: as the checkpoint recorded, else (training) the convolutions on the 255-level grid
        sym = name in grid["symmetric"] if "symmetric" in grid else (
            type(m) is nn.Conv2d and grid["activation_levels"] == 255)
        _swap(model, name, _quantized_copy(m, lo, hi, grid, sym))
    for m in model.modules():   # a split MLP's two fc1 read one tensor: one range, as its one Q/DQ in a file
        if isinstance(m, SplitMlp) and isinstance(m.main.fc1, QatLinear) and isinstance(m.massive.fc1, QatLinear):
            m.massive.fc1.act = SharedAct(m.main.fc1.act)
    return model


def quantized_layers(model: nn.Module) -> list[str]:
    return [n for n, m in model.named_modules() if isinstance(m, (QatLinear, QatConv2d))]


def learned(model: nn.Module) -> dict[str, list[float]]:
    """{layer: [lo, hi]} of every fake-quantized layer input, unrounded: export derives its scales
    from exactly these."""
    return {n: list(m.act.range()) for n, m in model.named_modules() if isinstance(m, (QatLinear, QatConv2d))}


def simulation(model: nn.Module, ranges: dict, grid: dict) -> nn.Module:
    """A copy of a checkpoint's model (policy.learned_model: split as it trained) with its learned
    fake quantization back in, on its grid: the function QAT trained and its W8A8 exports compute
    (validation's reference for them)."""
    return quantize(copy.deepcopy(model), {n: tuple(r) for n, r in ranges.items()}, grid).eval()


def plain(model: nn.Module) -> nn.Module:
    """A copy with ordinary Linear / Conv2d layers holding the trained float weights and every split
    MLP merged back (exact): what a checkpoint stores. Export splits it again by the recorded units
    and quantizes onto the grid training saw (same scale rule)."""
    out = copy.deepcopy(model)
    for name in quantized_layers(out):
        q = out.get_submodule(name)
        base = nn.Linear if isinstance(q, QatLinear) else nn.Conv2d
        m = base.__new__(base)
        m.__dict__ = {k: v for k, v in q.__dict__.items() if k != "weight_qmax"}
        m._modules = {k: v for k, v in q._modules.items() if k != "act"}
        _swap(out, name, m)
    return merge(out)[0]


def is_qat(model: nn.Module) -> bool:
    return bool(quantized_layers(model))


# ---- preparing a model: the export's recipe on the training data's calibration images ---------------

def prepare(model: nn.Module, calib, smooth_alpha: float | None, method: str | None) -> tuple[nn.Module, dict]:
    """Smooth, choose the float layers, measure the initial ranges and fake-quantize the rest, all as
    an INT8 export would for these calibration images (calibration/policy.prepare_model, then the
    range estimator). Returns (model, record): the record joins the checkpoint's metadata as `qat.recipe`."""
    model, details = prepare_model(model, calib.x, smooth_alpha, split=True)
    record = {"calibration": {"images": int(len(calib.x)), "sha256": calib.sha256}, **details}
    kept = set(details["token_mixing"]["kept_float"]) | set(FLOAT_LAYERS)
    layers = [n for n in layer_macs(model) if n not in kept]
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
    symmetric = [n for n in quantized if model.get_submodule(n).act.symmetric]
    return {"ranges": learned(model), "float_layers": [n for n in layer_macs(model) if n not in quantized],
            "split": {n: list(m.units) for n, m in model.named_modules() if isinstance(m, SplitMlp)},
            "grid": {**GRID, "symmetric": symmetric},
            "activations": "int8 per tensor over [lo, hi] (learned), codes -127..127; symmetric for "
                           + (", ".join(symmetric) or "none"),
            "weights": "7-bit values per output channel, symmetric, max |w| / 63", "recipe": recipe}

