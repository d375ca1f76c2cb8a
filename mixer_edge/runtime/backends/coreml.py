"""Core ML on macOS: MLModel.predict on the artifact's .mlpackage; --provider picks the compute
units (ALL, CPU_ONLY, CPU_AND_GPU, CPU_AND_NE)."""
from __future__ import annotations

import platform
from pathlib import Path

import numpy as np

from ..errors import BadInput, NotRunnable
from ..needs import PILLOW, Need, install_hint, pil, require
from .base import Backend, Options

LIBRARY = None   # coremltools is slow and noisy to import, and off macOS it does not run: never pre-imported
NEEDS = (
    Need("coremltools", 'pip install "coremltools>=8,<10"',
         "on macOS 14 or newer (15 for iOS18 / macOS15 programs): Core ML prediction, whose native "
         "part ships only in the macOS wheels"),
    Need("numpy", 'pip install "numpy>=1.24"', "arrays"),
    Need("PIL", PILLOW, "decodes image files, resizes images of another size, feeds image-input programs"),
)
# Core ML specification version of a program -> the first macOS that runs it (iOS16 / macOS13 programs
# are version 7, iOS17 / macOS14 version 8, iOS18 / macOS15 version 9).
MACOS_FOR_SPEC = {7: 13, 8: 14, 9: 15}


def load(folder: Path, manifest: dict, opt: Options) -> Backend:
    check_macos(manifest)
    ct = require("coremltools", "coreml artifacts", NEEDS)
    units = (opt.provider or "ALL").upper()
    if units not in ct.ComputeUnit.__members__:
        raise BadInput(f"unknown Core ML compute units {units!r}; accepted: {', '.join(ct.ComputeUnit.__members__)}")
    model = ct.models.MLModel(str(folder / "model.mlpackage"), compute_units=ct.ComputeUnit[units])
    image_input = (manifest.get("export") or {}).get("spec", {}).get("coreml_input") == "image"
    pre = manifest["preprocess"]
    mean, std = np.asarray(pre["mean"], np.float32), np.asarray(pre["std"], np.float32)

    def as_image(img: np.ndarray):  # (C, H, W) preprocessed -> the 8-bit image the program expects
        Image = pil()
        raw = np.clip(np.rint((img.transpose(1, 2, 0) * std + mean) * 255), 0, 255).astype(np.uint8)
        return Image.fromarray(raw[..., 0] if raw.shape[-1] == 1 else raw)

    def run(x: np.ndarray) -> np.ndarray:
        if image_input:
            return np.stack([np.asarray(model.predict({"input": as_image(img)})["logits"]).reshape(-1) for img in x])
        return np.asarray(model.predict({"input": x})["logits"], dtype=np.float32)

    return Backend(run, {"compute_units": units, "input": "image" if image_input else "tensor"},
                   f"coremltools {ct.__version__} MLModel {units}", {"coremltools": ct.__version__})


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
