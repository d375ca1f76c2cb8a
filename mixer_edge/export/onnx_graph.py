"""ONNX graph helpers shared by the ONNX, TensorRT and OpenVINO exports: topological order, the
element type of every tensor, the float tensors nodes produce, the ops every float16 graph keeps
in float32. A leaf: targets import it, it imports no target."""
from __future__ import annotations

from ..errors import BadInput, require

# FP16: these stay float32. LayerNorm's variance and the token mean are reductions whose sums
# overflow or lose precision in half; Pow/Sqrt belong to a LayerNorm written out by hand (its
# Div is kept node by node, see onnx.to_fp16).
FP16_BLOCK_OPS = ("LayerNormalization", "ReduceMean", "Pow", "Sqrt")


def toposort(graph) -> None:
    """Reorder graph.node topologically in place (converters append nodes at the end)."""
    ready = {i.name for i in graph.input} | {i.name for i in graph.initializer} | {""}
    pending, ordered = list(graph.node), []
    while pending:
        rest = []
        for n in pending:
            if all(i in ready for i in n.input):
                ordered.append(n)
                ready.update(n.output)
            else:
                rest.append(n)
        if len(rest) == len(pending):
            raise BadInput(f"ONNX graph has a cycle or a dangling input at {[n.name for n in rest[:3]]}")
        pending = rest
    del graph.node[:]
    graph.node.extend(ordered)


def tensor_types(model) -> dict:
    """tensor name -> ONNX element type, for inputs, outputs, intermediate tensors (shape inference)
    and initializers."""
    onnx = require("onnx", "onnx")
    g = onnx.shape_inference.infer_shapes(model).graph
    types = {v.name: v.type.tensor_type.elem_type for v in [*g.value_info, *g.input, *g.output]}
    types.update({i.name: i.data_type for i in g.initializer})
    return types


def float_tensors(model) -> list[str]:
    """Names of the float32 tensors produced by nodes (not initializers, not Constants)."""
    onnx = require("onnx", "onnx")
    types = tensor_types(model)
    return [o for n in model.graph.node if n.op_type != "Constant" for o in n.output
            if types.get(o) == onnx.TensorProto.FLOAT]
