"""The golden set every artifact carries: GOLDEN_N real validation images (raw, before
preprocessing, when the validation images came raw), the reference logits on them and the logits
the artifact itself produced when it was validated here, in one hashed golden.npz. The device
runtime (runtime/golden.device_check) runs it before timing, so "validated on the build machine"
becomes "verified on the device it ships to". Threshold and check are the runtime's (one source)."""
from __future__ import annotations

from pathlib import Path

import numpy as np

from ..runtime.golden import GOLDEN, GOLDEN_N, golden_threshold, sqnr_db


def write(folder: Path, val, artifact_logits: np.ndarray | None, precision: str, runner: str | None,
          n: int = GOLDEN_N, reference=None) -> dict:
    """Write folder/golden.npz from the first n validation images; returns the manifest section.
    `reference`: (logits, name) validation compared with (default: the FP32 logits)."""
    n = min(n, len(val.x))
    expected, name = reference if reference is not None else (val.reference, "pytorch-fp32")
    arrays = {"x": np.ascontiguousarray(val.x[:n], np.float32),
              "reference": np.ascontiguousarray(expected[:n], np.float32)}
    raw = _uniform_raw(val.raw, n)
    if raw is not None:
        arrays["raw"] = raw
    built = None
    if artifact_logits is not None:
        arrays["artifact"] = np.ascontiguousarray(artifact_logits[:n], np.float32)
        built = round(sqnr_db(arrays["reference"], arrays["artifact"]), 2)
    with open(folder / GOLDEN, "wb") as f:
        np.savez(f, **arrays)
    return {"file": GOLDEN, "n": n, "data": val.source, "input": "raw" if raw is not None else "preprocessed",
            "reference": name, "built_with": runner, "built_sqnr_db": built,
            "threshold_sqnr_db": round(golden_threshold(precision, built), 2),
            "check": f"logit SQNR against {name} on these images >= threshold_sqnr_db"}


def _uniform_raw(raw, n: int):
    """The first n raw images as one uint8 array (N, H, W, C), or None when there are none or
    their sizes differ (then the device gets the preprocessed tensors)."""
    if raw is None:
        return None
    first = [np.asarray(img) for img in raw[:n]]
    if not first or len({a.shape for a in first}) != 1 or first[0].dtype != np.uint8:
        return None
    return np.stack(first)
