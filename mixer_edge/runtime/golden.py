"""The golden set: does this device compute what was validated at export?

Every artifact carries golden.npz (hashed in its manifest): real validation images, raw when the
export had them, with the FP32 PyTorch logits and the artifact's own logits at export. Before
timing or answering, the runtime runs them here and compares (device_check).
"""
from __future__ import annotations

import numpy as np

from .artifact import listed
from .batching import run_batched
from .preprocess import preprocess

GOLDEN = "golden.npz"
GOLDEN_N = 32
# The check: logit SQNR against FP32 PyTorch on the golden images of at least
# min(floor, SQNR the artifact reached at export - margin). The floor is what any correct artifact
# of the precision reaches (fp32: arithmetic order only; fp16: half rounding; int8: quantization);
# the margin allows another runtime's kernels (TensorRT on a GPU, Core ML on the Neural Engine).
GOLDEN_FLOOR_DB = {"fp32": 60.0, "fp16": 35.0, "int8": 20.0}
GOLDEN_MARGIN_DB = 6.0


def golden_threshold(precision: str, built_sqnr_db: float | None) -> float:
    floor = GOLDEN_FLOOR_DB[precision]
    return floor if built_sqnr_db is None else min(floor, built_sqnr_db - GOLDEN_MARGIN_DB)


def sqnr_db(reference: np.ndarray, logits: np.ndarray) -> float:
    ref, out = reference.astype(np.float64), logits.astype(np.float64)
    if not np.all(np.isfinite(out)):
        return float("-inf")
    return float(10 * np.log10(max((ref ** 2).sum(), 1e-30) / max(((out - ref) ** 2).sum(), 1e-30)))


def device_check(folder, manifest: dict, run, fixed_batch: int | None = None) -> dict:
    """Run the golden images (raw, through the manifest's preprocessing, when the export had them)
    and compare with the reference logits recorded at export: {"status": passed | failed | skipped,
    figures, threshold}. The golden file is one of the manifest's hashed files."""
    section = manifest.get("golden")
    if not isinstance(section, dict):
        return {"status": "skipped", "reason": "the artifact has no golden set (exported before mixer-edge 0.2)"}
    with np.load(listed(folder, manifest, section["file"]), allow_pickle=False) as z:
        g = {k: z[k] for k in z.files}
    x = preprocess(g["raw"], manifest["preprocess"]) if "raw" in g else g["x"]
    logits = run_batched(run, x, GOLDEN_N, fixed_batch)
    figures = {"n": int(len(x)), "input": "raw images" if "raw" in g else "preprocessed tensors",
               "sqnr_db": round(sqnr_db(g["reference"], logits), 2),
               "top1_agreement": round(float((logits.argmax(1) == g["reference"].argmax(1)).mean()), 4),
               "threshold_sqnr_db": section["threshold_sqnr_db"]}
    if "artifact" in g:
        figures["sqnr_db_vs_export"] = round(sqnr_db(g["artifact"], logits), 2)
    ok = figures["sqnr_db"] >= section["threshold_sqnr_db"]
    return {"status": "passed" if ok else "failed", **figures,
            **({} if ok else {"reason": f"logit SQNR {figures['sqnr_db']} dB against FP32 PyTorch on the "
                                        f"{len(x)} golden images is below {section['threshold_sqnr_db']} dB: this "
                                        f"device does not compute what was validated at export"})}
