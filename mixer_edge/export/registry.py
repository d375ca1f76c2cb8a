"""Targets by name, as lazy "module:Class" strings: listing them imports no backend SDK."""
from __future__ import annotations

import importlib

from ..errors import resolve

TARGETS: dict[str, str] = {
    "onnx": "mixer_edge.export.onnx:OnnxTarget",
    "openvino": "mixer_edge.export.openvino:OpenVinoTarget",
    "tensorrt": "mixer_edge.export.tensorrt:TensorRTTarget",
    "coreml": "mixer_edge.export.coreml:CoreMLTarget",
}


ALIASES = {"trt": "tensorrt", "ov": "openvino", "ort": "onnx", "onnxruntime": "onnx", "mlpackage": "coreml"}


def target_names() -> list[str]:
    return list(TARGETS)


def get_target(name: str):
    name = resolve("target", name, TARGETS, ALIASES)
    module, cls = TARGETS[name].split(":")
    return getattr(importlib.import_module(module), cls)()


def expand(names) -> list[str]:
    """'all' means every registered target; otherwise the names given, each checked."""
    out: list[str] = []
    for n in names:
        n = resolve("target", n, [*TARGETS, "all"], ALIASES)
        for t in (TARGETS if n == "all" else [n]):
            if t not in out:
                out.append(t)
    return out
