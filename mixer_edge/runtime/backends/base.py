"""What every backend returns and takes: a Backend (a run function and what it is) and the
Options a user may set. A backend is a module of this package with a `load(folder, manifest,
options) -> Backend` function, its device NEEDS and the LIBRARY it imports (backends/__init__.py)."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, NamedTuple

import numpy as np


@dataclass(frozen=True)
class Options:
    """How to run: None means the runtime's default, recorded as read back from the runtime."""
    threads: int | None = None
    precision_hint: str | None = None   # OpenVINO INFERENCE_PRECISION_HINT: f32 | bf16 | f16
    provider: str | None = None         # ONNX Runtime execution provider / OpenVINO device
    compute_units: str | None = None    # Core ML: ALL, CPU_ONLY, CPU_AND_GPU, CPU_AND_NE (default ALL)


class Backend(NamedTuple):
    run: Callable[[np.ndarray], np.ndarray]   # (N, C, H, W) float32 -> logits (N, K)
    config: dict                               # the runtime configuration actually in use
    what: str                                  # e.g. "onnxruntime 1.20.1 CPUExecutionProvider"
    versions: dict

