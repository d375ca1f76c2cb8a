"""What every INT8 export shares around its target's own quantization: the recipe applied to the
model before it (calibration/policy.py: smoothing and the token-mixing rule, the same policy QAT
trains with), the Q/DQ graph of a flavor, the count of quantized matrix multiplies in the written
model file, and the per-layer sensitivity that mixed precision (--max-drop) and `mixer-edge quant
inspect` rank layers by. docs/quantization.md has the measurements behind the defaults.
"""
from __future__ import annotations

import tempfile
from dataclasses import replace
from pathlib import Path

import numpy as np

from ..calibration import ranges
from ..calibration.policy import check_ranges, layer_macs, learned_grid, learned_model, learned_ranges, prepare_model
from ..errors import BadInput, CalibrationError
from . import qdq
from .onnx_io import export_fp32_onnx
from .validate import compare


def applies(spec) -> bool:
    return spec.precision == "int8" and not spec.weights_only


def needs_calibration(checkpoint, spec) -> bool:
    return applies(spec) and learned_ranges(checkpoint) is None


def check_request(checkpoint, spec, calib) -> None:
    """Before smoothing or exporting anything: the method is known, the calibration images fit the
    model, every layer named to stay in float exists."""
    if spec.precision == "int8" and spec.weights_only and (spec.float_layers or spec.max_drop is not None):
        raise BadInput("--keep-float and --max-drop choose the layers of a W8A8 export; --weights-only quantizes "
                       "the weights of every layer")
    if not applies(spec):
        return
    if learned_ranges(checkpoint) is not None:
        _check_learned(checkpoint, spec)
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


def prepare(checkpoint, spec, calib):
    """(checkpoint to export, spec to export with, details) for a W8A8 export: the model smoothed
    (exact in FP32: validation still compares with the original), and token-mixing layers whose
    input rows carry outlier channels kept in float (calibration/policy). Other exports pass through."""
    if not applies(spec):
        return checkpoint, spec, {}
    if learned_ranges(checkpoint) is not None:
        return _prepare_learned(checkpoint, spec)
    model, details = prepare_model(checkpoint.model, calib.x, spec.smooth, spec.split, frozenset(spec.float_layers))
    checkpoint = replace(checkpoint, model=model)
    extra = tuple(n for n in details["token_mixing"]["kept_float"] if n not in spec.float_layers)
    return checkpoint, replace(spec, float_layers=spec.float_layers + extra), details


def target_rule(target, spec, recipe: dict) -> tuple:
    """(spec, recipe) with the layers a target keeps in float by its own rule (its `float_by_rule`:
    layer -> why, measured) added and recorded, for a W8A8 export; other exports pass through."""
    rule = getattr(target, "float_by_rule", {}) if applies(spec) else {}
    extra = tuple(n for n in rule if n not in spec.float_layers)
    if not extra:
        return spec, recipe
    return (replace(spec, float_layers=spec.float_layers + extra),
            {**recipe, "target_rule": {"float_layers": list(extra), "why": {n: rule[n] for n in extra}}})


def _check_learned(checkpoint, spec) -> None:
    """A QAT checkpoint: its ranges name its layers; options that would change what it learned refused."""
    problems = check_ranges(checkpoint.meta["qat"], layer_macs(learned_model(checkpoint)))
    if spec.max_drop is not None:
        problems.append("--max-drop ranks layers by re-calibrating them; a QAT checkpoint is exported with the "
                        "ranges it learned (keep layers in float with --keep-float instead)")
    if problems:
        raise BadInput("quantization-aware checkpoint: " + "; ".join(problems))


def _prepare_learned(checkpoint, spec):
    """QAT: the model was smoothed and its float layers chosen before fine-tuning; export keeps both
    and takes the learned ranges (place_qdq). --smooth and --calib-method do not apply."""
    qat = checkpoint.meta["qat"]
    extra = tuple(n for n in qat.get("float_layers", ()) if n not in spec.float_layers)
    notes = [] if spec.calib_method is None else [
        f"--calib-method {spec.calib_method} ignored: the ranges were learned by quantization-aware training"]
    details = {"qat": {"ranges": "learned (checkpoint qat.ranges)", "layers": len(qat["ranges"]),
                       "float_layers": list(qat.get("float_layers", ())), "grid": learned_grid(checkpoint),
                       "split": {n: len(u) for n, u in (qat.get("split") or {}).items()},
                       "smoothing": "folded into the checkpoint before fine-tuning"
                       if qat.get("recipe", {}).get("smoothing") else "none"}, "notes": notes}
    checkpoint = replace(checkpoint, model=learned_model(checkpoint))   # split where training split it
    return checkpoint, replace(spec, float_layers=spec.float_layers + extra, smooth=None), details


def place_qdq(graph, checkpoint, calib, flavor: str, spec):
    """The Q/DQ graph of one flavor for a W8A8 export (ONNX Runtime, TensorRT, OpenVINO): with the
    ranges a QAT checkpoint learned, else calibrated on calib. Returns (graph, details)."""
    learned = learned_ranges(checkpoint)
    chosen = qdq.FLAVORS[flavor]
    if learned:   # the grid the checkpoint trained on: its weight bits (never more than the flavor's) and levels
        grid = learned_grid(checkpoint)
        chosen = replace(chosen, weight_bits=min(chosen.weight_bits, grid["weight_bits"]),
                         activation_levels=grid["activation_levels"])
    q, details = qdq.calibrate(graph, None if learned else calib.x, chosen, spec.calib_method,
                               frozenset(spec.float_layers), learned=learned)
    details["calibration"]["sha256"] = None if learned else calib.sha256
    return q, details


def quantized_ops_check(target, folder: Path, model, spec) -> dict | None:
    """An INT8 artifact quantizes the matrix multiplies its recipe says. Intended: every Conv2d /
    Linear of the PyTorch model less the layers kept in float (--keep-float, --max-drop, the
    token-mixing rule); counted: those the target's model file quantizes (target.matmul_ops; W8A8:
    data and weight; weights only: the weight). "failed" when they differ: an artifact must not
    pass, nor a --max-drop step meet its budget, by quantizing fewer ops than its recipe says. None
    for other precisions."""
    if spec.precision != "int8":
        return None
    layers = layer_macs(model)
    kept = [n for n in spec.float_layers if n in layers]
    record = {"intended": len(layers) - len(kept), "counted": None, "layers": len(layers), "float_layers": kept,
              "quantized": "weights" if spec.weights_only else "weights and activations"}
    read = getattr(target, "matmul_ops", None)
    if read is None:
        return {**record, "status": "not counted", "reason": f"no reader for {target.name} model files"}
    file = target.model_file
    ops = read(Path(folder) / file)
    counted = sum(m.weight and (spec.weights_only or m.activation) for m in ops)
    record.update(counted=counted, counted_in=f"{file}: {len(ops)} matrix multiplies",
                  float_ops=[m.name for m in ops if not (m.weight and (spec.weights_only or m.activation))])
    if counted == record["intended"]:
        return {**record, "status": "passed"}
    return {**record, "status": "failed",
            "reason": f"{file} quantizes the {record['quantized']} of {counted} of its {len(ops)} matrix multiplies; "
                      f"the recipe says {record['intended']} ({len(layers)} Conv2d / Linear layers less {len(kept)} "
                      f"kept in float)"}


def fp32_onnx(model):
    """The fp32 ONNX graph of a model, as every Q/DQ target starts from it."""
    with tempfile.TemporaryDirectory(prefix="mixer-edge-int8-") as tmp:
        return export_fp32_onnx(model, Path(tmp) / "fp32.onnx")


def sensitivity(model, x: np.ndarray, flavor_name: str, method: str | None = None) -> list[dict]:
    """Each quantizable layer quantized alone (every other layer float) in the shared Q/DQ graph of
    a flavor (a target's `simulation`), executed as written by ONNX Runtime: logit SQNR against the
    float graph on images x. Most sensitive (lowest SQNR) first. One measurement of activation
    statistics serves every layer."""
    graph = fp32_onnx(model)
    flavor = qdq.FLAVORS[flavor_name]
    acts, _ = qdq.quant_inputs(graph)
    stats = qdq.activation_stats(graph, x, acts)
    reference = run_graph(graph, x)
    layers = qdq.layers(graph)
    macs = layer_macs(model)
    rows = []
    for layer in layers:
        q, _ = qdq.calibrate(graph, x, flavor, method, frozenset(layers) - {layer}, stats=stats)
        rows.append({"layer": layer, "sqnr_db": round(compare(reference, run_graph(q, x))["sqnr_db"] or 0.0, 2),
                     "macs": macs.get(layer)})
    return sorted(rows, key=lambda r: r["sqnr_db"])


def run_graph(graph, x: np.ndarray, batch: int = 256) -> np.ndarray:
    """Logits of an ONNX graph under ONNX Runtime with basic optimizations (Q/DQ as written)."""
    sess = qdq.session(graph, optimized=True)
    feed = sess.get_inputs()[0].name
    return np.concatenate([sess.run(None, {feed: np.ascontiguousarray(x[i:i + batch], np.float32)})[0]
                           for i in range(0, len(x), batch)])
