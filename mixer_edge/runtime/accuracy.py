"""Accuracy of logits against labels, and agreement with a reference model's logits."""
from __future__ import annotations

import numpy as np

from .errors import BadInput

ACCURACY_BUDGET = 0.5   # top-1 points below FP32 a recommended or automatically chosen artifact may lose


def topk_accuracy(logits: np.ndarray, labels: np.ndarray, ks=(1, 5)) -> dict:
    """Fraction of rows whose label is among the k largest logits, for each k (k capped at the class
    count); training, evaluation, export validation and the benchmarks all count top-1 here."""
    if len(logits) != len(labels):
        raise BadInput(f"{len(logits)} predictions for {len(labels)} labels")
    order = np.argsort(-logits, axis=1, kind="stable")
    hits = order == np.asarray(labels)[:, None]
    return {f"top{k}": float(hits[:, :min(k, logits.shape[1])].any(axis=1).mean()) if len(labels) else 0.0
            for k in ks}


def accuracy(logits: np.ndarray, labels) -> dict | None:
    return None if labels is None else {**topk_accuracy(logits, labels), "n": int(len(labels))}


def agreement(reference: np.ndarray, logits: np.ndarray, name: str) -> dict:
    """Top-1 agreement and mean per-image logit cosine against reference logits (N, K)."""
    if reference.shape != logits.shape:
        raise BadInput(f"reference {name} gives logits {reference.shape}, the artifact {logits.shape}")
    ref, out = reference.astype(np.float64), logits.astype(np.float64)
    cos = (ref * out).sum(1) / np.maximum(np.linalg.norm(ref, axis=1) * np.linalg.norm(out, axis=1), 1e-30)
    return {"top1_agreement": float((ref.argmax(1) == out.argmax(1)).mean()), "cosine": float(cos.mean()),
            "max_abs_diff": float(np.abs(out - ref).max()) if ref.size else 0.0, "reference": name}
