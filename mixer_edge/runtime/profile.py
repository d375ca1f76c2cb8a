"""Where an artifact's time goes, per op type, from the runtime's own profiler: ONNX Runtime's JSON
trace (SessionOptions.enable_profiling) and OpenVINO's per-node counters (PERF_COUNT). The
backends (backends/onnxruntime.py, backends/openvino.py) turn their profiler's output into
NodeTimes; this module sorts them into the kinds a Mixer spends time on and sums them.

Why per op type and not per node: a Mixer repeats one block, and the question a deployer asks
is "is the time in the integer matmuls, where it belongs, or in quantize / transpose / reorder
overhead around them?". The share of matmul work that ran in INT8 kernels is counted in
multiply-accumulates (from the shapes the runtime reports), so a matmul the runtime quietly left in
float shows as a missing share, not as a faster or slower total.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

from .errors import BadInput

# Op type (ONNX Runtime's kernel names, OpenVINO's CPU layer types) -> kind. Data, not code: a
# runtime that grows a new fused kernel is one line here.
KINDS = {
    # matrix multiplies: precision decides the row ("matmul int8", "matmul fp32", ...)
    **dict.fromkeys(("MatMul", "Gemm", "FusedMatMul", "FusedGemm", "Conv", "FusedConv", "MatMulInteger",
                     "MatMulIntegerToFloat", "DynamicQuantizeMatMul", "QGemm", "QLinearMatMul", "QLinearConv",
                     "ConvInteger", "MatMulNBits", "FullyConnected", "FullyConnectedQuantizedLegacy",
                     "FullyConnectedCompressed", "Convolution", "GroupConvolution"), "matmul"),
    **dict.fromkeys(("QuantizeLinear", "DequantizeLinear", "DynamicQuantizeLinear", "FakeQuantize",
                     "QLinearAdd", "QLinearMul"), "quantize / dequantize"),
    **dict.fromkeys(("LayerNormalization", "SkipLayerNormalization", "SimplifiedLayerNormalization", "MVN",
                     "RMS"), "layernorm"),
    **dict.fromkeys(("Gelu", "BiasGelu", "FastGelu", "Erf", "QuickGelu"), "gelu"),
    **dict.fromkeys(("Transpose",), "transpose"),
    **dict.fromkeys(("Reorder", "Reshape", "Concat", "Slice", "Shape", "Squeeze", "Unsqueeze", "Flatten",
                     "Convert", "Gather", "Split", "ShapeOf", "StridedSlice", "Broadcast"), "reorder / layout"),
    **dict.fromkeys(("Add", "Sub", "Mul", "Div", "MulAdd", "Eltwise", "Subgraph", "Multiply", "Subtract",
                     "Relu", "Tanh", "Sigmoid", "Power", "Sqrt"), "elementwise"),
    **dict.fromkeys(("ReduceMean", "ReduceSum", "GlobalAveragePool", "Pooling", "Reduce"), "pooling"),
}
PRECISIONS = {   # a matmul's precision as the runtimes name it -> ours
    "int8": "int8", "uint8": "int8", "i8": "int8", "u8": "int8", "int4": "int4", "uint4": "int4", "i4": "int4",
    "u4": "int4", "float": "fp32", "f32": "fp32", "fp32": "fp32", "float16": "fp16", "f16": "fp16",
    "bfloat16": "bf16", "bf16": "bf16",
}
SLOWEST = 5   # nodes listed by name


@dataclass(frozen=True)
class NodeTimes:
    """One node of the executed graph over the profiled calls."""
    name: str
    op_type: str          # the runtime's kernel / layer type
    ms: float             # total over the profiled calls
    precision: str | None = None   # a matmul's compute precision (PRECISIONS' keys or values)
    macs: int | None = None        # a matmul's multiply-accumulates per call, from its shapes


def kind_of(op_type: str) -> str:
    return KINDS.get(op_type, "other")


def precision_of(raw: str | None) -> str:
    return PRECISIONS.get((raw or "").lower(), raw or "unknown")


def summarize(nodes: list[NodeTimes], calls: int, batch: int, source: str) -> dict:
    """The profile as a result records it: ms per call by kind (largest first, with its share of
    the profiled node time), matmul work by precision, and the slowest nodes."""
    if calls < 1 or not nodes:
        raise BadInput(f"a profile needs at least one call and one node (got {calls} calls, {len(nodes)} nodes)")
    total = sum(n.ms for n in nodes) / calls
    by_kind: dict[str, dict] = {}
    matmul: dict[str, dict] = {}
    for n in nodes:
        kind = kind_of(n.op_type)
        if kind == "matmul":
            prec = precision_of(n.precision)
            kind = f"matmul {prec}"
            row = matmul.setdefault(prec, {"ms": 0.0, "macs": 0, "nodes": 0, "macs_known": True})
            row["ms"] += n.ms / calls
            row["nodes"] += 1
            row["macs"] += n.macs or 0
            row["macs_known"] &= n.macs is not None
        row = by_kind.setdefault(kind, {"ms": 0.0, "nodes": 0, "op_types": set()})
        row["ms"] += n.ms / calls
        row["nodes"] += 1
        row["op_types"].add(n.op_type)
    kinds = [{"kind": k, "ms": round(v["ms"], 4), "share": round(v["ms"] / total, 4) if total else None,
              "nodes": v["nodes"], "op_types": sorted(v["op_types"])}
             for k, v in sorted(by_kind.items(), key=lambda kv: -kv[1]["ms"])]
    all_macs = sum(v["macs"] for v in matmul.values())
    macs_known = all(v["macs_known"] for v in matmul.values())
    mm_ms = sum(v["ms"] for v in matmul.values())
    int8 = matmul.get("int8", {"ms": 0.0, "macs": 0})
    slowest = sorted(nodes, key=lambda n: -n.ms)[:SLOWEST]
    return {
        "source": source, "calls": calls, "batch": batch, "node_ms": round(total, 4),
        "by_kind": kinds,
        "matmul": {"macs": all_macs if macs_known else None,
                   "int8_macs_share": round(int8["macs"] / all_macs, 4) if macs_known and all_macs else None,
                   "int8_time_share": round(int8["ms"] / mm_ms, 4) if mm_ms else None,
                   "by_precision": {p: {"ms": round(v["ms"], 4), "nodes": v["nodes"],
                                        "macs": v["macs"] if v["macs_known"] else None}
                                    for p, v in sorted(matmul.items())}},
        "slowest": [{"name": n.name, "op_type": n.op_type, "ms": round(n.ms / calls, 4)} for n in slowest],
    }


def _count(shape) -> int | None:
    if shape is None or any(not isinstance(d, int) or d < 0 for d in shape):
        return None
    return math.prod(shape)


def shape_macs(out_shape, reduce: int | None) -> int | None:
    """Multiply-accumulates of a matmul: output elements x reduction length (None when unknown)."""
    out = _count(out_shape)
    return None if reduce is None or out is None else out * reduce


def matmul_macs(a_shape, b_shape, out_shape) -> int | None:
    """Multiply-accumulates of A @ B, whichever operand the kernel transposes (a fused MatMul may
    take A as (.., K, M)). With a 2-D B: A (.., M, K), B (K, N) or (N, K), out (.., M, N) give
    |A| |B| / |out| = K^2. Without B's shape (a trace may list activations only): out's rows are
    A's rows unless A was transposed, then they are A's columns."""
    a, b, out = _count(a_shape), _count(b_shape), _count(out_shape)
    if a is None or out is None or not out or len(a_shape) < 2 or len(out_shape) < 2:
        return None
    if b is not None and len(b_shape) == 2:
        reduce = math.isqrt(a * b // out)
    elif out_shape[-2] == a_shape[-2]:
        reduce = a_shape[-1]
    elif out_shape[-2] == a_shape[-1]:   # A transposed inside the kernel
        reduce = a_shape[-2]
    else:
        return None
    return shape_macs(out_shape, reduce)


def format_profile(name: str, profile: dict) -> str:
    """A terminal table: kind, ms per call, share; then the INT8 share of matmul work."""
    if profile.get("status") == "not-run":
        return f"profile of {name}: not run: {profile['reason']}"
    lines = [f"profile of {name} ({profile['source']}, batch {profile['batch']}, {profile['calls']} calls, "
             f"{profile['node_ms']:.3f} ms of node time a call):"]
    width = max(len(k["kind"]) for k in profile["by_kind"])
    for k in profile["by_kind"]:
        lines.append(f"  {k['kind']:<{width}}  {k['ms']:9.3f} ms  {100 * (k['share'] or 0):5.1f} %  "
                     f"{k['nodes']:4d} nodes  ({', '.join(k['op_types'])})")
    lines.append("  " + int8_line(profile))
    return "\n".join(lines)


def int8_line(profile: dict) -> str:
    m = profile["matmul"]
    if not m["by_precision"]:
        return "no matrix multiplies found"
    macs = "unknown" if m["int8_macs_share"] is None else f"{100 * m['int8_macs_share']:.1f} %"
    time = "unknown" if m["int8_time_share"] is None else f"{100 * m['int8_time_share']:.1f} %"
    floats = [p for p in m["by_precision"] if p != "int8"]
    rest = f"; the rest in {', '.join(floats)}" if floats else ""
    return f"matmul work in INT8 kernels: {macs} of multiply-accumulates, {time} of matmul time{rest}"
