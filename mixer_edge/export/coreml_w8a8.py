"""Core ML W8A8 through coremltools' PyTorch-side LinearQuantizer, used as post-training
quantization: observer-only calibration passes, the shared range estimator's input ranges
(calibration/ranges.py), quantizers on layer inputs only, then finalize; coreml.py converts the
result. Why each setting: docs/quantization.md."""
from __future__ import annotations

import contextlib
import operator
import warnings
from dataclasses import asdict, dataclass

import numpy as np

from ..calibration import ranges
from ..errors import CalibrationError
from ..noise import third_party
from .validate import compare


@dataclass(frozen=True)
class W8A8Recipe:
    """How LinearQuantizer is set up. Measured on the digits T/2 model (100 calibration images,
    logit SQNR against FP32 on the 179 eval images): residual adds kept float 36.1 dB, quantized
    35.0 dB (top-1 agreement 1.0 both); min_max and moving-average observers within 0.2 dB.
    min_max is the plain PTQ choice: the range of the whole calibration set, independent of order."""
    weight_dtype: str = "qint8"               # symmetric, per output channel
    activation_dtype: str = "quint8"          # LinearQuantizer's only 8-bit activation type; with the
    quantization_scheme: str = "affine"    # symmetric scheme the zero point is 0 or 128 (signed data)
    activation_observer: str = "min_max"
    weight_observer: str = "min_max"
    modules: tuple[str, ...] = ("Linear", "Conv2d")   # LayerNorm, GELU and the mean stay float
    float_ops: tuple[str, ...] = ("add",)             # residual adds: they feed LayerNorm
    calib_batch: int = 32


W8A8 = W8A8Recipe()


def quantize_w8a8(model, calib, float_layers=(), method=None, learned=None):
    """LinearQuantizer as post-training quantization: prepare; observers on, fake quantization off
    for the calibration passes (milestones [0, n, n, -1]: every observer sees float activations);
    then the input range of every quantized layer replaced by the shared estimator's (`method`,
    calibration/ranges.py), so Core ML gets the ranges every other target gets; then fake
    quantization on, observers off; finalize into a reference-quantized model. With `learned`
    ranges ({layer: [lo, hi]}, quantization-aware training) one pass on a blank image sets up the
    weight observers and the learned ranges replace the observed ones: no calibration images."""
    import torch
    from coremltools.optimize.torch.quantization import (LinearQuantizer, LinearQuantizerConfig,
                                                         ModuleLinearQuantizerConfig)

    if learned is None:
        batches = [torch.from_numpy(np.ascontiguousarray(b, np.float32)) for b in calib.batches(W8A8.calib_batch)]
    else:   # (1, C, H, W): only the weight observers need a pass
        batches = [torch.zeros(1, model.config.in_chans, *model.config.img_size)]
    module_cfg = ModuleLinearQuantizerConfig(
        quantization_scheme=W8A8.quantization_scheme, weight_dtype=W8A8.weight_dtype,
        activation_dtype=W8A8.activation_dtype, weight_per_channel=True,
        activation_observer=W8A8.activation_observer, weight_observer=W8A8.weight_observer,
        milestones=[0, len(batches), len(batches), -1])
    types = {getattr(torch.nn, m): module_cfg for m in W8A8.modules}
    types.update({getattr(operator, op): None for op in W8A8.float_ops})
    quantizer = LinearQuantizer(model, LinearQuantizerConfig(module_type_configs=types,
                                                             module_name_configs={n: None for n in float_layers}))
    with _quiet():
        prepared = quantizer.prepare(example_inputs=(batches[0][:1],))
        with torch.no_grad():
            for b in batches:
                quantizer.step()
                prepared(b)
            ranged = _set_input_ranges(prepared, model, None if learned else calib.x, method, learned)
            quantizer.step()          # step n: fake quantization on, observers off
        final = quantizer.finalize().eval()
    outputs_freed = _float_outputs(final)
    closeness = None
    if learned is None:
        x = torch.from_numpy(calib.x)
        with torch.no_grad(), _quiet():
            closeness = compare(model(x).numpy(), final(x).numpy())
    quantized = [n for n, m in final.named_modules() if hasattr(m, "weight_scale")]
    acts = sum(1 for node in final.graph.nodes if node.target is torch.quantize_per_tensor)
    return final, {
        "mode": "w8a8", "tool": "coremltools.optimize.torch", "api": "LinearQuantizer",
        "procedure": "prepare; observer-only calibration passes (no training); finalize; ct.convert",
        "recipe": asdict(W8A8), "weights": f"int8 {W8A8.quantization_scheme}, per output channel",
        "activations": f"8-bit per tensor, {W8A8.quantization_scheme}; layer inputs ranged by the shared estimator",
        "calibration": ranged, "output_quantizers_removed": outputs_freed,
        "quantized_modules": quantized,
        "float_modules": [n for n, m in model.named_modules() if isinstance(m, torch.nn.LayerNorm)],
        "activation_quantizers": acts, "calibration_images": 0 if learned else len(calib),
        "calibration_batches": 0 if learned else len(batches),
        "on_calibration_images": closeness and {k: round(closeness[k], 4) if closeness[k] is not None else None
                                                for k in ("sqnr_db", "top1_agreement", "cosine")},
        **({"reproduces_qat": "no: LinearQuantizer quantizes the weights on its own affine 8-bit per-channel "
                              "grid and the activations on 256 levels, not the 7-bit symmetric weights and "
                              "255-level activations QAT trained on (train/qat.py); the learned ranges are "
                              "used, the arithmetic differs (measured: 18-24 dB against the QAT model, "
                              "benchmarks/RESULTS.md section 15)"} if learned is not None else {}),
    }


def _float_outputs(final) -> int:
    """Drop the quantize / dequantize pairs LinearQuantizer puts on layer *outputs* (before the
    residual Add, the LayerNorm, the logits): the placement every target follows quantizes layer
    inputs only (docs/quantization.md). Measured on the MNIST T/4 model: 34.9 -> 39.1 dB logit SQNR.
    A pair is kept when its dequantized value feeds a quantized module. Returns pairs removed."""
    import torch

    graph, removed = final.graph, 0
    for node in list(graph.nodes):
        if node.target is not torch.quantize_per_tensor or len(node.users) != 1:
            continue
        dq = next(iter(node.users))
        if dq.op == "call_method" and dq.target == "dequantize" and not any(u.op == "call_module" for u in dq.users):
            dq.replace_all_uses_with(node.args[0])
            graph.erase_node(dq)
            graph.erase_node(node)
            removed += 1
    graph.lint()
    final.recompile()
    return removed


def _set_input_ranges(prepared, model, x, method, learned=None) -> dict:
    """Overwrite the observed range of the fake quantizer in front of each quantized layer with
    the estimator's (lo, hi) of that layer's input, measured on the float model, or with the range
    quantization-aware training learned. Core ML's LinearQuantizer offers min/max observers only;
    this is how percentile, entropy, MSE and learned ranges reach it."""
    import torch

    from ..calibration.observe import input_stats   # torch: imported when a model is quantized

    fronts = input_quantizers(prepared)
    if learned is not None:
        name, about = "learned", "learned by quantization-aware training (checkpoint qat.ranges)"
        missing = [n for n in fronts if n not in learned]
        if missing:
            raise CalibrationError(f"the checkpoint's learned ranges lack the Core ML quantized layers {missing}")
        chosen = {n: learned[n] for n in fronts}
    else:
        name, estimate = ranges.method(method)
        about = ranges.describe(name)
        stats = input_stats(model, x, list(fronts))
        chosen = {n: estimate(stats[n], W8A8.quantization_scheme == "symmetric") for n in fronts}
    applied = {}
    for layer, fq in fronts.items():
        lo, hi = chosen[layer]
        obs = fq.activation_post_process
        obs.min_val.copy_(torch.tensor(float(lo)))
        obs.max_val.copy_(torch.tensor(float(hi)))
        scale, zero_point = obs.calculate_qparams()
        fq.scale.copy_(scale)
        fq.zero_point.copy_(zero_point)
        applied[layer] = [round(float(lo), 6), round(float(hi), 6)]
    return {"method": name, "estimator": about, "ranges": applied}


def input_quantizers(prepared) -> dict:
    """{layer: the fake quantizer on its input} for every layer with quantized weights of a prepared
    model (a Linear / Conv2d, or one fused with its GELU), found by walking back from the layer
    through Dropouts (identity at inference; an Mlp calls its one Dropout twice, after GELU and
    after fc2, so the module in front of a quantizer is not a name for the layer it feeds) to the
    activation quantizer."""
    import torch

    out = {}
    for node in prepared.graph.nodes:
        if node.op != "call_module" or not any(hasattr(m, "weight_fake_quant")
                                               for m in prepared.get_submodule(node.target).modules()):
            continue
        arg = node.args[0] if node.args else None
        while getattr(arg, "op", None) == "call_module" and isinstance(prepared.get_submodule(arg.target),
                                                                        torch.nn.Dropout):
            arg = arg.args[0]
        if getattr(arg, "op", None) == "call_module" and hasattr(prepared.get_submodule(arg.target),
                                                                  "activation_post_process"):
            out[node.target] = prepared.get_submodule(arg.target)
    return out


@contextlib.contextmanager
def _quiet():
    with warnings.catch_warnings(), third_party():
        warnings.simplefilter("ignore")
        yield
