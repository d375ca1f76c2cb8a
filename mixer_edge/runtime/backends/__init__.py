"""The runtimes an artifact can run on, by the manifest's target name: one module per runtime, each
with `load(folder, manifest, options) -> Backend`, its device NEEDS and the LIBRARY it imports.
A runtime's SDK is imported only when an artifact is loaded. A new runtime is one module and one
line of BACKENDS (the host's export target names its module: export/base.Target.backend)."""
from __future__ import annotations

import importlib
from pathlib import Path

from ..errors import NotRunnable
from . import coreml, onnxruntime, openvino, tensorrt
from .base import Backend, Options

BACKENDS = {"onnx": onnxruntime, "openvino": openvino, "tensorrt": tensorrt, "coreml": coreml}
NEEDS = {target: module.NEEDS for target, module in BACKENDS.items() if module.NEEDS}


def load_backend(folder, manifest: dict, opt: Options, backends: dict = BACKENDS) -> Backend:
    """The manifest's target's backend, loaded on the artifact (backends: target -> module; the
    host passes its registry's, which may hold targets this package does not know)."""
    target = manifest["target"]
    if target not in backends:
        raise NotRunnable(f"edge_bench.py has no runner for target {target!r}; it runs {', '.join(backends)}")
    return backends[target].load(Path(folder), manifest, opt)


def import_library(backend) -> None:
    """Import a backend's runtime library (its LIBRARY) before the memory mark: the first model of a
    runtime in a process would otherwise be charged with the library. None (no backend, or one that
    is never pre-imported) does nothing; a failure is the load's to report."""
    library = getattr(backend, "LIBRARY", None)
    if library is not None:
        try:
            importlib.import_module(library)
        except ImportError:
            pass


__all__ = ["BACKENDS", "NEEDS", "Backend", "Options", "import_library", "load_backend"]
