"""OpenVINO Runtime: an IR compiled with an explicit precision hint and thread count, both recorded
with what the plugin applied (its CPU default is bf16 where the ISA has it, which would make FP32
checks meaningless).

The hint, when none is asked (default_hint): f32, except for an FP16 artifact on a CPU that computes
in bf16 (AVX512-BF16 or AMX). An FP16 artifact is the user's choice of 16-bit float accuracy, and
the CPU plugin's fast 16-bit float path is bf16: f32 there would run FP16 weights at FP32 speed (B/16
batch 1 on an AMX machine: 3.1x the bf16 time, benchmarks/RESULTS.md 12.1.2). Validation runs the
same default, so the artifact is checked as it runs on the machine that exports it; the device check
runs it as it runs on the device (f32 where the CPU has no BF16, which only raises its SQNR)."""
from __future__ import annotations

import math
from pathlib import Path

import numpy as np

from ..artifact import listed, model_file
from ..errors import BadInput, NotRunnable
from ..needs import require
from ..profile import NodeTimes, matmul_macs, shape_macs
from ..signal_stack import keep as keep_signal_stack
from ..system import X86_BF16, isa_flags
from ..threads import default_threads
from .base import Backend, Options

LIBRARY = "openvino"
NEEDS = ()   # openvino from PyPI; plain pip install says it
PRECISION_HINTS = ("f32", "bf16", "f16")   # INFERENCE_PRECISION_HINT values the CPU plugin takes


def load(folder: Path, manifest: dict, opt: Options) -> Backend:
    ov = require(LIBRARY, "openvino artifacts", NEEDS)
    compiled, config = compile_artifact(folder, manifest, opt)
    request = compiled.create_infer_request()

    def run(x: np.ndarray) -> np.ndarray:
        request.infer({0: x})
        return request.get_output_tensor(0).data.copy()

    release = ov.__version__.split("-")[0]   # "2026.4.1-22982-e213a147257-releases/..." -> "2026.4.1"
    return Backend(run, config, f"openvino {release} {config['device']} {config['precision_hint']}",
                   {"openvino": ov.__version__})


def compile_artifact(folder: Path, manifest: dict, opt: Options, extra: dict | None = None) -> tuple:
    """(CompiledModel, the configuration it runs with); extra: more compile properties (PERF_COUNT)."""
    ov = require(LIBRARY, "openvino artifacts", NEEDS)
    device = opt.provider or "CPU"
    hint = opt.precision_hint or default_hint(manifest, device)  # explicit: the plugin's own default is bf16
    if hint not in PRECISION_HINTS:
        raise BadInput(f"unknown --precision-hint {hint!r}; accepted: {', '.join(PRECISION_HINTS)}")
    core = ov.Core()
    if device.split(":")[0].split(".")[0] not in {d.split(".")[0] for d in core.available_devices} \
            and not device.startswith(("AUTO", "HETERO", "MULTI")):
        raise NotRunnable(f"needs OpenVINO device {device}; this machine has {', '.join(core.available_devices)}")
    threads = opt.threads or default_threads()
    xml = model_file(folder, manifest, ".xml")
    weights = listed(folder, manifest, xml.with_suffix(".bin").name)  # read_model would open it unlisted
    compiled = compile_model(core, core.read_model(str(xml), str(weights)), device,
                             {"INFERENCE_PRECISION_HINT": hint, "INFERENCE_NUM_THREADS": threads, **(extra or {})})
    config = {"device": device, "precision_hint": hint, "threads": threads}
    try:  # what the plugin actually uses: a CPU without BF16 runs a bf16 hint in f32
        config["applied_precision"] = compiled.get_property("INFERENCE_PRECISION_HINT").get_type_name()
        config["applied_threads"] = int(compiled.get_property("INFERENCE_NUM_THREADS"))
    except (RuntimeError, AttributeError, TypeError):  # not every device reports these
        pass
    return compiled, config


def default_hint(manifest: dict, device: str = "CPU", isa: list | None = None) -> str:
    """The INFERENCE_PRECISION_HINT an artifact runs with when none is asked: bf16 for an FP16
    artifact on an x86 CPU with X86_BF16, else f32 (module docstring). isa: the CPU's flags (tests)."""
    if manifest.get("precision") != "fp16" or not device.upper().startswith("CPU"):
        return "f32"
    have = isa_flags() if isa is None else isa
    return "bf16" if any(f in have for f in X86_BF16) else "f32"


def compile_model(core, model, device: str = "CPU", config: dict | None = None):
    """core.compile_model with the calling thread's signal stack kept valid around it
    (runtime/signal_stack.py: OpenVINO's own is freed with the compiled model, and the next handled
    signal then kills the process). Every compile in mixer-edge and its benchmarks goes through here."""
    keep_signal_stack()
    compiled = core.compile_model(model, device, config or {})
    keep_signal_stack()
    return compiled


# ---- profiling ----------------------------------------------------------------------------------

MATMUL_LAYERS = ("FullyConnected", "FullyConnectedQuantizedLegacy", "FullyConnectedCompressed", "MatMul",
                 "Convolution", "GroupConvolution")
SKIPPED = ("NOT_RUN", "OPTIMIZED_OUT")


def profile(folder: Path, manifest: dict, opt: Options, x: np.ndarray, calls: int, warmup: int = 2) -> list:
    """NodeTimes of `calls` runs on x (after `warmup` runs), from the CPU plugin's own counters
    (PERF_COUNT): each executed node's time, layer type and, from the runtime model, the precision
    it computed in and its shapes (runtime/profile.py sums them)."""
    compiled, _ = compile_artifact(folder, manifest, opt, {"PERF_COUNT": True})
    request = compiled.create_infer_request()
    for _ in range(warmup):
        request.infer({0: x})
    times: dict[str, list] = {}
    for _ in range(calls):
        request.infer({0: x})
        for info in request.get_profiling_info():   # the last call's counters only
            if info.status.name in SKIPPED:
                continue
            row = times.setdefault(info.node_name, [info.node_type, info.exec_type, 0.0])
            row[2] += info.real_time.total_seconds() * 1000.0
    facts = _runtime_facts(compiled)
    return [NodeTimes(name, layer, ms, *facts.get(name, (_exec_precision(exec_type), None)))
            if layer in MATMUL_LAYERS else NodeTimes(name, layer, ms)
            for name, (layer, exec_type, ms) in times.items()]


def _runtime_facts(compiled) -> dict:
    """node name -> (precision, macs) of each executed matmul, from the compiled runtime model."""
    out = {}
    for op in compiled.get_runtime_model().get_ordered_ops():
        info = op.get_rt_info()
        layer = info["layerType"].astype(str) if "layerType" in info else ""
        if layer not in MATMUL_LAYERS:
            continue
        precision = info["runtimePrecision"].astype(str) if "runtimePrecision" in info else None
        out[op.get_friendly_name()] = (precision, _macs(layer, op))
    return out


def _macs(layer: str, op) -> int | None:
    """Output elements x reduction length: input 0's last dimension for a fully connected layer,
    the weight's dimensions after the first for a convolution."""
    shapes = [op.input(i).get_partial_shape() for i in range(op.get_input_size())]
    out = op.get_output_partial_shape(0)
    if not out.is_static or not shapes or not all(s.is_static for s in shapes[:2]):
        return None
    dims = [[d.get_length() for d in s] for s in shapes[:2]]
    out_dims = [d.get_length() for d in out]
    if layer in ("Convolution", "GroupConvolution"):
        return shape_macs(out_dims, math.prod(dims[1][1:]) if len(dims) > 1 else None)
    return matmul_macs(dims[0], dims[1] if len(dims) > 1 else None, out_dims)


def _exec_precision(exec_type: str) -> str:
    """'brgemm_avx512_amx_I8' -> 'i8' (the kernel's name ends in the precision it ran)."""
    return exec_type.rsplit("_", 1)[-1].lower() if "_" in exec_type else exec_type
