"""TensorRT target: a TensorRT-ready ONNX per precision, validated here with ONNX Runtime, and its
engine built on the device that runs it (an engine is tied to its TensorRT version and GPU).

    fp32  the fp32 ONNX of onnx.export_fp32_onnx; only the batch axis is dynamic
    fp16  an FP16-typed ONNX: float16 weights and tensors, with fp32 islands stated in the graph by
          explicit Cast nodes at their boundaries, as TensorRT's strongly typed networks (the only
          kind in 11.x) take precision: from the graph's types, not from builder flags
    int8  an explicitly quantized ONNX: QuantizeLinear / DequantizeLinear (Q/DQ) pairs, int8 with
          zero point 0, on the inputs of every Conv / MatMul / Gemm

The artifact is model.onnx + trt_build.py (+ edge_bench.py), which builds model.engine on the
device (`python trt_build.py DIR`, or `mixer-edge trt build DIR` where mixer-edge is installed) and
benchmarks it. When tensorrt and a GPU are present at export, the engine is built right away and it,
not ONNX Runtime, is what validation runs.

FP16: which nodes stay FP32
---------------------------
LayerNormalization (its mean and variance are reductions whose sums lose precision and overflow in
half), ReduceMean (the token mean before the head) and the ops of a hand-written LayerNorm (Pow,
Sqrt): onnx.FP16_BLOCK_OPS. Plus every node producing or consuming a tensor whose max |value| over
the calibration set exceeds FP16_SAFE_MAX = 1e4, measured with ONNX Runtime with every intermediate
tensor exposed as an output (float16 overflows at 65504; 1e4 leaves head room for images the
calibration set did not show). The converter (onnxruntime.transformers.float16) writes the Casts;
a pass then removes the fp32 -> fp16 -> fp32 round trips it leaves between two fp32 islands, which
would overflow exactly the tensors kept in fp32 for being large.

INT8: where Q/DQ sits, and why
------------------------------
* On both inputs of every Conv (the patch stem), MatMul (token- and channel-mixing MLPs) and Gemm
  (the head): the activation input per-tensor, the weight per-channel. TensorRT fuses a DQ on each
  input of a GEMM/convolution into the layer and runs it as an INT8 kernel with INT32
  accumulation (its Q/DQ placement advice: quantize all inputs of weighted operations).
* Nowhere else: no Q/DQ feeds LayerNormalization, the residual Adds, GELU, the bias Adds or the
  token mean. Their inputs stay in floating point: LayerNorm outputs vary strongly across channels
  and the residual stream carries the largest values, so one int8 scale per tensor cannot hold
  them; FQ-ViT shows naive full quantization with quantized LayerNorm collapses ViT-B from ~84% to
  23.6% top-1 (DESIGN section 6). The Q/DQ on a LayerNorm output is the *MatMul's* input
  quantization: the LayerNorm itself computes in floating point.
* No Q/DQ on GEMM outputs: TensorRT would re-quantize before the bias Add, adding error for no speed.
* Activations: symmetric, zero point 0, scale = amax / 127, amax from the shared calibration set by
  --calib-method: minmax = max |x|; percentile = the 99.99th percentile of |x|; entropy = the
  TensorRT-style KL-divergence threshold search of IInt8EntropyCalibrator2 (2048-bin histogram of
  |x|, 128 quantized bins). Pure numpy, over the shared calibration set.
* Weights: symmetric per output channel, scale = max |w| / 127 (TensorRT's [-127, 127] weight
  range), axis 0 for Conv (M, C, kh, kw) and Gemm with transB=1 (N, K), the last axis for MatMul
  (K, N) and Gemm with transB=0.
* Weights are stored as float32 initializers followed by a Q -> DQ pair: the form QAT exports
  (pytorch-quantization, ModelOpt) produce, which TensorRT has folded into int8 weights at build
  time since 8.x, so TensorRT 10.3 on JetPack 6 and 11.x both take it. Current TensorRT documents
  pre-quantized int8 initializers + DQ as well, but we could not check that on 10.3, so the float
  form it is; it costs ONNX file size (4x the weights), not engine size.

check_explicit_quantization (and check_fp16_model) state these rules as code; export refuses
(ValidationError) a model that breaks them. The rule is simple on purpose: every QuantizeLinear
feeds only DequantizeLinear, and every DequantizeLinear feeds only the data or weight input of a
MatMul / Gemm / Conv; never a LayerNormalization, an Add or anything else.

Validation here runs the very model.onnx with ONNX Runtime's CPU provider. INT8 runs with basic
graph optimizations only, so Q/DQ execute as written (quantize, round, dequantize, float GEMM), the
arithmetic TensorRT's INT32-accumulating kernels perform, rather than ONNX Runtime's fused integer
kernels, which can saturate on CPUs without VNNI (onnx.QdqRecipe): on the digits model here,
39.2 dB logit SQNR as written against 22.8 dB through the fused kernels.

Engine build (runtime/trt_build.py, build_plan as data): a strongly typed network for every
precision (NetworkDefinitionCreationFlag.STRONGLY_TYPED on 10.x; 11.x networks are always strongly
typed), no FP16 / INT8 builder flags and no calibrator (the same file builds on 10.x and 11.x),
TF32 cleared for fp32, one optimization profile over the batch axis, a timing cache kept beside
the engine, versions (TensorRT, CUDA, GPU, compute capability) stamped into export.engine.
"""
from __future__ import annotations

import os
import shutil
import tempfile
from collections import Counter, defaultdict
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..errors import BadInput, CalibrationError, MixerEdgeError, ValidationError, require, unknown
from ..runtime import trt_build as tb
from .base import Capabilities, Exported, LoadedRunner, NotRunnableHere, Status, installed, missing_status

MODEL, SCRIPT, EDGE_BENCH, ENGINE = "model.onnx", "trt_build.py", "edge_bench.py", tb.ENGINE
RUNTIME_DIR = Path(__file__).resolve().parents[1] / "runtime"
QUANT_OPS = ("Conv", "MatMul", "Gemm")   # the ops that carry the MACs; their inputs 0 and 1 get Q/DQ
FP16_SAFE_MAX = 1e4                      # tensors above this max |value| on calibration data keep fp32
STATS_BATCH = 8                          # images per ONNX Runtime call while measuring activations
HIST_BINS = 2048                         # TensorRT's calibration histogram size
ENTROPY_QUANT_BINS = 128
PERCENTILE = 99.99
INT8_MAX = 127                           # symmetric: [-127, 127] for weights; activations clamp at -128
ONNX_KINDS = {"fp32": "fp32", "fp16": "fp16-typed", "int8": "explicit-qdq"}


# ---- activation statistics (ONNX Runtime, intermediate tensors exposed) --------------------------

@dataclass(frozen=True)
class AbsStats:
    amax: float                       # max |x| over the data
    hist: np.ndarray | None = None    # HIST_BINS counts of |x| over [0, amax], when asked


def float_tensors(onnx_model) -> list[str]:
    """Names of the float32 tensors produced by nodes (not initializers, not Constants)."""
    onnx = require("onnx", "onnx")
    inferred = onnx.shape_inference.infer_shapes(onnx_model)
    types = {v.name: v.type.tensor_type.elem_type for v in [*inferred.graph.value_info, *inferred.graph.output]}
    return [o for n in onnx_model.graph.node if n.op_type != "Constant" for o in n.output
            if types.get(o) == onnx.TensorProto.FLOAT]


def activation_stats(onnx_model, x: np.ndarray, names, *, histogram: bool = False,
                     batch: int = STATS_BATCH) -> dict[str, AbsStats]:
    """max |x| (and, with histogram, a histogram of |x|) of each named tensor over images x, with
    ONNX Runtime running the model with those tensors exposed as extra outputs. Two passes when a
    histogram is asked: its range is the max of the first."""
    onnx = require("onnx", "onnx")
    ort = require("onnxruntime", "onnx")
    names = list(dict.fromkeys(names))
    model = onnx.ModelProto()
    model.CopyFrom(onnx_model)
    present = {o.name for o in model.graph.output}
    for name in names:
        if name not in present:
            model.graph.output.add(name=name).type.tensor_type.elem_type = onnx.TensorProto.FLOAT
    so = ort.SessionOptions()
    so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL  # tensors exactly as in the graph
    so.log_severity_level = 3
    session = ort.InferenceSession(model.SerializeToString(), so, providers=["CPUExecutionProvider"])
    feed = session.get_inputs()[0].name

    def batches():
        for i in range(0, len(x), batch):
            yield dict(zip(names, session.run(names, {feed: np.ascontiguousarray(x[i:i + batch], np.float32)})))

    amax = dict.fromkeys(names, 0.0)
    for outs in batches():
        for n, v in outs.items():
            amax[n] = max(amax[n], float(np.abs(v).max()) if v.size else 0.0)
    if not histogram:
        return {n: AbsStats(a) for n, a in amax.items()}
    hist = {n: np.zeros(HIST_BINS, np.int64) for n in names}
    for outs in batches():
        for n, v in outs.items():
            hist[n] += np.histogram(np.abs(v), bins=HIST_BINS, range=(0.0, max(amax[n], 1e-30)))[0]
    return {n: AbsStats(amax[n], hist[n]) for n in names}


# ---- range estimators: |x| statistics -> amax (pure numpy) ---------------------------------------

def amax_minmax(st: AbsStats) -> float:
    return st.amax


def amax_percentile(st: AbsStats, percentile: float = PERCENTILE) -> float:
    """Upper edge of the histogram bin holding the percentile of |x|."""
    total = st.hist.sum()
    if total == 0 or st.amax == 0:
        return st.amax
    cdf = np.cumsum(st.hist) / total
    i = int(np.searchsorted(cdf, percentile / 100.0))
    return min(i + 1, len(st.hist)) * st.amax / len(st.hist)


def amax_entropy(st: AbsStats, quant_bins: int = ENTROPY_QUANT_BINS) -> float:
    """TensorRT's entropy calibration: the threshold whose clipped distribution P (outliers folded
    into the last bin) loses least information, KL(P || Q), when requantized into quant_bins levels
    (Q spreads each level's mass evenly over the bins that were non-empty)."""
    hist = st.hist.astype(np.float64)
    n = len(hist)
    if hist.sum() == 0 or st.amax == 0:
        return st.amax
    best_i, best_kl = n, np.inf
    nonzero_all = (hist > 0).astype(np.float64)
    tail = np.concatenate([np.cumsum(hist[::-1])[::-1], [0.0]])   # tail[i] = hist[i:].sum()
    for i in range(quant_bins, n + 1):
        p = hist[:i].copy()
        p[-1] += tail[i]
        starts = np.arange(quant_bins) * i // quant_bins           # quant_bins groups of bins [0, i)
        mass = np.add.reduceat(hist[:i], starts)
        count = np.add.reduceat(nonzero_all[:i], starts)
        q = np.repeat(mass / np.maximum(count, 1), np.diff(np.append(starts, i))) * nonzero_all[:i]
        kl = _kl(p, q)
        if kl < best_kl:
            best_i, best_kl = i, kl
    return best_i * st.amax / n


def _kl(p: np.ndarray, q: np.ndarray) -> float:
    p, q = p / p.sum(), q / max(q.sum(), 1e-30)
    m = p > 0
    return float(np.sum(p[m] * np.log(p[m] / np.maximum(q[m], 1e-12))))


RANGE_METHODS = {"minmax": amax_minmax, "percentile": amax_percentile, "entropy": amax_entropy}


def range_method(name: str | None):
    name = name or "minmax"
    if name not in RANGE_METHODS:
        raise unknown("calibration method", name, RANGE_METHODS)
    return name, RANGE_METHODS[name]


# ---- explicit quantization: insert Q/DQ ----------------------------------------------------------

def _attr(node, name: str, default=None):
    from onnx import helper

    for a in node.attribute:
        if a.name == name:
            return helper.get_attribute_value(a)
    return default


# The weight's output-channel axis per op: Conv (M, C, kh, kw); Gemm B (N, K) with transB, else
# (K, N); MatMul B (..., K, N).
WEIGHT_AXIS = {
    "Conv": lambda node, w: 0,
    "Gemm": lambda node, w: 0 if _attr(node, "transB", 0) else 1,
    "MatMul": lambda node, w: w.ndim - 1,
}


def _is_weight(node, index: int, inits: dict) -> bool:
    return node.op_type in WEIGHT_AXIS and index == 1 and node.input[1] in inits


def quant_inputs(onnx_model) -> tuple[list[str], list[tuple[str, object]]]:
    """(activation tensors, (weight initializer, consumer node)) that get Q/DQ: inputs 0 and 1 of
    every Conv / MatMul / Gemm."""
    inits = {i.name for i in onnx_model.graph.initializer}
    acts, weights = [], []
    for node in onnx_model.graph.node:
        if node.op_type not in QUANT_OPS:
            continue
        for k, name in enumerate(node.input[:2]):
            if _is_weight(node, k, inits):
                weights.append((name, node))
            elif name in inits:
                raise BadInput(f"{node.op_type} {node.name!r} has a constant input {k} ({name}) that is not its "
                               f"weight; explicit quantization expects activations there")
            else:
                acts.append(name)
    return list(dict.fromkeys(acts)), weights


def insert_qdq(onnx_model, act_amax: dict[str, float]):
    """A copy of an fp32 model with Q/DQ pairs on the inputs of every Conv / MatMul / Gemm:
    activations per-tensor (scale act_amax[t] / 127), weights per output channel. Returns
    (model, summary). Each pair is placed right before its first consumer (topological order)."""
    onnx = require("onnx", "onnx")
    from onnx import helper, numpy_helper

    model = onnx.ModelProto()
    model.CopyFrom(onnx_model)
    g = model.graph
    inits = {i.name: i for i in g.initializer}
    acts, weights = quant_inputs(model)
    missing = [t for t in acts if t not in act_amax]
    if missing:
        raise CalibrationError(f"no activation range for {missing[:3]}")
    pairs: dict[str, list] = {}   # tensor -> [Q node, DQ node]
    new_inits = []
    for t in acts:
        scale = np.float32(max(act_amax[t], 1e-8) / INT8_MAX)
        new_inits += [numpy_helper.from_array(np.array(scale, np.float32), f"{t}_qdq_scale"),
                      numpy_helper.from_array(np.array(0, np.int8), f"{t}_qdq_zero_point")]
        pairs[t] = _pair(helper, t, None)
    for w_name, node in weights:
        if w_name in pairs:
            continue
        w = numpy_helper.to_array(inits[w_name])
        axis = WEIGHT_AXIS[node.op_type](node, w)
        amax = np.abs(np.moveaxis(w, axis, 0).reshape(w.shape[axis], -1)).max(axis=1)
        scale = (np.maximum(amax, 1e-8) / INT8_MAX).astype(np.float32)
        new_inits += [numpy_helper.from_array(scale, f"{w_name}_qdq_scale"),
                      numpy_helper.from_array(np.zeros(len(scale), np.int8), f"{w_name}_qdq_zero_point")]
        pairs[w_name] = _pair(helper, w_name, axis)
    g.initializer.extend(new_inits)
    nodes, placed = [], set()
    for node in g.node:
        if node.op_type in QUANT_OPS:
            for k, name in enumerate(list(node.input[:2])):
                if name not in placed:
                    nodes += pairs[name]
                    placed.add(name)
                node.input[k] = f"{name}_dq"
        nodes.append(node)
    del g.node[:]
    g.node.extend(nodes)
    return model, qdq_summary(model)


def _pair(helper, t: str, axis: int | None) -> list:
    kw = {} if axis is None else {"axis": axis}
    return [helper.make_node("QuantizeLinear", [t, f"{t}_qdq_scale", f"{t}_qdq_zero_point"], [f"{t}_q"],
                             name=f"{t}_QuantizeLinear", **kw),
            helper.make_node("DequantizeLinear", [f"{t}_q", f"{t}_qdq_scale", f"{t}_qdq_zero_point"], [f"{t}_dq"],
                             name=f"{t}_DequantizeLinear", **kw)]


def qdq_summary(model) -> dict:
    """Placement in numbers: quantized ops, Q/DQ pairs per kind, the ops left in floating point."""
    inits = {i.name for i in model.graph.initializer}
    dq_out = {n.output[0]: n for n in model.graph.node if n.op_type == "DequantizeLinear"}
    quantized = Counter(n.op_type for n in model.graph.node
                        if n.op_type in QUANT_OPS and all(i in dq_out for i in n.input[:2]))
    qs = [n for n in model.graph.node if n.op_type == "QuantizeLinear"]
    float_ops = Counter(n.op_type for n in model.graph.node
                        if n.op_type not in (*QUANT_OPS, "QuantizeLinear", "DequantizeLinear", "Constant"))
    return {"quantized_ops": dict(sorted(quantized.items())),
            "activation_qdq": sum(q.input[0] not in inits for q in qs),
            "weight_qdq": sum(q.input[0] in inits for q in qs),
            "float_ops": dict(sorted(float_ops.items())),
            "placement": "Q/DQ on inputs 0 and 1 of every Conv / MatMul / Gemm; LayerNormalization, residual "
                         "and bias Adds, GELU and the token mean stay in float",
            "weights": "float32 initializers + per-channel Q/DQ (TensorRT folds them into int8 weights)",
            "activations": "per-tensor symmetric int8, zero point 0, scale = amax / 127"}


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
        names = float_tensors(fp32_model)
        stats = activation_stats(fp32_model, x, names)
        scanned, peak = len(stats), max((s.amax for s in stats.values()), default=0.0)
        large = {t: s.amax for t, s in stats.items() if s.amax > threshold}
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
    method, estimate = range_method(spec.calib_method)
    acts, _ = quant_inputs(model)
    stats = activation_stats(model, calib.x, acts, histogram=method != "minmax")
    amax = {t: float(estimate(s)) for t, s in stats.items()}
    q, summary = insert_qdq(model, amax)
    problems = check_explicit_quantization(q)
    if problems:
        raise ValidationError("the int8 TensorRT ONNX breaks the explicit-quantization rules: " + "; ".join(problems))
    calibration = {"method": method, "images": int(len(calib.x)), "sha256": calib.sha256,
                   "estimator": {"minmax": "max |x|", "percentile": f"{PERCENTILE}th percentile of |x|",
                                 "entropy": f"TensorRT KL search, {HIST_BINS} bins -> {ENTROPY_QUANT_BINS}"}[method],
                   "amax": amax, "clipped": {t: amax[t] / stats[t].amax for t in amax if stats[t].amax > 0}}
    return q, {"qdq": {**summary, "calibration": calibration}}


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


def build_artifact_engine(folder, **options) -> dict:
    """`mixer-edge trt build`: build a TensorRT artifact's engine and stamp its manifest."""
    from .artifact import load_artifact

    art = load_artifact(folder)   # not an artifact, or tampered: BadInput
    if art.target != "tensorrt":
        raise BadInput(f"{folder} is a {art.target!r} artifact, not a TensorRT one; export one with "
                       f"`mixer-edge export CHECKPOINT --target tensorrt`")
    if not installed("tensorrt"):
        require("tensorrt", "tensorrt")  # MissingDependency naming the extra
    with _trt_errors():
        return tb.build_artifact(folder, **options)


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
        range_method(spec.calib_method)
    elif spec.calib_method is not None:
        notes.append(f"--calib-method {spec.calib_method} applies to int8 only; {spec.precision} does not use it")
    if calib is not None:
        want = (ck.config.in_chans, *ck.config.img_size)
        if tuple(calib.x.shape[1:]) != want:
            raise CalibrationError(f"calibration images have shape {list(calib.x.shape[1:])} but the model takes "
                                   f"{list(want)} (channels, height, width)")
    if spec.max_drop is not None:
        notes.append(f"--max-drop {spec.max_drop} is an OpenVINO option; TensorRT int8 here is plain "
                     f"post-training quantization (not applied)")
    return notes
