"""What every INT8 export shares around its target's own quantization: Mixer-aware smoothing of
the PyTorch model before it, and the per-layer sensitivity that mixed precision (--max-drop) and
`mixer-edge quant inspect` rank layers by. docs/quantization.md has the measurements behind the
defaults.
"""
from __future__ import annotations

import tempfile
from dataclasses import replace
from pathlib import Path

import numpy as np

from ..calibration import ranges
from ..calibration.smoothing import smooth
from . import qdq

# The Q/DQ flavor that simulates each target's arithmetic when ranking layers. Core ML's W8A8 is
# symmetric (LinearQuantizer's symmetric scheme), like TensorRT's.
SIMULATION = {"onnx": "onnxruntime", "tensorrt": "tensorrt", "openvino": "openvino", "coreml": "tensorrt"}


def applies(spec) -> bool:
    return spec.precision == "int8" and not spec.weights_only


def check_request(checkpoint, spec, calib) -> None:
    """Before smoothing or exporting anything: the method is known, the calibration images fit the
    model, every layer named to stay in float exists."""
    from ..errors import BadInput, CalibrationError

    if not applies(spec):
        return
    ranges.method(spec.calib_method)
    want = (checkpoint.config.in_chans, *checkpoint.config.img_size)
    if calib is not None and tuple(calib.x.shape[1:]) != want:
        raise CalibrationError(f"calibration images have shape {list(calib.x.shape[1:])} but the model takes "
                               f"{list(want)} (channels, height, width)")
    known = layer_macs(checkpoint.model)
    unknown = [n for n in spec.float_layers if n not in known]
    if unknown:
        raise BadInput(f"--keep-float names no layer of this model: {', '.join(unknown)}; its layers are "
                       f"{', '.join(known)}")


def smoothed(checkpoint, spec, calib):
    """(checkpoint whose model is smoothed, details), or (checkpoint, None) when smoothing is off
    or the export is not W8A8. Exact in FP32: validation still compares with the original model."""
    if not applies(spec) or spec.smooth is None:
        return checkpoint, None
    model, details = smooth(checkpoint.model, calib.x, spec.smooth)
    return replace(checkpoint, model=model), details


def fp32_onnx(model):
    """The fp32 ONNX graph of a model, as every Q/DQ target starts from it."""
    from .onnx import export_fp32_onnx

    with tempfile.TemporaryDirectory(prefix="mixer-edge-int8-") as tmp:
        return export_fp32_onnx(model, Path(tmp) / "fp32.onnx")


def sensitivity(model, x: np.ndarray, target: str, method: str | None = None) -> list[dict]:
    """Each quantizable layer quantized alone (every other layer float) in the shared Q/DQ graph of
    the target's flavor, executed as written by ONNX Runtime: logit SQNR against the float graph on
    images x. Most sensitive (lowest SQNR) first. One measurement of activation statistics serves
    every layer."""
    from .validate import compare

    graph = fp32_onnx(model)
    flavor = qdq.FLAVORS[SIMULATION[target]]
    acts, _ = qdq.quant_inputs(graph)
    stats = qdq.activation_stats(graph, x, acts)
    reference = run_graph(graph, x)
    layers = qdq.layers(graph)
    macs = layer_macs(model)
    rows = []
    for layer in layers:
        q, _ = qdq.calibrate(graph, x, flavor, method, frozenset(layers) - {layer}, stats=stats)
        rows.append({"layer": layer, "sqnr_db": round(compare(reference, run_graph(q, x))["sqnr_db"], 2),
                     "macs": macs.get(layer)})
    return sorted(rows, key=lambda r: r["sqnr_db"])


def run_graph(graph, x: np.ndarray, batch: int = 256) -> np.ndarray:
    """Logits of an ONNX graph under ONNX Runtime with basic optimizations (Q/DQ as written)."""
    sess = qdq.session(graph, optimized=True)
    feed = sess.get_inputs()[0].name
    return np.concatenate([sess.run(None, {feed: np.ascontiguousarray(x[i:i + batch], np.float32)})[0]
                           for i in range(0, len(x), batch)])


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
