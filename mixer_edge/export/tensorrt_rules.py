"""TensorRT's explicit-quantization rules as this project applies them, stated as code: export
refuses (ValidationError) an INT8 ONNX that breaks them. The reasons are in docs/tensorrt.md."""
from __future__ import annotations

from collections import defaultdict

import numpy as np

from .qdq import QUANT_OPS, WEIGHT_AXIS, _attr


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
