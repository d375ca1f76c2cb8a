"""Q/DQ placement shared by the ONNX Runtime, TensorRT and OpenVINO INT8 exports: one fp32 ONNX
graph + calibration images + a Flavor -> the same graph with QuantizeLinear / DequantizeLinear on
the inputs of the ops that carry the MACs (Conv, MatMul, Gemm). The rules and the reasons are in
docs/quantization.md; in one line: weights per output channel, activations per tensor, LayerNorm,
GELU, residual and bias Adds and the token mean stay in float.

Layers are named by their PyTorch module path (stem.proj, blocks.3.mlp_tokens.fc1, head), taken
from the exporter's node names, so a layer kept in float by mixed precision, the manifest and
`mixer-edge quant inspect` all speak of the same thing.
"""
from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from typing import NamedTuple

import numpy as np

from ..calibration import ranges
from ..errors import BadInput, CalibrationError, require

QUANT_OPS = ("Conv", "MatMul", "Gemm")   # their inputs 0 (activation) and 1 (weight) get Q/DQ
# Operator-form integer kernels (quantize_static's QOperator output, ONNX Runtime's fusions): a
# matrix multiply quantized on both inputs by construction.
INTEGER_OPS = ("QLinearConv", "QLinearMatMul", "QGemm", "ConvInteger", "MatMulInteger", "MatMulIntegerToFloat")
STATS_BATCH = 16                         # images per ONNX Runtime call while measuring activations


@dataclass(frozen=True)
class Flavor:
    """How one runtime wants its Q/DQ. TensorRT: symmetric activations (zero point 0), weights as
    float initializers + Q/DQ (it folds them). ONNX Runtime: asymmetric activations (GELU outputs
    are one-sided), int8 weight initializers + DQ, the form its integer kernels fuse. OpenVINO:
    int8 weight initializers + DQ with symmetric, recentred activations: its CPU plugin runs a
    FakeQuantize with a zero point through a slower FullyConnected path (B/16 on AMX: 5 % off the
    batch-1 time, 8 % off batch 32's; benchmarks/openvino_flavors.py, RESULTS.md 12.3), and
    recentring keeps the accuracy (0.1-1.0 dB better than asymmetric on the models measured there). weight_bits 7 is ONNX Runtime's reduce_range (its u8 x s8 kernels saturate without VNNI)."""
    name: str
    symmetric_activations: bool
    int8_weights: bool
    weight_bits: int = 8
    recentre: bool = False           # symmetric only: shift one-sided inputs to zero mean (see recentre)
    int32_bias: bool = False         # Gemm / Conv bias as int32 + DQ: what ONNX Runtime fuses into QGemm
    activation_levels: int = 256     # 255: a quantization-aware checkpoint's grid (codes -127..127, train/qat.py)

    @property
    def weight_qmax(self) -> int:
        return 2 ** (self.weight_bits - 1) - 1


FLAVORS = {
    "tensorrt": Flavor("tensorrt", symmetric_activations=True, int8_weights=False, recentre=True),
    "onnxruntime": Flavor("onnxruntime", symmetric_activations=False, int8_weights=True, weight_bits=7,
                          int32_bias=True),
    "openvino": Flavor("openvino", symmetric_activations=True, int8_weights=True, recentre=True),
}


def layer_name(node_name: str) -> str:
    """'/blocks/blocks.0/mlp_tokens/fc1/MatMul' -> 'blocks.0.mlp_tokens.fc1'; '/head/Gemm' -> 'head'."""
    parts = node_name.strip("/").split("/")[:-1]              # the op's own name is last
    if len(parts) > 1 and parts[0] == "blocks" and parts[1].startswith("blocks."):
        parts = parts[1:]                                     # nn.Sequential repeats its name
    return ".".join(parts) or node_name


class MatMulOp(NamedTuple):
    """One matrix multiply of a model file (ONNX, OpenVINO IR, Core ML program) and what feeds it."""
    name: str
    op: str
    weight: bool        # its weight is quantized (int8 data, or a Q/DQ / FakeQuantize / dequantize op)
    activation: bool    # its data input is quantized


def matmul_ops(onnx_model) -> list[MatMulOp]:
    """Every Conv / MatMul / Gemm and integer kernel of an ONNX graph; a Q/DQ op's input counts as
    quantized when a DequantizeLinear gives it (input 0: data, input 1: weight)."""
    dq_out = {n.output[0] for n in onnx_model.graph.node if n.op_type == "DequantizeLinear"}
    return [MatMulOp(n.name, n.op_type, True, True) if n.op_type in INTEGER_OPS else
            MatMulOp(n.name, n.op_type, n.input[1] in dq_out, n.input[0] in dq_out)
            for n in onnx_model.graph.node if n.op_type in (*QUANT_OPS, *INTEGER_OPS)]


def onnx_file_matmuls(path) -> list[MatMulOp]:
    """matmul_ops of an .onnx file as written (no external data needed: weights are not read)."""
    onnx = require("onnx", "onnx")
    return matmul_ops(onnx.load(str(path), load_external_data=False))


def quant_nodes(onnx_model) -> list:
    return [n for n in onnx_model.graph.node if n.op_type in QUANT_OPS]


def layers(onnx_model) -> list[str]:
    """The quantizable layers of a graph in execution order."""
    return [layer_name(n.name) for n in quant_nodes(onnx_model)]


# ---- activation statistics (ONNX Runtime with intermediate tensors exposed) ------------------------

def expose(onnx_model, names):
    """A copy of the model with the named float tensors as extra outputs."""
    onnx = require("onnx", "onnx")
    model = onnx.ModelProto()
    model.CopyFrom(onnx_model)
    present = {o.name for o in model.graph.output}
    for name in names:
        if name not in present:
            model.graph.output.add(name=name).type.tensor_type.elem_type = onnx.TensorProto.FLOAT
    return model


def session(onnx_model, optimized: bool = False):
    ort = require("onnxruntime", "onnx")
    so = ort.SessionOptions()
    so.graph_optimization_level = (ort.GraphOptimizationLevel.ORT_ENABLE_BASIC if optimized
                                   else ort.GraphOptimizationLevel.ORT_DISABLE_ALL)  # tensors as in the graph
    so.log_severity_level = 3
    return ort.InferenceSession(onnx_model.SerializeToString(), so, providers=["CPUExecutionProvider"])


def run_tensors(onnx_model, x: np.ndarray, names, batch: int = STATS_BATCH):
    """A re-callable generator of {name: array} per batch of x, the named tensors exposed."""
    names = list(dict.fromkeys(names))
    sess = session(expose(onnx_model, names))
    feed = sess.get_inputs()[0].name

    def batches():
        for i in range(0, len(x), batch):
            yield dict(zip(names, sess.run(names, {feed: np.ascontiguousarray(x[i:i + batch], np.float32)})))
    return batches


def activation_stats(onnx_model, x: np.ndarray, names) -> dict[str, ranges.TensorStats]:
    """TensorStats of each named tensor over images x (ranges.collect: range, then histogram)."""
    return ranges.collect(run_tensors(onnx_model, x, names))


# ---- placement -------------------------------------------------------------------------------------

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


def quant_inputs(onnx_model, float_layers=frozenset()) -> tuple[list[str], list[tuple[str, object]]]:
    """(activation tensors, (weight initializer, consumer node)) that get Q/DQ: inputs 0 and 1 of
    every Conv / MatMul / Gemm whose layer is not kept in float."""
    inits = {i.name for i in onnx_model.graph.initializer}
    acts, weights = [], []
    for node in quant_nodes(onnx_model):
        if layer_name(node.name) in float_layers:
            continue
        for k, name in enumerate(node.input[:2]):
            if k == 1 and name in inits:
                weights.append((name, node))
            elif name in inits:
                raise BadInput(f"{node.op_type} {node.name!r} has a constant input {k} ({name}) that is not its "
                               f"weight; explicit quantization expects activations there")
            else:
                acts.append(name)
    return list(dict.fromkeys(acts)), weights


def activation_qparams(lo: float, hi: float, symmetric: bool, levels: int = 256) -> tuple[np.float32, np.int8]:
    """(scale, int8 zero point) for a range: symmetric -> amax / 127, zero point 0; asymmetric ->
    `levels` levels over [lo, hi] widened to hold 0 (zero must be exact: padding, ReLU-like zeros):
    256 (codes -128..127), or 255 (codes -127..127, the grid a symmetric target reaches by
    recentring: a quantization-aware checkpoint's, train/qat.py)."""
    if symmetric:
        return np.float32(max(abs(lo), abs(hi), 1e-8) / 127), np.int8(0)
    lo, hi = min(lo, 0.0), max(hi, 0.0)
    qmin = -128 if levels == 256 else -127
    scale = max(hi - lo, 1e-8) / (levels - 1)
    zp = int(np.clip(np.round(qmin - lo / scale), -128, 127))
    return np.float32(scale), np.int8(zp)


def weight_qparams(w: np.ndarray, axis: int, qmax: int) -> np.ndarray:
    """Per-output-channel symmetric scales of a weight: max |w| / qmax along every other axis."""
    amax = np.abs(np.moveaxis(w, axis, 0).reshape(w.shape[axis], -1)).max(axis=1)
    return (np.maximum(amax, 1e-8) / qmax).astype(np.float32)


def insert_qdq(onnx_model, act_ranges: dict[str, tuple[float, float]], flavor: Flavor,
               float_layers=frozenset()):
    """A copy of an fp32 model with Q/DQ on inputs 0 and 1 of every Conv / MatMul / Gemm not in
    float_layers. Each pair sits right before its first consumer (topological order kept)."""
    onnx = require("onnx", "onnx")
    from onnx import helper, numpy_helper

    model = onnx.ModelProto()
    model.CopyFrom(onnx_model)
    g = model.graph
    inits = {i.name: i for i in g.initializer}
    acts, weights = quant_inputs(model, float_layers)
    missing = [t for t in acts if t not in act_ranges]
    if missing:
        raise CalibrationError(f"no activation range for {missing[:3]}")
    pairs: dict[str, list] = {}   # tensor -> the nodes that give its dequantized copy
    new_inits = []
    for t in acts:
        scale, zp = activation_qparams(*act_ranges[t], flavor.symmetric_activations, flavor.activation_levels)
        new_inits += [numpy_helper.from_array(np.array(scale, np.float32), f"{t}_qdq_scale"),
                      numpy_helper.from_array(np.array(zp, np.int8), f"{t}_qdq_zero_point")]
        pairs[t] = _qdq(helper, t, None)
    for w_name, node in weights:
        if w_name in pairs:
            continue
        w = numpy_helper.to_array(inits[w_name])
        axis = WEIGHT_AXIS[node.op_type](node, w)
        scale = weight_qparams(w, axis, flavor.weight_qmax)
        new_inits += [numpy_helper.from_array(scale, f"{w_name}_qdq_scale"),
                      numpy_helper.from_array(np.zeros(len(scale), np.int8), f"{w_name}_qdq_zero_point")]
        if flavor.int8_weights:
            shape = [1] * w.ndim
            shape[axis] = -1
            q = np.clip(np.round(w / scale.reshape(shape)), -flavor.weight_qmax, flavor.weight_qmax).astype(np.int8)
            new_inits.append(numpy_helper.from_array(q, f"{w_name}_q"))
            pairs[w_name] = _qdq(helper, w_name, axis)[1:]       # int8 initializer -> DQ only
        else:
            pairs[w_name] = _qdq(helper, w_name, axis)
    if flavor.int32_bias:
        new_inits += _int32_biases(helper, numpy_helper, g, inits, act_ranges, flavor, float_layers, pairs)
    g.initializer.extend(new_inits)
    dq_inputs = set(pairs)
    nodes, placed = [], set()
    for node in g.node:
        if node.op_type in QUANT_OPS and layer_name(node.name) not in float_layers:
            for k, name in enumerate(list(node.input[:2])):
                if name in dq_inputs and name not in placed:
                    nodes += pairs[name]
                    placed.add(name)
                node.input[k] = f"{name}_dq"
            bias = node.input[2][:-3] if len(node.input) > 2 and node.input[2].endswith("_dq") else None
            if bias in dq_inputs and bias not in placed:
                nodes += pairs[bias]
                placed.add(bias)
        nodes.append(node)
    del g.node[:]
    g.node.extend(nodes)
    if flavor.int8_weights:   # the float weights of quantized layers are no longer read
        used = {i for n in g.node for i in n.input}
        kept = [i for i in g.initializer if i.name in used]
        del g.initializer[:]
        g.initializer.extend(kept)
    return model


def _int32_biases(helper, numpy_helper, g, inits, act_ranges, flavor, float_layers, pairs) -> list:
    """Gemm / Conv biases as int32 (scale = activation scale x weight scale, zero point 0) behind a
    DequantizeLinear: the QDQ form ONNX Runtime fuses into one integer kernel (QGemm), as
    quantize_static writes it. MatMul has no bias input; its bias Add stays float."""
    added = []
    for node in [n for n in g.node if n.op_type in QUANT_OPS]:
        if node.op_type not in ("Gemm", "Conv") or len(node.input) < 3 or node.input[2] not in inits \
                or layer_name(node.name) in float_layers:
            continue
        x, w, b = node.input[:3]
        s_x, _ = activation_qparams(*act_ranges[x], flavor.symmetric_activations, flavor.activation_levels)
        w_arr = numpy_helper.to_array(inits[w])
        s_w = weight_qparams(w_arr, WEIGHT_AXIS[node.op_type](node, w_arr), flavor.weight_qmax)
        scale = (np.float32(s_x) * s_w).astype(np.float32)
        q = np.round(numpy_helper.to_array(inits[b]).astype(np.float64) / scale).astype(np.int32)
        added += [numpy_helper.from_array(q, f"{b}_q"), numpy_helper.from_array(scale, f"{b}_qdq_scale"),
                  numpy_helper.from_array(np.zeros(len(q), np.int32), f"{b}_qdq_zero_point")]
        pairs[b] = _qdq(helper, b, 0)[1:]
        node.input[2] = f"{b}_dq"
    return added


def _qdq(helper, t: str, axis: int | None) -> list:
    kw = {} if axis is None else {"axis": axis}
    return [helper.make_node("QuantizeLinear", [t, f"{t}_qdq_scale", f"{t}_qdq_zero_point"], [f"{t}_q"],
                             name=f"{t}_QuantizeLinear", **kw),
            helper.make_node("DequantizeLinear", [f"{t}_q", f"{t}_qdq_scale", f"{t}_qdq_zero_point"], [f"{t}_dq"],
                             name=f"{t}_DequantizeLinear", **kw)]


def qdq_summary(model) -> dict:
    """Placement in numbers: quantized ops and layers, Q/DQ per kind, the ops left in floating point."""
    inits = {i.name for i in model.graph.initializer}
    ops = matmul_ops(model)
    quantized = [m for m in ops if m.weight and m.activation]
    kept = [layer_name(m.name) for m in ops if not (m.weight and m.activation)]
    dqs = [n for n in model.graph.node if n.op_type == "DequantizeLinear"]
    produced_by_q = {n.output[0] for n in model.graph.node if n.op_type == "QuantizeLinear"}
    not_float = (*QUANT_OPS, *INTEGER_OPS, "QuantizeLinear", "DequantizeLinear", "Constant")
    float_ops = Counter(n.op_type for n in model.graph.node if n.op_type not in not_float)
    int32 = {i.name for i in model.graph.initializer if i.data_type == 6}   # TensorProto.INT32: biases
    bias_dq = sum(1 for d in dqs if d.input[0] in int32)
    weight_dq = sum(1 for d in dqs if (d.input[0] in inits and d.input[0] not in int32) or
                    (d.input[0] in produced_by_q and d.input[0][:-2] in inits))
    return {"quantized_ops": dict(sorted(Counter(m.op for m in quantized).items())),
            "quantized_layers": len(quantized), "quantizable_layers": len(ops),
            "float_layers": kept,
            "activation_qdq": len(dqs) - weight_dq - bias_dq, "weight_qdq": weight_dq, "bias_dq": bias_dq,
            "float_ops": dict(sorted(float_ops.items()))}


# ---- the whole step -----------------------------------------------------------------------------------

def calibrate(onnx_model, x: np.ndarray | None, flavor: Flavor, method: str | None = None,
              float_layers=frozenset(), stats=None, learned: dict | None = None):
    """Measure activations on x, estimate ranges with `method`, insert Q/DQ. Returns (model,
    details); pass `stats` (from activation_stats) to reuse one measurement across recipes. With
    `learned` ({layer: [lo, hi]}, from quantization-aware training) nothing is measured: each
    layer's input takes its learned range, as asymmetric (lo, hi) for every flavor to derive its
    own scale from, exactly as it does from an estimate."""
    acts, _ = quant_inputs(onnx_model, float_layers)
    by_layer = {layer_name(n.name): n.input[0] for n in quant_nodes(onnx_model)}
    if learned is not None:
        name, about, images = "learned", "learned by quantization-aware training (checkpoint qat.ranges)", 0
        by_tensor = {t: tuple(float(v) for v in learned[layer]) for layer, t in by_layer.items() if layer in learned}
        act_ranges = {t: by_tensor[t] for t in acts if t in by_tensor}
        asymmetric = by_tensor.get
    else:
        name, estimate = ranges.method(method)
        about, images = ranges.describe(name), int(len(x))
        stats = stats if stats is not None else activation_stats(onnx_model, x, acts)
        act_ranges = {t: tuple(float(v) for v in estimate(stats[t], flavor.symmetric_activations)) for t in acts}

        def asymmetric(t):
            return tuple(float(v) for v in estimate(stats[t], False)) if t in stats else None
    shifted = {}
    if flavor.recentre:
        # learned ranges: every input that can be shifted is, so the symmetric grid is QAT's exactly
        onnx_model, act_ranges, shifted = recentre(onnx_model, act_ranges, asymmetric, flavor.weight_qmax,
                                                   force=learned is not None)
    q = insert_qdq(onnx_model, act_ranges, flavor, float_layers)
    by_layer = {layer_name(n.name): n.input[0] for n in quant_nodes(onnx_model)}   # recentred inputs renamed
    details = {"flavor": flavor.name, "symmetric_activations": flavor.symmetric_activations,
               "weight_bits": flavor.weight_bits, "weights": "int8 initializers + DequantizeLinear"
               if flavor.int8_weights else "float initializers + per-channel Q/DQ (folded at build time)",
               "calibration": {"method": name, "estimator": about, "images": images,
                               "ranges": {layer: [round(v, 6) for v in act_ranges[t]]
                                          for layer, t in by_layer.items() if t in act_ranges}},
               "recentred": {layer_name(n): round(c, 6) for n, c in shifted.items()},
               **qdq_summary(q)}
    return q, details


# ---- recentring one-sided inputs (symmetric flavors) -----------------------------------------------

RECENTRE_GAIN = 1.33   # recentre when it shrinks the symmetric range by at least this factor


def recentre(onnx_model, act_ranges, asymmetric, weight_qmax: int | None = None, force: bool = False):
    """Symmetric int8 (TensorRT: zero point 0) spends half its grid on values a one-sided tensor
    never takes: GELU outputs lie in [-0.17, max]. For a MatMul input x with a constant bias Add
    after it, x @ W + b == (x - c) @ W + (b + c * colsum(W)) exactly; with c the middle of x's
    asymmetric range, x - c is centred and its symmetric grid is up to twice as fine. Applied to a
    tensor only when its range says so (RECENTRE_GAIN), or to every tensor that can be shifted when
    `force` (a quantization-aware checkpoint's ranges: the shifted symmetric grid is then exactly
    the 255-level grid it trained on). A tensor read by several MatMuls (a split MLP's two fc1) is
    shifted once, each bias corrected. `asymmetric(tensor)` gives its (lo, hi).

    Two details keep the shift from adding error of its own. c is a whole number of grid steps, so
    x = 0 (most GELU outputs) stays exactly representable, as an asymmetric zero point keeps it.
    And the bias takes colsum of the weights as the engine multiplies them, on their per-channel
    grid (weight_qmax; None: as they are): with c * colsum(W) instead, every weight's rounding
    error would be multiplied by c, hundreds for a GELU output with massive activations
    (benchmarks/qat_recovery.py). Returns (model, ranges, {node: c})."""
    onnx = require("onnx", "onnx")
    from onnx import helper, numpy_helper

    model = onnx.ModelProto()
    model.CopyFrom(onnx_model)
    g = model.graph
    inits = {i.name: i for i in g.initializer}
    consumers = {}
    for n in g.node:
        for i in n.input:
            consumers.setdefault(i, []).append(n)
    aliases = initializer_aliases(g, inits)
    by_input: dict[str, list] = {}
    for n in g.node:
        if n.op_type == "MatMul":
            by_input.setdefault(n.input[0], []).append(n)
    act_ranges, shifted = dict(act_ranges), {}
    for x, nodes in by_input.items():
        biased = [bias_add(consumers.get(n.output[0], []), n.output[0], inits, aliases) for n in nodes]
        if x not in act_ranges or len(consumers.get(x, [])) != len(nodes) or any(b is None for b in biased) \
                or any(n.input[1] not in inits for n in nodes):
            continue                                   # some reader is not a MatMul with a bias Add
        lo, hi = asymmetric(x)
        half = (hi - lo) / 2
        if not force and max(abs(lo), abs(hi)) < RECENTRE_GAIN * half:
            continue
        step = max(half, 1e-8) / 127                                          # the shifted tensor's grid
        c = step * round((lo + hi) / 2 / step)
        shift, out = f"{x}_recentre_c", f"{x}_recentred"
        for node, (add, b_input, b_name) in zip(nodes, biased):
            W = numpy_helper.to_array(inits[node.input[1]]).astype(np.float64)   # (K, N)
            b = numpy_helper.to_array(inits[b_name]).astype(np.float64)          # (N,)
            if weight_qmax is not None:                                          # as the engine multiplies
                scale = weight_qparams(W.astype(np.float32), W.ndim - 1, weight_qmax).astype(np.float64)   # (N,)
                W = np.clip(np.round(W / scale), -weight_qmax, weight_qmax) * scale
            corrected = (b + c * W.sum(axis=0)).astype(np.float32)
            if b_input != b_name or len(consumers.get(b_name, [])) > 1:   # shared: this Add gets its own copy
                own = f"{b_input}_recentred_{len(shifted)}"
                g.initializer.append(numpy_helper.from_array(corrected, own))
                add.input[list(add.input).index(b_input)] = own
            else:
                inits[b_name].CopyFrom(numpy_helper.from_array(corrected, b_name))
            node.input[0] = out
            shifted[node.name] = c
        g.initializer.append(numpy_helper.from_array(np.array(c, np.float32), shift))
        first = min(list(g.node).index(n) for n in nodes)
        g.node.insert(first, helper.make_node("Sub", [x, shift], [out], name=f"{nodes[0].name}_recentre"))
        act_ranges[out] = (-half, half)
    return model, act_ranges, shifted


def initializer_aliases(g, inits) -> dict[str, str]:
    """Identity output -> initializer: the exporter stores equal initializers once and feeds the
    other users an Identity of it (two zero biases are one tensor)."""
    return {n.output[0]: n.input[0] for n in g.node if n.op_type == "Identity" and n.input[0] in inits}


def bias_add(users, tensor: str, inits, aliases=None):
    """(Add node, its bias input, the initializer behind it) when the MatMul's only user adds a
    constant vector: an initializer, or an Identity of one (aliases: Identity output -> initializer)."""
    if len(users) != 1 or users[0].op_type != "Add":
        return None
    other = [i for i in users[0].input if i != tensor]
    if len(other) != 1:
        return None
    source = other[0] if other[0] in inits else (aliases or {}).get(other[0])
    return (users[0], other[0], source) if source is not None else None
