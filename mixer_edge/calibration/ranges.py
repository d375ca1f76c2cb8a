"""Activation range estimators shared by every target: tensor statistics -> the (lo, hi) an int8
quantizer maps onto its grid. Pure numpy; which method is the default, and why, is in
docs/quantization.md.

Statistics are one signed histogram per tensor over [-amax, amax] (amax = max |x| over the
calibration images), so one pass of statistics serves symmetric targets (TensorRT, OpenVINO: zero
point 0, one-sided inputs recentred) and asymmetric ones (ONNX Runtime: GELU outputs are one-sided)
alike.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..errors import unknown

HIST_BINS = 4096               # signed bins over [-amax, amax]: 2048 per side, TensorRT's |x| histogram size
ENTROPY_QUANT_BINS = 128       # TensorRT's entropy calibration: |x| requantized into 128 levels
PERCENTILE = 99.99
MSE_GRID = 64                  # candidate clip points per side searched by the MSE estimator


@dataclass(frozen=True)
class TensorStats:
    lo: float                  # min x
    hi: float                  # max x
    hist: np.ndarray           # HIST_BINS counts of x over [-amax, amax]

    @property
    def amax(self) -> float:
        return max(abs(self.lo), abs(self.hi))

    def edges(self) -> np.ndarray:
        return np.linspace(-self.amax, self.amax, len(self.hist) + 1)

    def centers(self) -> np.ndarray:
        e = self.edges()
        return (e[:-1] + e[1:]) / 2

    def abs_hist(self) -> np.ndarray:
        """Counts of |x| over [0, amax] (len(hist) / 2 bins)."""
        half = len(self.hist) // 2
        return self.hist[half:] + self.hist[:half][::-1]


def collect(batches, bins: int = HIST_BINS) -> dict[str, TensorStats]:
    """Statistics of named tensors from a re-callable generator of {name: array} per batch: one
    pass for each tensor's range, one for its histogram over that range, so memory stays one
    batch of activations. The one collector behind the ONNX graph's and PyTorch's statistics."""
    lo: dict[str, float] = {}
    hi: dict[str, float] = {}
    for outs in batches():
        for n, v in outs.items():
            if v.size:
                lo[n], hi[n] = min(lo.get(n, np.inf), float(v.min())), max(hi.get(n, -np.inf), float(v.max()))
            else:
                lo.setdefault(n, 0.0), hi.setdefault(n, 0.0)
    hist = {n: np.zeros(bins, np.int64) for n in lo}
    for outs in batches():
        for n, v in outs.items():
            a = max(abs(lo[n]), abs(hi[n]), 1e-30)
            hist[n] += np.histogram(v, bins=bins, range=(-a, a))[0]
    return {n: TensorStats(lo[n], hi[n], hist[n]) for n in lo}


def from_array(x: np.ndarray, bins: int = HIST_BINS) -> TensorStats:
    return collect(lambda: [{"x": np.asarray(x, np.float64)}], bins)["x"]


# ---- estimators: TensorStats -> (lo, hi) -------------------------------------------------------------

def minmax(st: TensorStats, symmetric: bool) -> tuple[float, float]:
    return (-st.amax, st.amax) if symmetric else (st.lo, st.hi)


def percentile(st: TensorStats, symmetric: bool, pct: float = PERCENTILE) -> tuple[float, float]:
    """The pct-th percentile of |x| (symmetric) or the (100-pct, pct) percentiles of x, read off
    the histogram at bin edges."""
    if st.amax == 0 or st.hist.sum() == 0:
        return minmax(st, symmetric)
    if symmetric:
        a = _quantile_edge(st.abs_hist(), pct / 100, st.amax / (len(st.hist) // 2), 0.0)
        return -a, a
    edges, step = st.edges(), 2 * st.amax / len(st.hist)
    hi = _quantile_edge(st.hist, pct / 100, step, edges[0])
    lo = edges[-1] - _quantile_edge(st.hist[::-1], pct / 100, step, 0.0)
    return max(lo, st.lo), min(hi, st.hi)


def _quantile_edge(hist: np.ndarray, q: float, step: float, start: float) -> float:
    cdf = np.cumsum(hist) / hist.sum()
    i = int(np.searchsorted(cdf, q))
    return start + min(i + 1, len(hist)) * step


def entropy(st: TensorStats, symmetric: bool, quant_bins: int = ENTROPY_QUANT_BINS) -> tuple[float, float]:
    """TensorRT's entropy calibration on |x|: the threshold whose clipped distribution P (outliers
    folded into the last bin) loses least information, KL(P || Q), when requantized into
    quant_bins levels. Symmetric by construction; asymmetric targets get the same threshold
    intersected with the observed [lo, hi]."""
    hist = st.abs_hist().astype(np.float64)
    n = len(hist)
    if hist.sum() == 0 or st.amax == 0:
        return minmax(st, symmetric)
    best_i, best_kl = n, np.inf
    nonzero = (hist > 0).astype(np.float64)
    tail = np.concatenate([np.cumsum(hist[::-1])[::-1], [0.0]])   # tail[i] = hist[i:].sum()
    for i in range(quant_bins, n + 1):
        p = hist[:i].copy()
        p[-1] += tail[i]
        starts = np.arange(quant_bins) * i // quant_bins
        mass = np.add.reduceat(hist[:i], starts)
        count = np.add.reduceat(nonzero[:i], starts)
        q = np.repeat(mass / np.maximum(count, 1), np.diff(np.append(starts, i))) * nonzero[:i]
        kl = _kl(p, q)
        if kl < best_kl:
            best_i, best_kl = i, kl
    a = best_i * st.amax / n
    return (-a, a) if symmetric else (max(-a, st.lo), min(a, st.hi))


def _kl(p: np.ndarray, q: np.ndarray) -> float:
    p, q = p / p.sum(), q / max(q.sum(), 1e-30)
    m = p > 0
    return float(np.sum(p[m] * np.log(p[m] / np.maximum(q[m], 1e-12))))


def mse(st: TensorStats, symmetric: bool, grid: int = MSE_GRID) -> tuple[float, float]:
    """The clip range whose int8 grid gives the least expected squared error over the histogram:
    rounding noise (step^2 / 12) inside the range, the distance to the edge outside it. Searches
    each end over `grid` candidates between 5% and 100% of the observed value."""
    if st.amax == 0 or st.hist.sum() == 0:
        return minmax(st, symmetric)
    c, w = st.centers(), st.hist.astype(np.float64)
    keep = w > 0
    c, w = c[keep], w[keep]
    frac = np.linspace(0.05, 1.0, grid)
    if symmetric:
        a = frac * st.amax                                          # (G,)
        err = _grid_error(c, w, -a[:, None], a[:, None], 254)
        best = a[int(np.argmin(err))]
        return -best, best
    his = frac * max(st.hi, 0.0)
    los = frac * min(st.lo, 0.0)
    lo, hi = np.meshgrid(los, his, indexing="ij")                   # (G, G)
    err = _grid_error(c, w, lo.reshape(-1, 1), hi.reshape(-1, 1), 255)
    k = int(np.argmin(err))
    return float(lo.reshape(-1)[k]), float(hi.reshape(-1)[k])


def _grid_error(c, w, lo, hi, steps: int) -> np.ndarray:
    """Expected squared error of quantizing values c (weights w) onto `steps` intervals of [lo, hi]
    for each candidate row of lo / hi: (G, 1) against (B,) -> (G,)."""
    step = np.maximum(hi - lo, 1e-30) / steps
    clipped = np.clip(c, lo, hi)
    err = (c - clipped) ** 2 + np.where(c == clipped, step ** 2 / 12, 0.0)
    return (err * w).sum(axis=1)


METHODS = {"minmax": minmax, "percentile": percentile, "entropy": entropy, "mse": mse}
DEFAULT_METHOD = "mse"         # measured: docs/quantization.md, benchmarks/RESULTS.md section 5


def method(name: str | None):
    """(name, estimator) for a method name; None means the default."""
    name = name or DEFAULT_METHOD
    if name not in METHODS:
        raise unknown("calibration method", name, METHODS)
    return name, METHODS[name]


def describe(name: str) -> str:
    return {"minmax": "min / max of x", "percentile": f"{PERCENTILE}th percentile",
            "entropy": f"TensorRT KL search, {HIST_BINS // 2} |x| bins -> {ENTROPY_QUANT_BINS}",
            "mse": f"least expected squared int8 error over the histogram, {MSE_GRID} clip points a side"}[name]
