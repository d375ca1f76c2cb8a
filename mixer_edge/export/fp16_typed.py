"""The FP16-typed ONNX TensorRT's strongly typed networks take: float16 weights and tensors, fp32
islands (LayerNorm, the token mean, anything large on the calibration images) between explicit
Casts, and the check that says so. The reasons are in docs/tensorrt.md."""
from __future__ import annotations

from collections import Counter

import numpy as np

from ..errors import require
from . import qdq
from .onnx_graph import FP16_BLOCK_OPS, float_tensors, tensor_types, toposort
from .qdq import _attr

FP16_SAFE_MAX = 1e4                      # tensors above this max |value| on calibration data keep fp32

# ---- activation maxima, for the FP16 scan -----------------------------------------------------------

def tensor_amax(onnx_model, x: np.ndarray, names) -> dict[str, float]:
    """max |value| of each named tensor over images x (ONNX Runtime, tensors exposed)."""
    amax = dict.fromkeys(names, 0.0)
    for outs in qdq.run_tensors(onnx_model, x, names)():
        for n, v in outs.items():
            amax[n] = max(amax[n], float(np.abs(v).max()) if v.size else 0.0)
    return amax


# ---- fp16 ----------------------------------------------------------------------------------------

def to_fp16_typed(fp32_model, x: np.ndarray | None, threshold: float = FP16_SAFE_MAX):
    """FP16-typed copy of an fp32 model: float32 at the input and output, LayerNorm (and the other
    onnx_graph.FP16_BLOCK_OPS) and every node touching a tensor above `threshold` on images x kept in
    float32 between explicit Casts. Returns (model, details)."""
    onnx = require("onnx", "onnx")
    require("onnxruntime", "onnx")
    from onnxruntime.transformers.float16 import convert_float_to_float16

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
    toposort(m16.graph)  # the converter appends its input Casts at the end of the node list
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
    types = tensor_types(model)
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
    types = tensor_types(model)
    ops = Counter(n.op_type for n in model.graph.node if n.op_type != "Cast"
                  and any(types.get(i) == onnx.TensorProto.FLOAT for i in n.input))
    return dict(sorted(ops.items()))



def check_fp16_model(onnx_model, keep_fp32=()) -> list[str]:
    """An FP16-typed model as TensorRT's strong typing wants it: float16 initializers present;
    float32 at the graph input and output; every LayerNormalization computed in float32 (input,
    scale and bias); every tensor named in keep_fp32 float32."""
    onnx = require("onnx", "onnx")
    f32, f16 = onnx.TensorProto.FLOAT, onnx.TensorProto.FLOAT16
    out = []
    if not any(i.data_type == f16 for i in onnx_model.graph.initializer):
        out.append("no float16 initializers: the weights were not converted")
    g = onnx_model.graph
    types = tensor_types(onnx_model)
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

