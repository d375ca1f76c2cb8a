"""Validation of an artifact against the FP32 PyTorch model (after Optimum's output validation):
compute every agreement figure, compare each with the one tolerance table, collect every failure,
then raise once listing all of them.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..errors import ValidationError


@dataclass(frozen=True)
class Tolerance:
    max_abs_diff: float | None = None     # on logits
    top1_agreement: float | None = None   # fraction of images with the same arg-max as FP32
    cosine: float | None = None           # mean per-image cosine similarity of logits


TOLERANCES = {
    "fp32": Tolerance(max_abs_diff=1e-4),
    "fp16": Tolerance(top1_agreement=0.995),
    "int8": Tolerance(top1_agreement=0.98, cosine=0.99),
}


def compare(reference: np.ndarray, logits: np.ndarray, labels: np.ndarray | None = None) -> dict:
    """Agreement figures of artifact logits against reference logits, both (N, K)."""
    if reference.shape != logits.shape:
        raise ValidationError(f"artifact output shape {logits.shape} differs from PyTorch's {reference.shape}")
    ref, out = reference.astype(np.float64), logits.astype(np.float64)
    finite = bool(np.all(np.isfinite(out)))
    if not finite:   # NaN > tol is False: without this, all-NaN logits would pass every tolerance
        out = np.nan_to_num(out, nan=0.0, posinf=0.0, neginf=0.0)
    err = out - ref
    cos = _cosines(ref, out)
    figures = {
        "samples": int(len(ref)),
        "finite": finite,
        "max_abs_diff": float(np.abs(err).max()) if err.size else 0.0,
        "mean_abs_diff": float(np.abs(err).mean()) if err.size else 0.0,
        "cosine": float(cos.mean()) if len(cos) else 1.0,
        "top1_agreement": float((ref.argmax(1) == out.argmax(1)).mean()) if len(ref) else 1.0,
        # Signal-to-quantization-noise ratio: top-1 hides small-model quantization error, SQNR does not.
        "sqnr_db": _sqnr_db(ref, err),
    }
    if labels is not None:
        figures["top1"] = float((out.argmax(1) == labels).mean())
        figures["reference_top1"] = float((ref.argmax(1) == labels).mean())
    return figures


def _cosines(ref: np.ndarray, out: np.ndarray) -> np.ndarray:
    """Per-image cosine; two all-zero rows agree exactly (1), one zero row against another does not (0)."""
    norms = np.linalg.norm(ref, axis=1) * np.linalg.norm(out, axis=1)
    both_zero = (np.abs(ref).sum(1) == 0) & (np.abs(out).sum(1) == 0)
    cos = (ref * out).sum(1) / np.maximum(norms, 1e-300)
    return np.where(both_zero, 1.0, cos)


def _sqnr_db(ref: np.ndarray, err: np.ndarray) -> float | None:
    """Signal-to-quantization-noise ratio in dB; None where it is undefined (all-zero reference
    logits, e.g. an untrained zero head). Zero error is capped at the float64 noise floor."""
    signal = float((ref ** 2).sum())
    return None if signal == 0 else float(10 * np.log10(signal / max(float((err ** 2).sum()), 1e-30)))


def failures(precision: str, figures: dict) -> list[str]:
    """Every tolerance the figures break, as readable lines."""
    tol = TOLERANCES[precision]
    out = [] if figures.get("finite", True) else ["the artifact's logits contain NaN or infinity"]
    if figures["samples"] == 0:
        out.append("no validation images: nothing was compared")
    if tol.max_abs_diff is not None and figures["max_abs_diff"] > tol.max_abs_diff:
        out.append(f"max |logit diff| {figures['max_abs_diff']:.3g} > {tol.max_abs_diff:g}")
    if tol.top1_agreement is not None and figures["top1_agreement"] < tol.top1_agreement:
        out.append(f"top-1 agreement {figures['top1_agreement']:.4f} < {tol.top1_agreement}")
    if tol.cosine is not None and figures["cosine"] < tol.cosine:
        out.append(f"logit cosine {figures['cosine']:.4f} < {tol.cosine}")
    return out


def tolerance_dict(precision: str) -> dict:
    tol = TOLERANCES[precision]
    return {k: v for k, v in vars(tol).items() if v is not None}


def raise_if_failed(name: str, precision: str, figures: dict) -> None:
    problems = failures(precision, figures)
    if problems:
        raise ValidationError(f"{name} {precision} artifact failed validation against PyTorch FP32 on "
                              f"{figures['samples']} images: " + "; ".join(problems))


def db_text(value: float | None) -> str:
    """An SQNR figure for people: None is undefined (all-zero reference logits), said so."""
    return "n/a (reference logits all zero)" if value is None else f"{value:.1f} dB"
