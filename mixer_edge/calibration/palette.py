"""Palettized weights: each weight matrix stored as n-bit indices into one table of 2^n float16
values (a look-up table, LUT), the form Core ML's `constexpr_lut_to_dense` decompresses and
coremltools' PostTrainingPalettizer writes. Pure numpy; which layers get how many bits is
export/int4_palette.py.

The table. k-means of the layer's weights (the table coremltools fits), then refitted to the
layer's output error: given which entry each weight uses, the 2^n values minimising
trace((W - Wq) H (W - Wq)^T) solve a 2^n x 2^n linear system (H = X^T X of the layer's inputs).

The rounding. As calibration/int4.gptq: columns one at a time, each weight to its nearest table
entry, the column's error moved onto the columns not yet rounded through the inverse Hessian's
Cholesky factor. Table and rounding alternate for ROUNDS rounds; the round with the least output
error is kept. Table values are float16 throughout, so the program holds exactly what is rounded to.

Why not a scale per block (calibration/int4.py): a per-tensor table costs 2^n values per layer
where blocks cost one scale per 32 weights (an eighth of a bit per weight); at equal file size the
table is what fits (docs/quantization.md, "4-bit weights", Core ML).
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .int4 import DAMP, gptq_start, output_error

ROUNDS = 3                 # table refit / GPTQ rounds; the round with the least output error is kept
KMEANS_ITERS = 30
ROWS = 64                  # refit's rows per chunk


@dataclass(frozen=True)
class Palette:
    """One layer's palettized weight: indices (N, K) uint8 in [0, 2^bits) and lut (2^bits,) float32
    holding float16 values."""
    indices: np.ndarray
    lut: np.ndarray
    bits: int

    def dequantize(self) -> np.ndarray:
        """(N, K) float32: each index's table value."""
        return self.lut[self.indices].astype(np.float32)


def nbytes(numel: int, bits: int) -> int:
    """Bytes a palettized weight of `numel` values takes in a program: packed indices and a float16 table."""
    return -(-numel * bits // 8) + 2 * 2 ** bits


def kmeans(w: np.ndarray, levels: int, iters: int = KMEANS_ITERS) -> np.ndarray:
    """1-D k-means of w's values, started from evenly spaced quantiles. Returns (levels,) sorted."""
    v = np.sort(np.asarray(w, np.float64).ravel())
    c = np.quantile(v, (np.arange(levels) + 0.5) / levels)
    for _ in range(iters):
        edges = (c[1:] + c[:-1]) / 2                                    # sorted values: nearest by bisection
        idx = np.searchsorted(edges, v)
        sums = np.bincount(idx, v, minlength=levels)
        counts = np.bincount(idx, minlength=levels)
        new = np.where(counts > 0, sums / np.maximum(counts, 1), c)
        if np.allclose(new, c):
            break
        c = np.sort(new)
    return c


def nearest(v: np.ndarray, lut: np.ndarray) -> np.ndarray:
    """Index of each value's nearest entry of a sorted table."""
    edges = (lut[1:] + lut[:-1]) / 2
    return np.searchsorted(edges, v)


def gptq_round(w: np.ndarray, hessian: np.ndarray, lut: np.ndarray, damp: float = DAMP) -> np.ndarray:
    """GPTQ's indices of w (N, K) into a sorted table lut, given H = X^T X (K, K). Returns (N, K) uint8."""
    w, u = gptq_start(w, hessian, damp)                                 # (N, K) updated in place; (K, K)
    n, k = w.shape
    idx = np.zeros((n, k), np.uint8)
    for i in range(k):
        q = nearest(w[:, i], lut)                                       # (N,)
        idx[:, i] = q
        err = (w[:, i] - lut[q]) / u[i, i]                              # (N,)
        w[:, i + 1:] -= np.outer(err, u[i, i + 1:])
    return idx


def refit(w: np.ndarray, hessian: np.ndarray, idx: np.ndarray, levels: int) -> np.ndarray:
    """The table values minimising trace((W - lut[idx]) H (W - lut[idx])^T) for fixed indices:
    A lut = b with A_ij = sum_n m_i(n) H m_j(n)^T and b_i = sum_n m_i(n) H w(n)^T, m_i(n) the 0/1
    mask of row n's weights that use entry i. An entry no weight uses keeps A's regularised zero row."""
    w = np.asarray(w, np.float64)
    h = np.asarray(hessian, np.float64)
    b = np.bincount(idx.ravel(), (w @ h).ravel(), minlength=levels)    # (L,)
    a = np.zeros((levels, levels))
    for r in range(0, len(w), ROWS):                                    # rows in chunks: (rows, K, L) at most
        onehot = np.eye(levels)[idx[r:r + ROWS]]                        # (rows, K, L)
        a += np.einsum("nkl,km,nmj->lj", onehot, h, onehot, optimize=True)
    a[np.diag_indices(levels)] += 1e-9 * max(np.trace(a) / levels, 1e-30)
    return np.linalg.solve(a, b)


def palettize(w: np.ndarray, hessian: np.ndarray | None, bits: int, rounds: int = ROUNDS) -> Palette:
    """w (N, K) as a 2^bits-entry palette: k-means table and nearest indices without a Hessian
    (what coremltools' PostTrainingPalettizer does); with one, GPTQ rounding and table refits."""
    levels = 2 ** bits
    w = np.asarray(w, np.float64)
    lut = np.asarray(kmeans(w, levels), np.float16).astype(np.float64)   # sorted
    if hessian is None:
        return Palette(nearest(w, lut).astype(np.uint8), lut.astype(np.float32), bits)
    best = None
    for _ in range(rounds):
        idx = gptq_round(w, hessian, lut)
        raw = refit(w, hessian, idx, levels)                            # (L,) by entry, no longer sorted
        order = np.argsort(raw, kind="stable")                          # sorted position -> entry
        remap = np.empty(levels, np.int64)
        remap[order] = np.arange(levels)                                # entry -> sorted position
        idx = remap[idx].astype(np.uint8)
        fitted = np.asarray(raw[order], np.float16).astype(np.float64)  # float16 keeps the order
        err = output_error(w, fitted[idx], hessian)
        if best is None or err < best[0]:
            best = (err, idx, fitted)
        lut = fitted
    return Palette(best[1], best[2].astype(np.float32), bits)
