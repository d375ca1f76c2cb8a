"""Core ML on macOS: MLModel.predict on the artifact's .mlpackage, on the compute units asked for
(--compute-units ALL, CPU_ONLY, CPU_AND_GPU, CPU_AND_NE; --provider is the older spelling).

A tensor input declares its batch sizes as enumerated shapes (each one eligible for the Neural
Engine): a batch of another size is split into them, largest first (100 = 64 + 32 + 4). A program
exported before that declares a range (1..64): only its default shape, batch 1, may run on the
Neural Engine, and larger batches are split into chunks of 64."""
from __future__ import annotations

import platform
import warnings
from pathlib import Path

import numpy as np

from ..errors import BadInput, NotRunnable
from ..needs import PILLOW, Need, install_hint, pil, require
from .base import Backend, Options

LIBRARY = None   # coremltools is slow and noisy to import, and off macOS it does not run: never pre-imported
NEEDS = (
    Need("coremltools", 'pip install "coremltools>=8,<10"',
         "on macOS 14 or newer (15 for iOS18 / macOS15 programs): Core ML prediction, whose native "
         "part ships only in the macOS wheels", "a Mac with macOS 14 or newer"),
    Need("numpy", 'pip install "numpy>=1.24"', "arrays"),
    Need("PIL", PILLOW, "decodes image files, resizes images of another size, feeds image-input programs"),
)
# Core ML specification version of a program -> the first macOS that runs it (iOS16 / macOS13 programs
# are version 7, iOS17 / macOS14 version 8, iOS18 / macOS15 version 9).
MACOS_FOR_SPEC = {7: 13, 8: 14, 9: 15}


COMPUTE_UNITS = ("ALL", "CPU_ONLY", "CPU_AND_GPU", "CPU_AND_NE")
RANGE_MAX = 64   # the batch range of programs exported before enumerated shapes


def load(folder: Path, manifest: dict, opt: Options) -> Backend:
    check_macos(manifest)
    ct = require("coremltools", "coreml artifacts", NEEDS)
    units = (opt.compute_units or opt.provider or "ALL").upper()
    if units not in ct.ComputeUnit.__members__:
        raise BadInput(f"unknown Core ML compute units {units!r}; accepted: {', '.join(ct.ComputeUnit.__members__)}")
    model = _mlmodel(ct, folder / "model.mlpackage", ct.ComputeUnit[units])
    image_input = (manifest.get("export") or {}).get("spec", {}).get("coreml_input") == "image"
    declared = (((manifest.get("export") or {}).get("coreml") or {}).get("input") or {}).get("batches")
    batches = sorted(declared) if declared else None   # None: a range 1..RANGE_MAX (older programs)
    pre = manifest["preprocess"]
    mean, std = np.asarray(pre["mean"], np.float32), np.asarray(pre["std"], np.float32)

    def as_image(img: np.ndarray):  # (C, H, W) preprocessed -> the 8-bit image the program expects
        Image = pil()
        raw = np.clip(np.rint((img.transpose(1, 2, 0) * std + mean) * 255), 0, 255).astype(np.uint8)
        return Image.fromarray(raw[..., 0] if raw.shape[-1] == 1 else raw)

    def run(x: np.ndarray) -> np.ndarray:
        if image_input:
            return np.stack([np.asarray(model.predict({"input": as_image(img)})["logits"]).reshape(-1) for img in x])
        parts, start = [], 0
        for size in split_batch(len(x), batches):
            part = np.ascontiguousarray(x[start:start + size], np.float32)
            parts.append(np.asarray(model.predict({"input": part})["logits"], dtype=np.float32))
            start += size
        return np.concatenate(parts) if parts else np.zeros((0, len(manifest["classes"])), np.float32)

    ane = [1] if image_input or batches is None else batches
    config = {"compute_units": units, "input": "image" if image_input else "tensor",
              "batches": batches or f"1..{RANGE_MAX}", "neural_engine_batches": ane}
    return Backend(run, config, f"coremltools {ct.__version__} MLModel {units}", {"coremltools": ct.__version__})


def split_batch(n: int, batches) -> list[int]:
    """The shapes a batch of n runs as: the largest declared batch that fits, again and again
    (powers of two: exact); without declared batches, chunks of RANGE_MAX."""
    if not batches:
        return [min(RANGE_MAX, n - i) for i in range(0, n, RANGE_MAX)]
    sizes = []
    while n > 0:
        size = max((b for b in batches if b <= n), default=min(batches))
        sizes.append(size)
        n -= size
    return sizes


def _mlmodel(ct, path: Path, units):
    """MLModel, refused here when the framework cannot load the program: coremltools only warns then
    ("You will not be able to run predict()") and raises the error at the first prediction."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        model = ct.models.MLModel(str(path), compute_units=units)
    error = getattr(model, "_framework_error", None)
    said = [str(w.message) for w in caught if issubclass(w.category, RuntimeWarning) and "predict()" in str(w.message)]
    if error is not None or said:
        raise NotRunnable(f"Core ML cannot load {path.name} on this Mac: {error or said[0]}")
    return model


def check_macos(manifest: dict) -> None:
    """Core ML runs on macOS only, and a program only on the macOS of its deployment target or newer."""
    if platform.system() != "Darwin":
        raise NotRunnable(f"Core ML prediction needs macOS (this is {platform.system()}); copy the artifact to a "
                          f"Mac and run edge_bench.py there ({install_hint(NEEDS, 'coremltools')})")
    spec = ((manifest.get("export") or {}).get("coreml") or {}).get("specification_version")
    need, have = MACOS_FOR_SPEC.get(spec), platform.mac_ver()[0]
    if need and have and int(have.split(".")[0]) < need:
        raise NotRunnable(f"this Core ML program (specification version {spec}) needs macOS {need} or newer; "
                          f"this is macOS {have}")
