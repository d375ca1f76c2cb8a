"""ONNX Runtime: sessions on an artifact's .onnx file, for devices, `mixer-edge bench` and export
validation alike (the one place sessions are set up)."""
from __future__ import annotations

import json
import math
import os
import tempfile
from pathlib import Path

import numpy as np

from ..artifact import model_file
from ..errors import BadInput, NotRunnable
from ..needs import require
from ..profile import NodeTimes, matmul_macs, shape_macs
from ..threads import default_threads
from .base import Backend, Options

LIBRARY = "onnxruntime"
NEEDS = ()   # onnxruntime from PyPI (or the device vendor's build), numpy; plain pip install says it
OPTIMIZATIONS = ("all", "basic")


def load(folder: Path, manifest: dict, opt: Options) -> Backend:
    if opt.precision_hint is not None:
        raise BadInput(f"--precision-hint applies to openvino artifacts; "
                       f"ONNX Runtime runs {manifest['precision']} as exported")
    return session(model_file(folder, manifest, ".onnx"), opt.threads, opt.provider)


def session(path, threads: int | None = None, provider: str | None = None, optimization: str = "all") -> Backend:
    """An ONNX Runtime session on one .onnx file. optimization "basic" runs Q/DQ as written (what
    TensorRT's kernels compute) instead of fusing them into ONNX Runtime's integer kernels."""
    ort = require(LIBRARY, "onnx artifacts", NEEDS)
    sess, config = open_session(path, threads, provider, optimization)
    in_name, out_name = sess.get_inputs()[0].name, sess.get_outputs()[0].name

    def run(x: np.ndarray) -> np.ndarray:
        return sess.run([out_name], {in_name: x})[0]

    return Backend(run, config, f"onnxruntime {ort.__version__} {config['provider']}",
                   {"onnxruntime": ort.__version__})


def open_session(path, threads: int | None, provider: str | None, optimization: str = "all",
                 profile_prefix: str | None = None) -> tuple:
    """(InferenceSession, the configuration it runs with). profile_prefix: ONNX Runtime writes a
    per-node trace there (profile())."""
    ort = require(LIBRARY, "onnx artifacts", NEEDS)
    so = ort.SessionOptions()
    if profile_prefix is not None:
        so.enable_profiling = True
        so.profile_file_prefix = profile_prefix
    so.intra_op_num_threads = threads or default_threads()
    # Idle pool threads spin by default; against another busy process that steals the cores both
    # need. They sleep when this process's threads sleep (runtime/threads.py: OMP_WAIT_POLICY).
    spinning = os.environ.get("OMP_WAIT_POLICY", "").upper() != "PASSIVE"
    so.add_session_config_entry("session.intra_op.allow_spinning", "1" if spinning else "0")
    so.graph_optimization_level = {"all": ort.GraphOptimizationLevel.ORT_ENABLE_ALL,
                                   "basic": ort.GraphOptimizationLevel.ORT_ENABLE_BASIC}[optimization]
    so.log_severity_level = 3
    # Nodes an accelerator provider does not take fall back to the CPU provider, as ORT intends.
    wanted = [provider or "CPUExecutionProvider"]
    if wanted[0] != "CPUExecutionProvider":
        wanted.append("CPUExecutionProvider")
    available = ort.get_available_providers()
    if wanted[0] not in available:
        raise NotRunnable(f"needs ONNX Runtime provider {wanted[0]}; this onnxruntime has {', '.join(available)}")
    sess = ort.InferenceSession(str(path), so, providers=wanted)
    if sess.get_providers()[0] != wanted[0]:
        raise NotRunnable(f"ONNX Runtime could not start {wanted[0]} (session runs on {sess.get_providers()})")
    return sess, {"provider": wanted[0], "providers": sess.get_providers(), "threads": so.intra_op_num_threads,
                  "spinning": spinning, "graph_optimization": optimization}


# ---- profiling ----------------------------------------------------------------------------------

# Where a convolution's weight sits among its inputs (reduction length = its dims after the first).
CONV_WEIGHT = {"Conv": 1, "FusedConv": 1, "ConvInteger": 1, "QLinearConv": 3}
# Where a matrix multiply's B sits among its inputs (the others take A, B first).
MATMUL_B = {"MatMul": 1, "Gemm": 1, "FusedMatMul": 1, "FusedGemm": 1, "MatMulInteger": 1, "MatMulIntegerToFloat": 1,
            "DynamicQuantizeMatMul": 1, "QGemm": 3, "QLinearMatMul": 3}
INTEGER_OPS = ("MatMulInteger", "MatMulIntegerToFloat", "DynamicQuantizeMatMul", "QGemm", "QLinearMatMul",
               "QLinearConv", "ConvInteger")


def profile(folder: Path, manifest: dict, opt: Options, x: np.ndarray, calls: int, warmup: int = 2) -> list:
    """NodeTimes of `calls` runs on x (after `warmup` runs), from ONNX Runtime's own trace: every
    kernel's duration, its op type and input shapes (runtime/profile.py sums them)."""
    with tempfile.TemporaryDirectory(prefix="mixer-edge-ort-profile-") as tmp:
        sess, _ = open_session(model_file(folder, manifest, ".onnx"), opt.threads, opt.provider,
                               profile_prefix=str(Path(tmp) / "trace"))
        feed = {sess.get_inputs()[0].name: x}
        for _ in range(warmup + calls):
            sess.run(None, feed)
        events = json.loads(Path(sess.end_profiling()).read_text())
    runs = sorted(e["ts"] for e in events if e.get("cat") == "Session" and e.get("name") == "model_run")
    start = runs[warmup] if len(runs) > warmup else 0   # the warm-up runs are left out
    nodes: dict[str, list] = {}
    for e in events:
        if e.get("cat") != "Node" or not e.get("name", "").endswith("_kernel_time") or e["ts"] < start:
            continue
        args = e.get("args", {})
        name = e["name"][:-len("_kernel_time")]
        row = nodes.setdefault(name, [args.get("op_name", "?"), 0.0, args])
        row[1] += e["dur"] / 1000.0   # us -> ms
    return [NodeTimes(name, op, ms, *_matmul_facts(op, args)) for name, (op, ms, args) in nodes.items()]


def _matmul_facts(op: str, args: dict) -> tuple:
    """(precision, macs) of a matmul kernel from its traced shapes; (None, None) for other ops."""
    inputs = [next(iter(t.items())) for t in args.get("input_type_shape", [])]     # [(dtype, shape), ...]
    outputs = [next(iter(t.items())) for t in args.get("output_type_shape", [])]
    if op not in CONV_WEIGHT and op not in MATMUL_B and op != "MatMulNBits":
        return None, None
    if not inputs or not outputs:
        return ("int8" if op in INTEGER_OPS else None), None
    precision = "int8" if op in INTEGER_OPS else ("int4" if op == "MatMulNBits" else inputs[0][0])
    if op in CONV_WEIGHT:
        weight = inputs[CONV_WEIGHT[op]][1] if len(inputs) > CONV_WEIGHT[op] else None
        return precision, shape_macs(outputs[0][1], math.prod(weight[1:]) if weight else None)
    if op == "MatMulNBits":   # B is packed in blocks: A's last dimension is the reduction
        return precision, shape_macs(outputs[0][1], inputs[0][1][-1] if inputs[0][1] else None)
    b = inputs[MATMUL_B[op]][1] if len(inputs) > MATMUL_B[op] else None
    return precision, matmul_macs(inputs[0][1], b, outputs[0][1])
