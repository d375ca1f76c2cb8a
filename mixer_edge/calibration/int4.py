"""Low-bit weights: block-wise symmetric int4 (or int8) codes for a weight matrix, rounded by GPTQ
against the layer's calibration inputs. Pure numpy; which layers, and how each target stores the codes, is
export/int4.py; the measurements behind the defaults are in docs/quantization.md.

The grid. A weight W (N outputs, K inputs) is cut along K into blocks of BLOCK inputs; each (output,
block) has one float scale s and codes q in [-8, 7], W ~ q * s (8-bit layers: [-128, 127], one
block per row). Symmetric (zero point 0) because
that is the one int4 form every target takes: ONNX DequantizeLinear with block_size (ONNX Runtime
fuses it into MatMulNBits), OpenVINO's int4 constants, TensorRT 10's int4 weight Q/DQ, Core ML's
per-block linear_symmetric.

The scale. For each (output, block) the clip point among SCALE_GRID candidates between 50 % and
100 % of max |w| whose rounding gives the least squared error (round-to-nearest alone clips nothing:
one large weight then coarsens the whole block).

The rounding. Round-to-nearest minimises each weight's error, not the layer's output error. GPTQ
(Frantar et al. 2023) quantizes the columns of W one at a time and moves each column's rounding
error onto the columns not yet quantized, weighted by the inverse Hessian of the layer's squared
output error, H = X^T X over calibration inputs X (rows: tokens of the calibration images). A block's
scale is chosen when GPTQ reaches its first column, from the weights as they are by then.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..errors import BadInput

BLOCK = 32                 # inputs per scale: measured against 64 and 128 (docs/quantization.md)
SCALE_GRID = 20            # clip candidates per (output, block)
DAMP = 0.01                # GPTQ's dampening: this fraction of the mean diagonal added to H


def layer_block(k: int, block: int) -> int:
    """The block a layer with k inputs gets: `block` where it divides k, else k (one scale per output
    row): OpenVINO's ONNX frontend refuses a blocked DequantizeLinear whose blocks do not tile the
    inputs, and token mixing's k is the token count (49 at 28x28 / 4, 196 at 224 / 16)."""
    return block if k % block == 0 else k


def qrange(bits: int) -> tuple[int, int]:
    """Symmetric signed grid of a bit width: 4 -> (-8, 7), 8 -> (-128, 127)."""
    return -(2 ** (bits - 1)), 2 ** (bits - 1) - 1


@dataclass(frozen=True)
class WeightCodes:
    """One layer's low-bit weight: codes (N, K) int8 in qrange(bits) and scales (N, K / block)."""
    codes: np.ndarray
    scales: np.ndarray
    block: int
    bits: int = 4

    def dequantize(self) -> np.ndarray:
        """(N, K) float32: codes times their block's scale."""
        k = self.codes.shape[1]
        s = np.repeat(self.scales, self.block, axis=1)[:, :k]      # (N, K)
        return (self.codes.astype(np.float32) * s).astype(np.float32)


def check_block(block: int) -> int:
    if block < 16 or block & (block - 1):
        raise BadInput(f"int4 block size must be a power of two >= 16 (what ONNX Runtime's MatMulNBits and "
                       f"Core ML's per-block int4 take), got {block}")
    return block


def block_scales(w: np.ndarray, bits: int = 4, grid: int = SCALE_GRID) -> np.ndarray:
    """Per row of w (N, B) the symmetric scale whose clip point gives the least squared rounding
    error, among `grid` candidates from 50 % to 100 % of the row's max |w|. Returns (N,) float32."""
    qmin, qmax = qrange(bits)
    amax = np.abs(w).max(axis=1)                                        # (N,)
    fracs = np.linspace(0.5, 1.0, grid)                                 # (G,)
    s = np.maximum(amax[None, :] * fracs[:, None], 1e-12) / qmax         # (G, N)
    q = np.clip(np.round(w[None] / s[..., None]), qmin, qmax)           # (G, N, B)
    err = ((q * s[..., None] - w[None]) ** 2).sum(axis=2)               # (G, N)
    return s[np.argmin(err, axis=0), np.arange(len(amax))].astype(np.float32)


def round_to_nearest(w: np.ndarray, block: int = BLOCK, bits: int = 4) -> WeightCodes:
    """Every block's MSE scale, each weight rounded to its nearest code: no calibration data."""
    w = np.asarray(w, np.float64)
    n, k = w.shape
    scales = np.stack([block_scales(w[:, j:j + block], bits) for j in range(0, k, block)], axis=1)   # (N, nb)
    s = np.repeat(scales.astype(np.float64), block, axis=1)[:, :k]
    return WeightCodes(np.clip(np.round(w / s), *qrange(bits)).astype(np.int8), scales, block, bits)


def gptq_start(w: np.ndarray, hessian: np.ndarray, damp: float = DAMP) -> tuple[np.ndarray, np.ndarray]:
    """(a float64 copy of w (N, K) to update in place, U (K, K)): what GPTQ rounds against, for any grid
    (this module's blocks, calibration/palette.py's tables). U is the upper Cholesky factor of the
    dampened H^-1; row i holds how column i's error spreads onto columns > i. Inputs never nonzero
    carry no information: their weights are zeroed and their diagonal set to 1."""
    w = np.array(w, np.float64)
    h = np.array(hessian, np.float64)
    dead = np.diag(h) == 0
    h[dead, dead] = 1.0
    w[:, dead] = 0.0
    h[np.diag_indices(len(h))] += damp * np.mean(np.diag(h))
    return w, np.linalg.cholesky(np.linalg.inv(h)).T


def gptq(w: np.ndarray, hessian: np.ndarray, block: int = BLOCK, bits: int = 4, damp: float = DAMP) -> WeightCodes:
    """GPTQ's codes for w (N, K) given H = X^T X (K, K) of its inputs. Columns in order; a block's
    scales from its columns as updated when GPTQ reaches it."""
    qmin, qmax = qrange(bits)
    w, u = gptq_start(w, hessian, damp)
    n, k = w.shape
    codes = np.zeros((n, k), np.int8)
    scales = np.zeros((n, -(-k // block)), np.float32)
    for i in range(k):
        b = i // block
        if i % block == 0:
            scales[:, b] = block_scales(w[:, i:i + block], bits)
        s = scales[:, b].astype(np.float64)                            # (N,)
        q = np.clip(np.round(w[:, i] / s), qmin, qmax)                  # (N,)
        codes[:, i] = q
        err = (w[:, i] - q * s) / u[i, i]                               # (N,)
        w[:, i + 1:] -= np.outer(err, u[i, i + 1:])
    return WeightCodes(codes, scales, block, bits)


def output_error(w: np.ndarray, wq: np.ndarray, hessian: np.ndarray) -> float:
    """Squared output error of replacing w by wq on the inputs behind H: trace((W - Wq) H (W - Wq)^T)."""
    d = np.asarray(w, np.float64) - np.asarray(wq, np.float64)         # (N, K)
    return float(np.einsum("nk,kl,nl->", d, np.asarray(hessian, np.float64), d))
