"""Targets by name, as lazy "module:Class" strings: listing them imports no backend SDK. A target
defined elsewhere (a plug-in, a test) joins with register(); everything else about it is a
property of its class (export/base.Target)."""
from __future__ import annotations

import importlib

from ..errors import BadInput, resolve

TARGETS: dict[str, str] = {
    "onnx": "mixer_edge.export.onnx:OnnxTarget",
    "openvino": "mixer_edge.export.openvino:OpenVinoTarget",
    "tensorrt": "mixer_edge.export.tensorrt:TensorRTTarget",
    "coreml": "mixer_edge.export.coreml:CoreMLTarget",
}


AUTO = "auto"   # --target auto: not a target, the choice among those that run here (export/auto.py)
ALIASES = {"trt": "tensorrt", "ov": "openvino", "ort": "onnx", "onnxruntime": "onnx", "mlpackage": "coreml"}


def register(name: str, target) -> None:
    """Add a target: a "module:Class" string or the class itself; refused for a name already taken."""
    if name in TARGETS or name.lower() in ALIASES or name == "all":
        raise BadInput(f"target name {name!r} is taken; registered: {', '.join(TARGETS)}")
    TARGETS[name] = target


def unregister(name: str) -> None:
    TARGETS.pop(name, None)


def target_names() -> list[str]:
    return list(TARGETS)


def get_target(name: str):
    name = resolve("target", name, TARGETS, ALIASES)
    entry = TARGETS[name]
    if not isinstance(entry, str):
        return entry()
    module, cls = entry.split(":")
    return getattr(importlib.import_module(module), cls)()


def backends() -> dict:
    """target name -> its runtime backend, for the device runtime's loaders (runtime/backends):
    what `mixer-edge predict` and the benchmark load an artifact with, registered targets included."""
    return {name: get_target(name).backend for name in TARGETS}


def expand(names) -> list[str]:
    """'all' means every registered target; otherwise the names given, each checked."""
    out: list[str] = []
    for n in names:
        n = resolve("target", n, [*TARGETS, "all"], ALIASES)
        for t in (TARGETS if n == "all" else [n]):
            if t not in out:
                out.append(t)
    return out
