"""The patch stem as a matrix multiply, for ONNX Runtime's INT8 graph.

Why: ONNX Runtime fuses DequantizeLinear -> Conv only into QLinearConv, which needs a QuantizeLinear
on the Conv's output; the stem's output starts the residual stream, which the recipe keeps in float
(docs/quantization.md). So the stem ran in float32 with its int8 weights dequantized again on every
call (Mixer-B/16 batch 1: 3.6 % of the time, `mixer-edge bench --profile`). A PxP convolution with
stride P is a matrix multiply on patches:

    input (B, C, H, W) -> Reshape (B, C, H/P, P, W/P, P) -> Transpose (B, H/P, W/P, C, P, P)
      -> Reshape (B, N, C*P*P) -> MatMul W (C*P*P, D) -> Add bias -> tokens (B, N, D)

which ONNX Runtime runs as MatMulIntegerToFloat (int8 inputs, float output: no output quantization).
The sums are the same products in another order; the Reshape / Transpose that turned the
convolution's (B, D, H/P, W/P) into tokens (B, N, D) go away with it. The MatMul keeps the layer's
name (stem.proj), so --keep-float, `quant inspect` and the manifest still speak of one layer.
A leaf: ONNX only, no target.
"""
from __future__ import annotations

import numpy as np

from ..errors import require
from .qdq import layer_name

STEM = "stem.proj"


def _attrs(node) -> dict:
    from onnx import helper

    return {a.name: helper.get_attribute_value(a) for a in node.attribute}


def _users(graph, tensor: str) -> list:
    return [n for n in graph.node if tensor in n.input]


def _tokens_tensor(graph, conv) -> str | None:
    """The (B, N, D) tensor the exporter makes of the stem's output: Conv -> Reshape (B, D, N)
    (its shape from a Shape / Slice / Concat of the Conv output) -> Transpose (0, 2, 1)."""
    reshapes = [n for n in _users(graph, conv.output[0]) if n.op_type == "Reshape"]
    others = [n for n in _users(graph, conv.output[0]) if n.op_type not in ("Reshape", "Shape")]
    if len(reshapes) != 1 or others:
        return None
    after = _users(graph, reshapes[0].output[0])
    if len(after) != 1 or after[0].op_type != "Transpose" or list(_attrs(after[0]).get("perm", [])) != [0, 2, 1]:
        return None
    return after[0].output[0]


def stem_as_matmul(model):
    """(a copy of model with the stem as patchify + MatMul, True), or (model, False) when its stem
    is not a plain PxP / stride-P convolution followed by the token reshape."""
    onnx = require("onnx", "onnx")
    from onnx import helper, numpy_helper

    g = model.graph
    convs = [n for n in g.node if n.op_type == "Conv" and layer_name(n.name) == STEM]
    if len(convs) != 1:
        return model, False
    conv = convs[0]
    a = _attrs(conv)
    inits = {i.name: i for i in g.initializer}
    kernel, strides = list(a.get("kernel_shape", [])), list(a.get("strides", [1, 1]))
    if (len(kernel) != 2 or kernel != strides or kernel[0] != kernel[1] or any(a.get("pads", [0] * 4))
            or a.get("group", 1) != 1 or any(d != 1 for d in a.get("dilations", [1, 1]))
            or conv.input[1] not in inits or conv.input[0] != g.input[0].name):
        return model, False
    tokens = _tokens_tensor(g, conv)
    dims = [d.dim_value for d in g.input[0].type.tensor_type.shape.dim]
    if tokens is None or len(dims) != 4 or not all(dims[1:]):
        return model, False
    p, (c, h, w) = kernel[0], dims[1:]
    weight = numpy_helper.to_array(inits[conv.input[1]])                      # (D, C, P, P)
    d, n = weight.shape[0], (h // p) * (w // p)

    out = onnx.ModelProto()
    out.CopyFrom(model)
    g = out.graph
    keep_inits = [i for i in g.initializer if i.name != conv.input[1]]
    del g.initializer[:]
    g.initializer.extend(keep_inits)
    g.initializer.extend([
        numpy_helper.from_array(weight.reshape(d, c * p * p).T.copy(), conv.input[1]),   # (C*P*P, D)
        numpy_helper.from_array(np.array([0, c, h // p, p, w // p, p], np.int64), "/stem/patch_shape"),
        numpy_helper.from_array(np.array([0, n, c * p * p], np.int64), "/stem/token_shape")])
    stem = [
        helper.make_node("Reshape", [conv.input[0], "/stem/patch_shape"], ["/stem/patches"], name="/stem/Patches"),
        helper.make_node("Transpose", ["/stem/patches"], ["/stem/patches_t"], name="/stem/PatchOrder",
                         perm=[0, 2, 4, 1, 3, 5]),                                 # (B, H/P, W/P, C, P, P)
        helper.make_node("Reshape", ["/stem/patches_t", "/stem/token_shape"], ["/stem/patch_rows"],
                         name="/stem/PatchRows"),                                 # (B, N, C*P*P)
        helper.make_node("MatMul", ["/stem/patch_rows", conv.input[1]], ["/stem/proj/MatMul_output_0"],
                         name="/stem/proj/MatMul")]                                # (B, N, D)
    bias = conv.input[2] if len(conv.input) > 2 and conv.input[2] else None
    if bias is None:
        stem[-1].output[0] = tokens
    else:
        stem.append(helper.make_node("Add", [stem[-1].output[0], bias], [tokens], name="/stem/proj/Add"))
    producer = {o: node for node in g.node for o in node.output}
    rest = [node for node in g.node if node is not producer[tokens]]
    del g.node[:]
    g.node.extend(stem + _live(rest, stem, {o.name for o in g.output}))
    return out, True


def _live(nodes: list, kept: list, outputs: set) -> list:
    """nodes less those whose outputs nothing reads (the old Conv and its reshape), swept until none is left."""
    while True:
        read = {i for n in [*nodes, *kept] for i in n.input} | outputs
        alive = [n for n in nodes if any(o in read for o in n.output)]
        if len(alive) == len(nodes):
            return alive
        nodes = alive
