"""OpenVINO frees the alternate signal stack it gives a compiling thread (runtime/signal_stack.py);
a handled signal afterwards killed the process with SIGSEGV (the suite's exit 139). Each scenario
runs in a child process, since the failure kills whoever meets it."""
from __future__ import annotations

import subprocess
import sys

import pytest

pytest.importorskip("openvino")
pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="sigaltstack layout: Linux only")

SCENARIO = """
import gc, os, signal, numpy as np
import openvino as ov, openvino.opset13 as ops
from mixer_edge.runtime.backends.openvino import compile_model
p = ops.parameter([4, 64], np.float32)
m = ov.Model([ops.matmul(p, ops.constant(np.ones((64, 64), np.float32)), False, False)], [p])
compile = {compile}
for hint in ("f32", "bf16", "f32"):        # three models, the earlier ones dropped as the next arrives
    c = compile(ov.Core(), m, "CPU", {{"INFERENCE_PRECISION_HINT": hint}})
    c(np.ones((4, 64), np.float32))
del c
gc.collect()
signal.signal(signal.SIGUSR1, lambda *a: None)   # CPython handlers run on the alternate stack
os.kill(os.getpid(), signal.SIGUSR1)
print("survived")
"""


def _run(compile_expr: str):
    return subprocess.run([sys.executable, "-c", SCENARIO.format(compile=compile_expr)], capture_output=True,
                          text=True, timeout=120)


def test_a_handled_signal_after_openvino_models_are_freed_is_survived():
    done = _run("compile_model")
    assert done.returncode == 0 and "survived" in done.stdout, (done.returncode, done.stderr[-1000:])


def test_the_defect_is_openvinos():
    """Without the kept stack the same scenario dies; when an OpenVINO release no longer does,
    runtime/signal_stack.py can go (this test then says so by skipping)."""
    done = _run("lambda core, *a: core.compile_model(*a)")
    if done.returncode == 0:
        pytest.skip("this OpenVINO no longer leaves a freed signal stack behind: the workaround may be removed")
    assert done.returncode == -11, (done.returncode, done.stderr[-1000:])
