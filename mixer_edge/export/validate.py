"""Validation of an artifact against the FP32 PyTorch model (after Optimum's output validation):
compute every agreement figure, compare each with the one tolerance table, collect every failure,
then raise once listing all of them.

Top-1 agreement is a count (k of n images agree), so it is decided on evidence, not on the point
estimate: the exact (Clopper-Pearson) 95% interval of the agreement rate fails the check when it
lies wholly below the threshold, passes it when it lies wholly at or above, and otherwise leaves it
"undecided: too few images" (kept, and said, unless --strict). On 20 images one flipped prediction
(19/20 = 0.95, interval [0.751, 0.999]) cannot show a rate below 0.98, and 20/20 ([0.832, 1]) cannot
show one above: an INT8 artifact once was discarded over that one image. The continuous figures
(max |diff|, cosine, SQNR) are decided on their values.
"""
from __future__ import annotations

import math
from statistics import NormalDist
from dataclasses import dataclass

import numpy as np

from ..errors import ValidationError


@dataclass(frozen=True)
class Tolerance:
    # on logits, in units of max(1, the largest |reference logit|): float32 rounding grows with the
    # logits' size, and a head with large weights (logits near 70) differs by 1.3e-4 in a correct FP32 IR
    max_abs_diff: float | None = None
    top1_agreement: float | None = None   # fraction of images with the same arg-max as FP32
    cosine: float | None = None           # mean per-image cosine similarity of logits


TOLERANCES = {
    "fp32": Tolerance(max_abs_diff=1e-4),
    "fp16": Tolerance(top1_agreement=0.995),
    "int8": Tolerance(top1_agreement=0.98, cosine=0.99),
    # 4-bit weights: sixteen levels per block cost more agreement than int8's 256; the top-1 budget
    # (--max-drop, ACCURACY_BUDGET) is what a user decides on
    "int4": Tolerance(top1_agreement=0.95, cosine=0.98),
}


CONFIDENCE = 0.95   # two-sided: each bound is a one-sided 97.5% bound


def _binom_mass(a: int, b: int, n: int, p: float) -> float:
    """P(a <= X <= b) for X ~ Binomial(n, p), 0 < p < 1, its terms summed in logs."""
    lp, lq, ln = math.log(p), math.log1p(-p), math.lgamma(n + 1)
    terms = [ln - math.lgamma(i + 1) - math.lgamma(n - i + 1) + i * lp + (n - i) * lq for i in range(a, b + 1)]
    if not terms:
        return 0.0
    top = max(terms)
    return math.exp(top) * sum(math.exp(t - top) for t in terms)


def _binom_cdf(k: int, n: int, p: float) -> float:
    """P(X <= k) for X ~ Binomial(n, p), from the shorter of the two sums: agreement counts sit near
    n, where summing from 0 would cost n terms at every bisection step (seconds at n = 50,000)."""
    if k < 0:
        return 0.0
    if k >= n or p <= 0.0:
        return 1.0
    if p >= 1.0:
        return 0.0
    mass = _binom_mass(0, k, n, p) if k < n / 2 else 1.0 - _binom_mass(k + 1, n, n, p)
    return min(1.0, max(0.0, mass))


def _solve(f, lo: float = 0.0, hi: float = 1.0) -> float:
    """The p in [lo, hi] where the decreasing f(p) crosses 0, by bisection to 1e-9."""
    for _ in range(60):
        mid = (lo + hi) / 2
        lo, hi = (mid, hi) if f(mid) > 0 else (lo, mid)
    return (lo + hi) / 2


def rate_interval(k: int, n: int, level: float = CONFIDENCE) -> tuple[float, float]:
    """Clopper-Pearson interval of a rate seen k times in n: the p whose Binomial(n, p) tails at k
    hold (1 - level) / 2 each. (0, 1) when n is 0."""
    if n == 0:
        return 0.0, 1.0
    alpha = (1 - level) / 2
    lo = 0.0 if k == 0 else _solve(lambda p: alpha - (1 - _binom_cdf(k - 1, n, p)))   # P(X >= k) = alpha
    hi = 1.0 if k == n else _solve(lambda p: _binom_cdf(k, n, p) - alpha)
    return lo, hi


def decide_rate(k: int, n: int, threshold: float, level: float = CONFIDENCE) -> dict:
    """passed / failed / undecided for "the rate is at least threshold", on the evidence of k in n."""
    lo, hi = rate_interval(k, n, level)
    decision = "failed" if hi < threshold else "passed" if lo >= threshold else "undecided"
    return {"decision": decision, "k": int(k), "n": int(n), "threshold": threshold,
            "interval": [round(lo, 6), round(hi, 6)], "level": level}


def decide_drop(worse: int, better: int, n: int, budget: float, level: float = CONFIDENCE) -> dict:
    """passed / failed / undecided for "top-1 lost against the reference is at most budget" (a
    fraction), from the paired counts: images only the reference got right (worse) and only the
    artifact got right (better). Agresti-Min interval of a paired difference (half an image added to
    each cell: defined, and not overconfident, when no image differs)."""
    m = n + 2
    p12, p21 = (worse + 0.5) / m, (better + 0.5) / m
    d = p12 - p21
    se = math.sqrt(max(p12 + p21 - d * d, 0.0) / m)
    z = NormalDist().inv_cdf(1 - (1 - level) / 2)
    lo, hi = d - z * se, d + z * se
    decision = "failed" if lo > budget else "passed" if hi <= budget else "undecided"
    return {"decision": decision, "worse": int(worse), "better": int(better), "n": int(n), "budget": budget,
            "interval": [round(lo, 6), round(hi, 6)], "level": level}


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
        "reference_max_abs": float(np.abs(ref).max()) if ref.size else 0.0,
        "mean_abs_diff": float(np.abs(err).mean()) if err.size else 0.0,
        "cosine": float(cos.mean()) if len(cos) else 1.0,
        "top1_agreement": float((ref.argmax(1) == out.argmax(1)).mean()) if len(ref) else 1.0,
        # Signal-to-quantization-noise ratio: top-1 hides small-model quantization error, SQNR does not.
        "sqnr_db": _sqnr_db(ref, err),
    }
    figures["top1_agree"] = int((ref.argmax(1) == out.argmax(1)).sum())
    if labels is not None:
        right, ref_right = out.argmax(1) == labels, ref.argmax(1) == labels
        figures["top1"] = float(right.mean())
        figures["reference_top1"] = float(ref_right.mean())
        # paired counts for the top-1 budget's interval (decide_drop)
        figures["only_reference_right"] = int((ref_right & ~right).sum())
        figures["only_artifact_right"] = int((right & ~ref_right).sum())
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


def agreement_decision(precision: str, figures: dict) -> dict | None:
    """The top-1 agreement check decided on its evidence (decide_rate); None where the precision has
    no agreement threshold."""
    tol = TOLERANCES[precision]
    if tol.top1_agreement is None or not figures["samples"]:
        return None
    k = figures.get("top1_agree", round(figures["top1_agreement"] * figures["samples"]))
    return decide_rate(k, figures["samples"], tol.top1_agreement)


def undecided(precision: str, figures: dict) -> list[str]:
    """The checks the evidence leaves open ("undecided: too few images"), as readable lines."""
    d = agreement_decision(precision, figures)
    if d is None or d["decision"] != "undecided":
        return []
    lo, hi = d["interval"]
    return [f"undecided: too few images: top-1 agreement {d['k']}/{d['n']} = {d['k'] / d['n']:.4f}, whose "
            f"{d['level']:.0%} interval [{lo:.4f}, {hi:.4f}] holds the threshold {d['threshold']}"]


def failures(precision: str, figures: dict) -> list[str]:
    """Every tolerance the figures break, as readable lines (the agreement check only where its
    interval lies wholly below the threshold: agreement_decision)."""
    tol = TOLERANCES[precision]
    out = [] if figures.get("finite", True) else ["the artifact's logits contain NaN or infinity"]
    if figures["samples"] == 0:
        out.append("no validation images: nothing was compared")
    if tol.max_abs_diff is not None and figures["max_abs_diff"] > max_abs_limit(tol, figures):
        scale = max(1.0, figures.get("reference_max_abs", 1.0))
        out.append(f"max |logit diff| {figures['max_abs_diff']:.3g} > {max_abs_limit(tol, figures):.3g} "
                   f"({tol.max_abs_diff:g} x {scale:.3g}, the largest |reference logit| or 1)")
    d = agreement_decision(precision, figures)
    if d is not None and d["decision"] == "failed":
        out.append(f"top-1 agreement {figures['top1_agreement']:.4f} < {tol.top1_agreement} ({d['k']}/{d['n']}, "
                   f"{d['level']:.0%} interval [{d['interval'][0]:.3f}, {d['interval'][1]:.3f}])")
    if tol.cosine is not None and figures["cosine"] < tol.cosine:
        out.append(f"logit cosine {figures['cosine']:.4f} < {tol.cosine}")
    return out


def max_abs_limit(tol: Tolerance, figures: dict) -> float:
    """The largest |logit difference| allowed: tol.max_abs_diff x max(1, largest |reference logit|)."""
    return tol.max_abs_diff * max(1.0, figures.get("reference_max_abs", 1.0))


def tolerance_dict(precision: str) -> dict:
    tol = TOLERANCES[precision]
    out = {k: v for k, v in vars(tol).items() if v is not None}
    if tol.max_abs_diff is not None:
        out["max_abs_diff_scale"] = "x max(1, largest |reference logit|)"
    return out


def raise_if_failed(name: str, precision: str, figures: dict) -> None:
    problems = failures(precision, figures)
    if problems:
        raise ValidationError(f"{name} {precision} artifact failed validation against PyTorch FP32 on "
                              f"{figures['samples']} images: " + "; ".join(problems))


def db_text(value: float | None) -> str:
    """An SQNR figure for people: None is undefined (all-zero reference logits), said so."""
    return "n/a (reference logits all zero)" if value is None else f"{value:.1f} dB"
