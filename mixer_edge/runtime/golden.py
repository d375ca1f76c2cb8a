"""The golden set: does this device compute what was validated at export?

Every artifact carries golden.npz (hashed in its manifest): real validation images, raw when the
export had them, with the FP32 PyTorch logits and the artifact's own logits at export. Before
timing or answering, the runtime runs them here and compares (device_check).
"""
from __future__ import annotations

import numpy as np

from .artifact import listed
from .batching import run_batched
from .claims import GOLDEN_FLOOR_DB, GOLDEN_MARGIN_DB, golden_threshold, sqnr_db
from .preprocess import preprocess

GOLDEN = "golden.npz"
GOLDEN_N = 32
# The threshold rule (GOLDEN_FLOOR_DB, GOLDEN_MARGIN_DB, golden_threshold) lives in claims.py, which
# re-derives every artifact's threshold from its golden.npz when the artifact is read; named here too.
__all__ = ["GOLDEN", "GOLDEN_FLOOR_DB", "GOLDEN_MARGIN_DB", "GOLDEN_N", "device_check", "golden_threshold",
           "sqnr_db"]


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
