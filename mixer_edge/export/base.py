"""The Target interface every backend implements, its Capabilities, the ExportSpec a user asks
for, and the Runner that executes an artifact (np.ndarray (N, C, H, W) float32 -> logits (N, K)).

Targets never import their SDK at module import time: `mixer-edge targets` and `--help` must work
where tensorrt or coremltools are absent. SDKs are imported inside the methods via errors.require.
"""
from __future__ import annotations

import importlib.util
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Protocol

import numpy as np

PRECISIONS = ("fp32", "fp16", "int8")
CALIB_METHODS = ("minmax", "percentile", "entropy", "mse")   # calibration/ranges.py, shared by every target


@dataclass(frozen=True)
class Capabilities:
    precisions: frozenset[str]
    requires: tuple[str, ...]        # import names, e.g. ("openvino", "nncf")
    extra: str                       # the pip extra that installs them
    runtime: str                     # what executes the artifact, for people


@dataclass(frozen=True)
class Status:
    installed: bool
    runs_here: bool
    reason: str = ""                 # why not, when it does not


@dataclass(frozen=True)
class ExportSpec:
    precision: str = "fp32"
    calib_method: str | None = None  # INT8 activation ranges: CALIB_METHODS; None = ranges.DEFAULT_METHOD
    smooth: float | None = 0.5       # INT8: SmoothQuant fold strength alpha (calibration/smoothing.py); None = off
    float_layers: tuple[str, ...] = ()  # INT8: layers (module paths) kept in float
    max_drop: float | None = None    # INT8: keep the most sensitive layers in float until top-1 drops <= this
    opset: int = 17
    coreml_input: str = "tensor"     # Core ML: "tensor" or "image" (preprocessing baked in)
    coreml_target: str = "iOS17"     # Core ML minimum deployment target
    weights_only: bool = False       # INT8 weights only (Core ML)


@dataclass(frozen=True)
class Exported:
    """What a target's export wrote into the artifact folder, for the manifest, and what validates
    it when its runtime cannot run here (Core ML W8A8 off macOS: the quantized PyTorch model that
    was converted). The stand-in lives only as long as the export: nothing caches it."""
    files: tuple[str, ...]
    details: dict = field(default_factory=dict)   # target-specific manifest section ("export")
    stand_in: "LoadedRunner | None" = None


class NotRunnableHere(Exception):
    """The artifact's runtime cannot execute on this machine (no GPU, not macOS); says why."""


Runner = Callable[[np.ndarray], np.ndarray]


@dataclass(frozen=True)
class LoadedRunner:
    run: Runner
    config: dict                     # runtime configuration used: threads, precision hint, provider
    what: str                        # what actually ran, e.g. "onnxruntime CPUExecutionProvider"

    def __call__(self, x: np.ndarray) -> np.ndarray:
        return self.run(x)


class Target(Protocol):
    name: str
    capabilities: Capabilities

    def status(self) -> Status: ...
    def export(self, checkpoint, spec: ExportSpec, calib, out_dir: Path) -> Exported: ...
    def load_runner(self, artifact, **options) -> LoadedRunner: ...
    def validation_runner(self, artifact) -> LoadedRunner: ...  # what validates here (may differ)


def runtime_runner(loader, artifact, chunk: int = 256, **options) -> LoadedRunner:
    """The device runtime's backend for an artifact (runtime/edge_bench.py: the one implementation
    of session setup), wrapped for the host: chunked calls, the input shape checked, its errors as
    mixer-edge's (BadInput, NotRunnableHere)."""
    from ..errors import BadInput
    from ..runtime import edge_bench as eb

    try:
        backend = loader(artifact.path, artifact.manifest, eb.Options(**options))
    except eb.BenchError as e:
        raise BadInput(str(e)) from None
    except eb.NotRunnable as e:
        raise NotRunnableHere(str(e)) from None
    chw = tuple(artifact.manifest["input"]["shape"][1:])
    classes = artifact.manifest["output"]["shape"][-1]

    def run(x: np.ndarray) -> np.ndarray:
        x = np.ascontiguousarray(x, dtype=np.float32)
        if x.ndim != 4 or tuple(x.shape[1:]) != chw:
            raise BadInput(f"the model takes (N, {', '.join(map(str, chw))}) float32, got shape {list(x.shape)}")
        if len(x) == 0:
            return np.zeros((0, classes), np.float32)
        return np.concatenate([np.asarray(backend.run(x[i:i + chunk]), np.float32) for i in range(0, len(x), chunk)])

    return LoadedRunner(run=run, config=backend.config, what=backend.what)


def installed(*modules: str) -> bool:
    """Is every module importable? Checked without importing it (find_spec)."""
    return all(importlib.util.find_spec(m) is not None for m in modules)


def missing_status(caps: Capabilities) -> Status:
    absent = [m for m in caps.requires if importlib.util.find_spec(m) is None]
    return Status(False, False, f"not installed: {', '.join(absent)} (pip install 'mixer-edge[{caps.extra}]')")
