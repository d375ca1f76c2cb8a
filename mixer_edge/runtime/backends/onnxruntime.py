"""ONNX Runtime: sessions on an artifact's .onnx file, for devices, `mixer-edge bench` and export
validation alike (the one place sessions are set up)."""
from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from ..artifact import model_file
from ..errors import BadInput, NotRunnable
from ..needs import require
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
    so = ort.SessionOptions()
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
    in_name, out_name = sess.get_inputs()[0].name, sess.get_outputs()[0].name

    def run(x: np.ndarray) -> np.ndarray:
        return sess.run([out_name], {in_name: x})[0]

    config = {"provider": wanted[0], "providers": sess.get_providers(), "threads": so.intra_op_num_threads,
              "spinning": spinning, "graph_optimization": optimization}
    return Backend(run, config, f"onnxruntime {ort.__version__} {wanted[0]}", {"onnxruntime": ort.__version__})
