"""ONNX target: one model.onnx per precision, executed by ONNX Runtime.

    fp32  torch.onnx.export (TorchScript exporter), opset >= 17 so LayerNorm is one
          LayerNormalization node; only the batch axis is dynamic (token mixing fixes N)
    fp16  the fp32 graph converted to float16, float32 at the inputs and outputs, overflow-prone
          nodes (LayerNormalization, ReduceMean, ...) kept in float32
    int8  static QDQ from export/qdq.py (ONNX Runtime flavor: asymmetric int8 activations, 7-bit
          per-channel int8 weights, which MLAS runs exactly on CPUs with and without VNNI)
    int4  the MLPs' GPTQ int4 weights as blocked DequantizeLinear (export/int4.py, opset 21), which
          ONNX Runtime fuses into MatMulNBits and runs with int8 activations quantized per block

The ONNX file itself (fp32 export, metadata, saving) is export/onnx_io.py, shared with the TensorRT
and OpenVINO targets; no target calls another. onnx and onnxruntime are imported inside functions only.
"""
from __future__ import annotations

import tempfile
from collections import Counter
from pathlib import Path

import numpy as np

from ..calibration import ranges
from ..errors import BadInput, CalibrationError, require
from ..runtime.backends import onnxruntime as ort_backend
from .artifact import EDGE_BENCH
from .base import Capabilities, Exported, LoadedRunner, Status, installed, missing_status, runtime_runner
from .int4 import OPSET as INT4_OPSET
from .int4 import qdq_int4
from .int4 import summary as int4_summary
from .int8 import needs_calibration, place_qdq
from .onnx_graph import FP16_BLOCK_OPS, tensor_types, toposort
from .onnx_stem import stem_as_matmul
from .onnx_io import EXPORTER, INPUT, OUTPUT, add_metadata, export_fp32_onnx, onnx_versions, save_onnx
from .qdq import onnx_file_matmuls

MODEL = "model.onnx"
PROVIDER = "CPUExecutionProvider"

# ---- fp16 ----------------------------------------------------------------------------------------

def to_fp16(onnx_model, block_ops=FP16_BLOCK_OPS):
    """float16 copy of an fp32 model, float32 at inputs/outputs so every runner feeds float32.
    Returns (model, details). Div nodes are kept in float32 unless they divide by a constant >= 1
    (GELU's x / sqrt(2) cannot overflow; a hand-written LayerNorm's x / sqrt(var) can)."""
    require("onnx", "onnx")
    require("onnxruntime", "onnx")
    from onnxruntime.transformers.float16 import convert_float_to_float16

    blocked_div = _risky_divs(onnx_model)
    m16 = convert_float_to_float16(onnx_model, keep_io_types=True, op_block_list=list(block_ops),
                                   node_block_list=blocked_div or None)
    toposort(m16.graph)  # the converter appends its input casts at the end of the node list
    kept = Counter(n.op_type for n in m16.graph.node if n.op_type in block_ops)
    return m16, {"keep_io_types": True, "block_ops": list(block_ops), "blocked_div_nodes": blocked_div,
                 "kept_fp32": dict(sorted(kept.items()))}


def _risky_divs(onnx_model) -> list[str]:
    from onnx import numpy_helper

    consts = {i.name: i for i in onnx_model.graph.initializer}
    consts.update({n.output[0]: a.t for n in onnx_model.graph.node if n.op_type == "Constant"
                   for a in n.attribute if a.name == "value"})
    risky = []
    for n in onnx_model.graph.node:
        if n.op_type != "Div":
            continue
        d = consts.get(n.input[1])
        if d is None or not np.all(np.abs(numpy_helper.to_array(d)) >= 1):
            risky.append(n.name)
    return risky


def cpu_fp32_fallback(path) -> dict:
    """Which float16 nodes ONNX Runtime's CPU EP actually runs in float32. The CPU EP has half
    kernels for few ops; for the rest its InsertCastTransformer silently wraps the node in casts.
    Found by comparing each node's input types before and after session initialisation."""
    onnx = require("onnx", "onnx")
    ort = require("onnxruntime", "onnx")
    with tempfile.TemporaryDirectory(prefix="mixer-edge-fp16-") as tmp:
        so = ort.SessionOptions()
        so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL  # casts only, no fusion
        so.optimized_model_filepath = str(Path(tmp) / "as_run.onnx")
        so.log_severity_level = 3
        ort.InferenceSession(str(path), so, providers=[PROVIDER])
        after = _input_float_types(onnx.load(so.optimized_model_filepath))
    before = _input_float_types(onnx.load(str(path)))
    half, single = onnx.TensorProto.FLOAT16, onnx.TensorProto.FLOAT
    fp16 = {name: op for name, (op, t) in before.items() if t == {half}}
    upcast = Counter(op for name, op in fp16.items() if after.get(name, (op, {half}))[1] == {single})
    native = Counter(op for name, op in fp16.items() if after.get(name, (op, {half}))[1] != {single})
    return {"fp16_nodes": len(fp16), "upcast_nodes": sum(upcast.values()),
            "upcast_ops": dict(sorted(upcast.items())), "native_fp16_ops": dict(sorted(native.items()))}


def _input_float_types(model) -> dict:
    """node name -> (op type, set of float element types among its inputs)."""
    onnx = require("onnx", "onnx")
    types = tensor_types(model)
    floats = (onnx.TensorProto.FLOAT, onnx.TensorProto.FLOAT16)
    return {n.name: (n.op_type, {types.get(i) for i in n.input if types.get(i) in floats})
            for n in model.graph.node if n.op_type != "Cast"}


# ---- int8 ----------------------------------------------------------------------------------------

def pre_processed(fp32_path):
    """onnxruntime's quant_pre_process (symbolic shape inference, constant folding, basic graph
    optimizations) on an fp32 ONNX file, as ONNX Runtime's quantization guide asks before Q/DQ:
    its integer-kernel fusions then match (measured: T/4 batch 1 otherwise 6% slower)."""
    onnx = require("onnx", "onnx")
    from onnxruntime.quantization.shape_inference import quant_pre_process

    with tempfile.TemporaryDirectory(prefix="mixer-edge-pre-") as tmp:
        out = Path(tmp) / "pre.onnx"
        quant_pre_process(str(fp32_path), str(out))
        return onnx.load(str(out))


def quantized_op_types(onnx_model) -> dict:
    """Op types whose first two inputs (data and weight) both come from DequantizeLinear, with
    counts: what a runtime can run in integer arithmetic. Bias Adds and Reshapes that merely read a
    dequantized tensor are not counted."""
    produced_by_dq = {o for n in onnx_model.graph.node if n.op_type == "DequantizeLinear" for o in n.output}
    ops = Counter(n.op_type for n in onnx_model.graph.node
                  if n.op_type not in ("QuantizeLinear", "DequantizeLinear")
                  and len(n.input) >= 2 and all(i in produced_by_dq for i in n.input[:2]))
    return dict(sorted(ops.items()))


# ---- the target ----------------------------------------------------------------------------------

class OnnxTarget:
    name = "onnx"
    capabilities = Capabilities(frozenset({"fp32", "fp16", "int8", "int4"}), ("onnx", "onnxruntime"), "onnx",
                                "ONNX Runtime (CPU EP here; any EP elsewhere)")
    backend = ort_backend
    model_file = MODEL
    simulation = "onnxruntime"
    launchers = (EDGE_BENCH,)

    def status(self) -> Status:
        if not installed(*self.capabilities.requires):
            return missing_status(self.capabilities)
        try:
            providers = require("onnxruntime", "onnx").get_available_providers()
        except Exception as e:  # a broken install says why instead of failing `mixer-edge targets`
            return Status(True, False, f"onnxruntime does not import here: {e}")
        if PROVIDER not in providers:
            return Status(True, False, f"no {PROVIDER} (providers: {', '.join(providers)})")
        return Status(True, True)

    def export(self, checkpoint, spec, calib, out_dir: Path) -> Exported:
        out = Path(out_dir) / MODEL
        base = {"file": MODEL, "opset": spec.opset, "exporter": EXPORTER,
                "dynamic_axes": {INPUT: ["batch"], OUTPUT: ["batch"]}, "providers": [PROVIDER],
                "versions": onnx_versions()}
        if spec.precision == "int8":
            _check_calibration(checkpoint, spec, calib)
        with tempfile.TemporaryDirectory(prefix="mixer-edge-onnx-") as tmp:
            fp32 = Path(tmp) / "fp32.onnx"
            model = export_fp32_onnx(checkpoint.model, fp32, spec.opset)
            details = _PRECISIONS[spec.precision](model, fp32, out, checkpoint, calib, spec)
        if spec.precision == "int4":
            base["opset"] = INT4_OPSET
        return Exported(files=(MODEL,), details={**base, **details})

    def load_runner(self, artifact, threads: int | None = None, provider: str | None = None) -> LoadedRunner:
        """The runtime's ONNX Runtime backend (runtime/backends/onnxruntime.py), as a device runs it."""
        return runtime_runner(self.backend, artifact, threads=threads, provider=provider)

    def validation_runner(self, artifact) -> LoadedRunner:
        return self.load_runner(artifact)

    def matmul_ops(self, path) -> list:
        return onnx_file_matmuls(path)


def _check_calibration(ck, spec, calib) -> None:
    if spec.weights_only:
        raise BadInput("ONNX Runtime int8 is static W8A8 (QDQ); weights-only int8 is a Core ML option")
    if not needs_calibration(ck, spec):
        return   # ranges learned by quantization-aware training
    if calib is None or len(calib) == 0:
        raise CalibrationError("onnx int8 needs a calibration set; got none")
    want = (ck.config.in_chans, *ck.config.img_size)
    if tuple(calib.x.shape[1:]) != want:
        raise CalibrationError(f"calibration images have shape {list(calib.x.shape[1:])} but the model "
                               f"takes {list(want)} (channels, height, width)")
    ranges.method(spec.calib_method)  # unknown method: fail before exporting anything


def _write_fp32(model, fp32_path, out, ck, calib, spec) -> dict:
    save_onnx(add_metadata(model, ck), out)
    return {}


def _write_fp16(model, fp32_path, out, ck, calib, spec) -> dict:
    m16, details = to_fp16(model)
    save_onnx(add_metadata(m16, ck), out)
    fallback = cpu_fp32_fallback(out)
    notes = []
    if fallback["upcast_nodes"]:
        notes.append(f"ONNX Runtime's CPU EP has no float16 kernels for {', '.join(fallback['upcast_ops'])}: "
                     f"it runs {fallback['upcast_nodes']} of {fallback['fp16_nodes']} float16 nodes in float32 "
                     f"between casts, so validation here checks float16 weights and tensors, not float16 "
                     f"arithmetic; GPU EPs (CUDA, TensorRT) run them in float16")
    return {"fp16": {**details, "cpu_ep": fallback}, "notes": notes}


def _write_int8(model, fp32_path, out, ck, calib, spec) -> dict:
    graph, stem = stem_as_matmul(pre_processed(fp32_path))   # an int8 stem in ONNX Runtime (export/onnx_stem.py)
    q, details = place_qdq(graph, ck, calib, "onnxruntime", spec)
    details["stem"] = "patches x matrix (MatMulIntegerToFloat)" if stem else "convolution (as exported)"
    save_onnx(add_metadata(q, ck), out)
    details["quantized_op_types"] = quantized_op_types(q)
    return {"int8": details}


def _write_int4(model, fp32_path, out, ck, calib, spec) -> dict:
    q = qdq_int4(model, ck.model)
    save_onnx(add_metadata(q, ck), out)
    return {"int4": {**int4_summary(q), "opset": q.opset_import[0].version,
                     "runs_as": "MatMulNBits (ONNX Runtime fuses each int4 DequantizeLinear into its MatMul; "
                                "activations quantized to int8 per block at run time, accuracy level 4)"}}


_PRECISIONS = {"fp32": _write_fp32, "fp16": _write_fp16, "int8": _write_int8, "int4": _write_int4}
