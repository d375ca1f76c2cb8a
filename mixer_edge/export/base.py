"""The Target interface every backend implements, its Capabilities, the ExportSpec a user asks
for, and the Runner that executes an artifact (np.ndarray (N, C, H, W) float32 -> logits (N, K)).

What is target-specific is a property of the target object, so a new target is one module plus
one registry line (registry.TARGETS, or registry.register for a plug-in): its export, its runtime
backend (a module of mixer_edge/runtime/backends, or anything with the same load / NEEDS /
LIBRARY), the model file its quantized matrix multiplies are counted in, the Q/DQ flavor that
simulates its INT8 arithmetic, and the device launchers its artifact ships.

Targets never import their SDK at module import time: `mixer-edge targets` and `--help` must work
where tensorrt or coremltools are absent. SDKs are imported inside the methods via errors.require.
"""
from __future__ import annotations

import importlib.util
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Protocol

import numpy as np

from ..calibration.int4 import BLOCK as INT4_BLOCK
from ..calibration.policy import DEFAULT_SMOOTH
from ..calibration.ranges import METHODS
from ..errors import BadInput
from ..runtime.backends import Options

CALIB_METHODS = tuple(METHODS)     # calibration/ranges.py, shared by every target
INT4_FORMATS = ("blocks", "palette")   # calibration/int4.py (every target), export/int4_palette.py (Core ML)


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
    smooth: float | None = DEFAULT_SMOOTH  # INT8: SmoothQuant fold strength alpha (calibration/smoothing.py); None = off
    int4_block: int = INT4_BLOCK     # INT4: inputs per weight scale (calibration/int4.py)
    int4_token_bits: int = 8         # INT4: the token-mixing MLPs' weight bits, 8 (measured default) or 4
    int4_format: str = "blocks"      # INT4: "blocks" (a scale per block) or "palette" (Core ML: export/int4_palette.py)
    split: bool = True               # INT8: MLPs with massive hidden units split in two (calibration/split.py)
    float_layers: tuple[str, ...] = ()  # INT8: layers (module paths) kept in float
    max_drop: float | None = None    # INT8: keep the most sensitive layers in float until top-1 drops <= this
    opset: int = 17
    coreml_input: str = "tensor"     # Core ML: "tensor" or "image" (preprocessing baked in)
    coreml_target: str = "iOS17"     # Core ML minimum deployment target
    weights_only: bool = False       # INT8 weights only (Core ML)
    strict: bool = False             # a check the validation images are too few to decide fails (validate.undecided)


Runner = Callable[[np.ndarray], np.ndarray]


@dataclass(frozen=True)
class LoadedRunner:
    run: Runner
    config: dict                     # runtime configuration used: threads, precision hint, provider
    what: str                        # what actually ran, e.g. "onnxruntime CPUExecutionProvider"

    def __call__(self, x: np.ndarray) -> np.ndarray:
        return self.run(x)


@dataclass(frozen=True)
class Exported:
    """What a target's export wrote into the artifact folder, for the manifest, and what validates
    it when its runtime cannot run here (Core ML W8A8 off macOS: the quantized PyTorch model that
    was converted). The stand-in lives only as long as the export: nothing caches it."""
    files: tuple[str, ...]
    details: dict = field(default_factory=dict)   # target-specific manifest section ("export")
    stand_in: LoadedRunner | None = None


class Target(Protocol):
    name: str
    capabilities: Capabilities
    backend: object                  # the runtime backend: load(folder, manifest, Options) -> Backend, NEEDS, LIBRARY
    model_file: str                  # the file whose matrix multiplies the INT8 check counts (matmul_ops)
    simulation: str                  # the qdq.FLAVORS entry that simulates its INT8 arithmetic (layer ranking)
    launchers: tuple[str, ...]       # device scripts shipped beside the runtime package (artifact.LAUNCHERS)

    def status(self) -> Status: ...
    def export(self, checkpoint, spec: ExportSpec, calib, out_dir: Path) -> Exported: ...
    def load_runner(self, artifact, **options) -> LoadedRunner: ...
    def validation_runner(self, artifact) -> LoadedRunner: ...  # what validates here (may differ)
    def matmul_ops(self, path) -> list: ...                      # qdq.MatMulOp of a model file as written


def runtime_runner(backend, artifact, chunk: int = 256, **options) -> LoadedRunner:
    """The device runtime's backend for an artifact (mixer_edge/runtime/backends: the one
    implementation of session setup), wrapped for the host: chunked calls, the input shape checked."""
    loaded = backend.load(artifact.path, artifact.manifest, Options(**options))
    chw = tuple(artifact.manifest["input"]["shape"][1:])
    classes = artifact.manifest["output"]["shape"][-1]

    def run(x: np.ndarray) -> np.ndarray:
        x = np.ascontiguousarray(x, dtype=np.float32)
        if x.ndim != 4 or tuple(x.shape[1:]) != chw:
            raise BadInput(f"the model takes (N, {', '.join(map(str, chw))}) float32, got shape {list(x.shape)}")
        if len(x) == 0:
            return np.zeros((0, classes), np.float32)
        return np.concatenate([np.asarray(loaded.run(x[i:i + chunk]), np.float32) for i in range(0, len(x), chunk)])

    return LoadedRunner(run=run, config=loaded.config, what=loaded.what)


def installed(*modules: str) -> bool:
    """Is every module importable? Checked without importing it (find_spec)."""
    return all(importlib.util.find_spec(m) is not None for m in modules)


def missing_status(caps: Capabilities) -> Status:
    absent = [m for m in caps.requires if importlib.util.find_spec(m) is None]
    return Status(False, False, f"not installed: {', '.join(absent)} (pip install 'mixer-edge[{caps.extra}]')")
