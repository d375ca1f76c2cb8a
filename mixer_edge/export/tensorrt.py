"""TensorRT target: a TensorRT-ready ONNX per precision (fp32; FP16-typed with fp32 islands;
explicit Q/DQ int8 from export/qdq.py), validated here with ONNX Runtime, its engine built on the
device by runtime/trt_build.py (an engine is tied to its TensorRT version and GPU). The rules the
files follow, and why, are in docs/quantization.md (Q/DQ placement) and docs/tensorrt.md (FP16
islands, engine build); check_explicit_quantization and check_fp16_model state them as code.
"""
from __future__ import annotations

import os
import shutil
import tempfile
from collections import Counter, defaultdict
from pathlib import Path

import numpy as np

from ..errors import BadInput, CalibrationError, MixerEdgeError, ValidationError, require
from ..calibration import ranges
from ..runtime import trt_build as tb
from . import qdq
from .qdq import QUANT_OPS, WEIGHT_AXIS, _attr
from .base import Capabilities, Exported, LoadedRunner, NotRunnableHere, Status, installed, missing_status

MODEL, SCRIPT, EDGE_BENCH, ENGINE = "model.onnx", "trt_build.py", "edge_bench.py", tb.ENGINE
RUNTIME_DIR = Path(__file__).resolve().parents[1] / "runtime"
FP16_SAFE_MAX = 1e4                      # tensors above this max |value| on calibration data keep fp32
ONNX_KINDS = {"fp32": "fp32", "fp16": "fp16-typed", "int8": "explicit-qdq"}


# ---- activation maxima, for the FP16 scan ----------------------------------------------------------

def float_tensors(onnx_model) -> list[str]:
    """Names of the float32 tensors produced by nodes (not initializers, not Constants)."""
    onnx = require("onnx", "onnx")
    inferred = onnx.shape_inference.infer_shapes(onnx_model)
    types = {v.name: v.type.tensor_type.elem_type for v in [*inferred.graph.value_info, *inferred.graph.output]}
    return [o for n in onnx_model.graph.node if n.op_type != "Constant" for o in n.output
            if types.get(o) == onnx.TensorProto.FLOAT]


def tensor_amax(onnx_model, x: np.ndarray, names) -> dict[str, float]:
    """max |value| of each named tensor over images x (ONNX Runtime, tensors exposed)."""
    amax = dict.fromkeys(names, 0.0)
    for outs in qdq.run_tensors(onnx_model, x, names)():
        for n, v in outs.items():
            amax[n] = max(amax[n], float(np.abs(v).max()) if v.size else 0.0)
    return amax


# ---- the rules, as checks -------------------------------------------------------------------------

def check_explicit_quantization(onnx_model) -> list[str]:
    """Violations of TensorRT's explicit-quantization rules as this target applies them:
    every Q/DQ has an int8 zero point of all zeros and positive finite constant scales; every
    QuantizeLinear feeds only DequantizeLinear; every DequantizeLinear feeds only input 0 or 1 of a
    MatMul / Gemm / Conv; weight Q/DQ are per output channel (axis and length), activation Q/DQ
    per tensor (a scalar scale)."""
    from onnx import numpy_helper

    g = onnx_model.graph
    inits = {i.name: numpy_helper.to_array(i) for i in g.initializer}
    consumers, producer = defaultdict(list), {}
    for node in g.node:
        for k, name in enumerate(node.input):
            consumers[name].append((node, k))
        producer.update({o: node for o in node.output})
    qs = [n for n in g.node if n.op_type == "QuantizeLinear"]
    dqs = [n for n in g.node if n.op_type == "DequantizeLinear"]
    out = [] if qs else ["no QuantizeLinear nodes: not an explicitly quantized model"]
    for node in qs + dqs:
        what = f"{node.op_type} {node.name!r}"
        out += _check_scale_zero_point(node, what, inits)
        if node.op_type == "QuantizeLinear":
            out += [f"{what} feeds {c.op_type} {c.name!r}; a QuantizeLinear may only feed DequantizeLinear"
                    for c, _ in consumers[node.output[0]] if c.op_type != "DequantizeLinear"]
            continue
        for c, k in consumers[node.output[0]]:
            if c.op_type not in QUANT_OPS or k > 1:
                out.append(f"{what} feeds {c.op_type} {c.name!r} (input {k}); Q/DQ may only feed the data or weight "
                           f"input of {' / '.join(QUANT_OPS)}, never LayerNormalization, Add or other ops")
            else:
                out += _check_granularity(node, what, c, k, inits, _dq_source(node, inits, producer))
    return out


def _check_scale_zero_point(node, what: str, inits: dict) -> list[str]:
    out = []
    scale = inits.get(node.input[1]) if len(node.input) > 1 else None
    if scale is None:
        out.append(f"{what}: scale {node.input[1] if len(node.input) > 1 else '(none)'} is not a constant")
    elif not (np.all(np.isfinite(scale)) and np.all(scale > 0)):
        out.append(f"{what}: scales must be positive and finite, got {np.ravel(scale)[:4].tolist()}")
    if len(node.input) < 3 or not node.input[2]:
        out.append(f"{what}: no zero point (ONNX then means uint8); TensorRT needs an int8 zero point of 0")
        return out
    zp = inits.get(node.input[2])
    if zp is None:
        out.append(f"{what}: zero point {node.input[2]} is not a constant")
    elif zp.dtype != np.int8:
        out.append(f"{what}: zero point is {zp.dtype}; TensorRT needs int8 (symmetric, zero point 0)")
    elif np.any(zp != 0):
        out.append(f"{what}: zero point is not all zeros ({np.ravel(zp)[:4].tolist()}); TensorRT quantization "
                   f"is symmetric")
    return out


def _check_granularity(dq, what: str, consumer, k: int, inits: dict, source: str | None) -> list[str]:
    scale = inits.get(dq.input[1])
    if scale is None:
        return []
    if source is None or k != 1 or consumer.op_type not in WEIGHT_AXIS:
        if scale.ndim != 0:
            return [f"{what}: activation Q/DQ must be per-tensor (a scalar scale), got scale shape {list(scale.shape)}"]
        return []
    w = inits[source]
    axis = WEIGHT_AXIS[consumer.op_type](consumer, w)
    got = _attr(dq, "axis", 1)
    got = got + w.ndim if got < 0 else got
    channels = w.shape[axis]
    if scale.ndim != 1 or scale.shape[0] != channels or got != axis:
        return [f"{what}: weight {source} of {consumer.op_type} {consumer.name!r} must be per-channel on its output "
                f"axis {axis} ({channels} scales); got axis {got}, scale shape {list(scale.shape)}"]
    return []


def _dq_source(dq, inits: dict, producer: dict) -> str | None:
    """The initializer a DequantizeLinear reads, directly (int8 weights) or through its
    QuantizeLinear (float weights); None for an activation."""
    name = dq.input[0]
    q = producer.get(name)
    if q is not None and q.op_type == "QuantizeLinear":
        name = q.input[0]
    return name if name in inits else None


def check_fp16_model(onnx_model, keep_fp32=()) -> list[str]:
    """An FP16-typed model as TensorRT's strong typing wants it: float16 initializers present;
    float32 at the graph input and output; every LayerNormalization computed in float32 (input,
    scale and bias); every tensor named in keep_fp32 float32."""
    onnx = require("onnx", "onnx")
    f32, f16 = onnx.TensorProto.FLOAT, onnx.TensorProto.FLOAT16
    out = []
    if not any(i.data_type == f16 for i in onnx_model.graph.initializer):
        out.append("no float16 initializers: the weights were not converted")
    inferred = onnx.shape_inference.infer_shapes(onnx_model)
    g = inferred.graph
    types = {v.name: v.type.tensor_type.elem_type for v in [*g.value_info, *g.input, *g.output]}
    types.update({i.name: i.data_type for i in g.initializer})
    for v in [*g.input, *g.output]:
        if v.type.tensor_type.elem_type != f32:
            out.append(f"graph {'input' if v in g.input else 'output'} {v.name!r} is not float32")
    for node in g.node:
        if node.op_type == "LayerNormalization":
            bad = [i for i in node.input if i and types.get(i) != f32]
            if bad:
                out.append(f"LayerNormalization {node.name!r} is not computed in float32 (float16 inputs: {bad})")
    out += [f"tensor {t!r} (kept fp32: large on calibration data) is "
            f"{'missing' if t not in types else 'not float32'}" for t in keep_fp32 if types.get(t) != f32]
    return out


# ---- fp16 ----------------------------------------------------------------------------------------

def to_fp16_typed(fp32_model, x: np.ndarray | None, threshold: float = FP16_SAFE_MAX):
    """FP16-typed copy of an fp32 model: float32 at the input and output, LayerNorm (and the other
    onnx.FP16_BLOCK_OPS) and every node touching a tensor above `threshold` on images x kept in
    float32 between explicit Casts. Returns (model, details)."""
    onnx = require("onnx", "onnx")
    require("onnxruntime", "onnx")
    from onnxruntime.transformers.float16 import convert_float_to_float16

    from .onnx import FP16_BLOCK_OPS, _toposort

    large, scanned, peak = {}, 0, None
    if x is not None:
        amax = tensor_amax(fp32_model, x, float_tensors(fp32_model))
        scanned, peak = len(amax), max(amax.values(), default=0.0)
        large = {t: a for t, a in amax.items() if a > threshold}
    blocked = sorted({n.name for n in fp32_model.graph.node
                      if any(t in large for t in [*n.input, *n.output])} - {""})
    model = onnx.ModelProto()
    model.CopyFrom(fp32_model)
    m16 = convert_float_to_float16(model, keep_io_types=True, op_block_list=list(FP16_BLOCK_OPS),
                                   node_block_list=blocked or None)
    _toposort(m16.graph)  # the converter appends its input Casts at the end of the node list
    roundtrips = _drop_cast_roundtrips(m16)
    casts = sum(n.op_type == "Cast" for n in m16.graph.node)
    details = {"keep_io_types": True, "block_ops": list(FP16_BLOCK_OPS), "threshold": threshold,
               "activation_scan": ({"images": int(len(x)), "tensors": scanned, "max_abs": peak}
                                   if x is not None else "skipped: no calibration set given"),
               "large_tensors": {t: float(a) for t, a in sorted(large.items())}, "blocked_nodes": blocked,
               "cast_nodes": casts, "cast_roundtrips_removed": roundtrips, "fp32_ops": _fp32_ops(m16)}
    return m16, details


def _drop_cast_roundtrips(model) -> int:
    """The converter casts every output of a blocked node to float16 and back to float32 for the
    next blocked node: fp32 -> fp16 -> fp32 between two fp32 islands, which would overflow exactly
    the tensors kept in fp32 for being large. Wire such consumers to the fp32 source instead, drop
    the casts left unused and give the fp32 tensor its original name back. Returns pairs removed."""
    onnx = require("onnx", "onnx")
    f32, f16 = onnx.TensorProto.FLOAT, onnx.TensorProto.FLOAT16
    g = model.graph
    inferred = onnx.shape_inference.infer_shapes(model).graph
    types = {v.name: v.type.tensor_type.elem_type for v in [*inferred.value_info, *inferred.input, *inferred.output]}
    producer = {o: n for n in g.node for o in n.output}
    graph_outputs = {o.name for o in g.output}

    def is_cast(n, to):
        return n is not None and n.op_type == "Cast" and _attr(n, "to") == to

    def rename(old, new):
        for n in g.node:
            for seq in (n.input, n.output):
                for k, name in enumerate(seq):
                    if name == old:
                        seq[k] = new

    removed = 0
    for back in [n for n in g.node if is_cast(n, f32)]:
        down = producer.get(back.input[0])
        if not is_cast(down, f16) or types.get(down.input[0]) != f32 or back.output[0] in graph_outputs:
            continue
        g.node.remove(back)
        rename(back.output[0], down.input[0])
        removed += 1
    used = {i for n in g.node for i in n.input} | graph_outputs
    touched = set()
    for down in [n for n in g.node if is_cast(n, f16) and n.output[0] not in used]:
        if types.get(down.input[0]) != f32:
            continue
        g.node.remove(down)
        rename(down.input[0], down.output[0])  # the fp32 tensor takes back its original name
        touched.update([down.input[0], down.output[0]])
    kept = [v for v in g.value_info if v.name not in touched]
    del g.value_info[:]
    g.value_info.extend(kept)
    return removed


def _fp32_ops(model) -> dict:
    """Op types (counts) that compute in float32 in an fp16 model: the fp32 islands."""
    onnx = require("onnx", "onnx")
    g = onnx.shape_inference.infer_shapes(model).graph
    types = {v.name: v.type.tensor_type.elem_type for v in [*g.value_info, *g.input, *g.output]}
    types.update({i.name: i.data_type for i in g.initializer})
    ops = Counter(n.op_type for n in g.node if n.op_type != "Cast"
                  and any(types.get(i) == onnx.TensorProto.FLOAT for i in n.input))
    return dict(sorted(ops.items()))


# ---- the three ONNX kinds ------------------------------------------------------------------------

def _write_fp32(model, ck, calib, spec) -> tuple:
    return model, {}


def _write_fp16(model, ck, calib, spec) -> tuple:
    m16, details = to_fp16_typed(model, None if calib is None else calib.x)
    problems = check_fp16_model(m16, details["large_tensors"])
    if problems:
        raise ValidationError("the fp16 TensorRT ONNX breaks the FP16 rules: " + "; ".join(problems))
    notes = [] if calib is not None else [
        "no calibration set: large activations were not scanned; only LayerNorm / ReduceMean are kept fp32"]
    return m16, {"fp16": details, "notes": notes}


def _write_int8(model, ck, calib, spec) -> tuple:
    q, details = qdq.calibrate(model, calib.x, qdq.FLAVORS["tensorrt"], spec.calib_method,
                               frozenset(spec.float_layers))
    problems = check_explicit_quantization(q)
    if problems:
        raise ValidationError("the int8 TensorRT ONNX breaks the explicit-quantization rules: " + "; ".join(problems))
    details["calibration"]["sha256"] = calib.sha256
    return q, {"qdq": details}


_PRECISIONS = {"fp32": _write_fp32, "fp16": _write_fp16, "int8": _write_int8}


# ---- engine building (on a device with tensorrt + GPU) -------------------------------------------

def runs_here() -> tuple[bool, str]:
    """(can an engine be built and run here, why not). No heavy import unless a GPU is present."""
    have_gpu, why_gpu = tb.gpu_present()
    if not installed("tensorrt"):
        reason = ("needs tensorrt and an NVIDIA GPU: tensorrt is not installed here, the engine is built on the "
                  "device (pip install 'mixer-edge[tensorrt]')")
        return False, reason + ("" if have_gpu else f"; {why_gpu}")
    if not have_gpu:
        return False, f"needs an NVIDIA GPU: {why_gpu}; the engine is built on the device"
    try:
        tb.import_tensorrt()
    except tb.NotRunnable as e:
        return False, str(e)
    return True, ""


def build_plan(manifest: dict, trt_major: int, **overrides) -> dict:
    """The parameters build_engine would use for an artifact on TensorRT `trt_major` (pure)."""
    try:
        return tb.build_plan(manifest, trt_major, **overrides)
    except tb.BadInput as e:
        raise BadInput(str(e)) from None


def build_engine(onnx_path, precision: str, out_dir, min_batch: int = 1, opt_batch: int = 1, max_batch: int = 32,
                 timing_cache=None, workspace_mib: int | None = None) -> dict:
    """Build out_dir/model.engine from a TensorRT-ready ONNX (trt_build.build_engine, errors ours)."""
    with _trt_errors():
        return tb.build_engine(onnx_path, precision, out_dir, min_batch=min_batch, opt_batch=opt_batch,
                               max_batch=max_batch, timing_cache=timing_cache, workspace_mib=workspace_mib,
                               onnx_kind=ONNX_KINDS[precision])


def build_artifact_engine(args) -> int:
    """`mixer-edge trt build`: trt_build.py's own run on parsed options, its errors as ours."""
    from .artifact import load_artifact

    art = load_artifact(args.artifact)   # not an artifact, or tampered: BadInput
    if art.target != "tensorrt":
        raise BadInput(f"{args.artifact} is a {art.target!r} artifact, not a TensorRT one; export one with "
                       f"`mixer-edge export CHECKPOINT --target tensorrt`")
    if not installed("tensorrt"):
        require("tensorrt", "tensorrt")  # MissingDependency naming the extra
    with _trt_errors():
        return tb.run_parsed(args)


class _trt_errors:
    """trt_build's errors as mixer-edge's: bad input stays bad input; no GPU or no working
    tensorrt is a MixerEdgeError that says why."""

    def __enter__(self):
        return self

    def __exit__(self, kind, exc, tb_):
        if isinstance(exc, tb.BadInput):
            raise BadInput(str(exc)) from None
        if isinstance(exc, tb.NotRunnable):
            if not installed("tensorrt"):
                require("tensorrt", "tensorrt")
            raise MixerEdgeError(f"cannot build a TensorRT engine here: {exc}") from None
        return False


def _engine_at_export(folder: Path, precision: str) -> dict:
    defaults = dict(tb.DEFAULT_BATCH)
    ok, why = runs_here()
    if not ok:
        return {"built": False, "reason": why, "defaults": defaults,
                "build_on_device": f"python {SCRIPT} ARTIFACT_DIR (or mixer-edge trt build ARTIFACT_DIR)"}
    info = build_engine(folder / MODEL, precision, folder, **defaults)
    return {**info, "defaults": defaults}


# ---- the target ----------------------------------------------------------------------------------

class TensorRTTarget:
    name = "tensorrt"
    # requires: what is needed HERE to produce and validate the artifact. The engine build needs
    # tensorrt on the device: pip extra "tensorrt" there.
    capabilities = Capabilities(frozenset({"fp32", "fp16", "int8"}), ("onnx", "onnxruntime"), "onnx",
                                "TensorRT 10.x / 11.x on an NVIDIA GPU or Jetson (engine built on the device)")

    def status(self) -> Status:
        if not installed(*self.capabilities.requires):
            return missing_status(self.capabilities)
        ok, why = runs_here()
        return Status(True, ok, "" if ok else f"{why}; export writes the TensorRT-ready ONNX, validated with "
                                              f"ONNX Runtime")

    def export(self, checkpoint, spec, calib, out_dir: Path) -> Exported:
        from .onnx import add_metadata, export_fp32_onnx, onnx_versions, save_onnx

        notes = _check_spec(checkpoint, spec, calib)
        out = Path(out_dir)
        with tempfile.TemporaryDirectory(prefix="mixer-edge-trt-") as tmp:
            model = export_fp32_onnx(checkpoint.model, Path(tmp) / "fp32.onnx", spec.opset)
        model, details = _PRECISIONS[spec.precision](model, checkpoint, calib, spec)
        save_onnx(add_metadata(model, checkpoint), out / MODEL)
        scripts = [s for s in (SCRIPT, EDGE_BENCH) if (RUNTIME_DIR / s).is_file()]
        for s in scripts:
            shutil.copyfile(RUNTIME_DIR / s, out / s)
        engine = _engine_at_export(out, spec.precision)
        versions = onnx_versions()
        if engine.get("built"):
            versions.update({"tensorrt": engine["tensorrt"], "cuda": engine["cuda"]["version"]})
        files = (MODEL, *scripts, *((engine["file"],) if engine.get("built") else ()))
        return Exported(files=files, details={
            "file": MODEL, "onnx_kind": ONNX_KINDS[spec.precision], "opset": spec.opset,
            "exporter": "torch.onnx.export (TorchScript, dynamo=False)", "dynamic_axes": {"input": ["batch"]},
            **details, "notes": notes + details.get("notes", []), "engine": engine, "versions": versions})

    def load_runner(self, artifact) -> LoadedRunner:
        """The TensorRT engine itself; NotRunnableHere without an engine, tensorrt or a GPU."""
        eng = tb.engine_section(artifact.manifest)
        if not eng.get("built"):
            raise NotRunnableHere(f"the engine is not built ({eng.get('reason', 'no engine in the manifest')}); "
                                  f"build it on the device: mixer-edge trt build {artifact.path}")
        try:
            runner = tb.EngineRunner(artifact.path / eng["file"], eng.get("tensorrt"))
        except tb.NotRunnable as e:
            raise NotRunnableHere(str(e)) from None
        except tb.BadInput as e:
            raise BadInput(str(e)) from None
        return LoadedRunner(run=runner, config=runner.config, what=runner.what)

    def validation_runner(self, artifact) -> LoadedRunner:
        """The engine when it was built here; otherwise ONNX Runtime on the same model.onnx."""
        if tb.engine_section(artifact.manifest).get("built"):
            return self.load_runner(artifact)
        return ort_validation_runner(artifact.file(MODEL), artifact.precision)


def ort_validation_runner(path, precision: str) -> LoadedRunner:
    """ONNX Runtime (CPU) on the TensorRT-ready ONNX, as validation here."""
    from .onnx import ort_runner

    ort = require("onnxruntime", "onnx")
    what = f"onnxruntime {ort.__version__} CPUExecutionProvider (TensorRT-ready ONNX; engine not built here)"
    if precision != "int8":
        base = ort_runner(path)
        return LoadedRunner(run=base.run, config=base.config, what=what)
    # Basic optimizations only: Q/DQ run as written (round to int8, float GEMM), the arithmetic of
    # TensorRT's INT32-accumulating kernels. With all optimizations ONNX Runtime fuses them into its
    # CPU integer kernels, which saturate on CPUs without VNNI: 22.8 dB logit SQNR instead of 39.2 dB
    # on the digits model here (MinMax), which would misreport what TensorRT computes.
    so = ort.SessionOptions()
    so.intra_op_num_threads = os.cpu_count() or 1
    so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_BASIC
    so.log_severity_level = 3
    session = ort.InferenceSession(str(path), so, providers=["CPUExecutionProvider"])
    name = session.get_inputs()[0].name

    def run(x: np.ndarray) -> np.ndarray:
        x = np.ascontiguousarray(x, np.float32)
        if x.ndim != 4:
            raise BadInput(f"the runner takes (N, C, H, W) images, got shape {list(x.shape)}")
        return np.concatenate([session.run(None, {name: x[i:i + 256]})[0] for i in range(0, max(len(x), 1), 256)])

    config = {"provider": "CPUExecutionProvider", "threads": so.intra_op_num_threads,
              "graph_optimization": "basic (Q/DQ executed as written, not fused into integer kernels)"}
    return LoadedRunner(run=run, config=config, what=what)


def _check_spec(ck, spec, calib) -> list[str]:
    """Fail early on what cannot work; note (never drop silently) options that do not apply."""
    notes = []
    if spec.precision == "int8":
        if spec.weights_only:
            raise BadInput("TensorRT int8 is W8A8 explicit quantization; weights-only int8 is a Core ML option")
        if calib is None or len(calib) == 0:
            raise CalibrationError("tensorrt int8 needs a calibration set for its activation scales; got none")
        ranges.method(spec.calib_method)
    elif spec.calib_method is not None:
        notes.append(f"--calib-method {spec.calib_method} applies to int8 only; {spec.precision} does not use it")
    if calib is not None:
        want = (ck.config.in_chans, *ck.config.img_size)
        if tuple(calib.x.shape[1:]) != want:
            raise CalibrationError(f"calibration images have shape {list(calib.x.shape[1:])} but the model takes "
                                   f"{list(want)} (channels, height, width)")
    return notes
