"""Palettized weights (calibration/palette.py) against independent references: the table refit
against a generic least-squares solve of the same objective, GPTQ's rounding against rounding each
weight to its nearest entry, the byte count by hand."""
from __future__ import annotations

import numpy as np
import pytest

from mixer_edge.calibration.palette import Palette, gptq_round, kmeans, nbytes, nearest, output_error, palettize, refit


def correlated(seed=0, rows=4000, k=48):
    """Layer inputs with correlated, unequally scaled features: where GPTQ's compensation matters."""
    rng = np.random.default_rng(seed)
    mix = rng.standard_normal((k, k)) * 0.3 + np.eye(k)
    x = rng.standard_normal((rows, k)) @ mix * np.linspace(0.2, 3.0, k)
    return x.T @ x


def test_nbytes_by_hand():
    assert nbytes(65536, 4) == 32768 + 32          # half a byte a weight, 16 float16 entries
    assert nbytes(3136, 6) == 2352 + 128
    assert nbytes(5, 3) == 2 + 16                   # 15 bits round up to 2 bytes


def test_kmeans_finds_separated_clusters():
    rng = np.random.default_rng(1)
    centres = np.array([-3.0, -1.0, 0.5, 2.0])
    w = (centres[rng.integers(0, 4, 4000)] + rng.normal(0, 0.05, 4000)).reshape(40, 100)
    np.testing.assert_allclose(kmeans(w, 4), centres, atol=0.02)


def test_refit_solves_the_weighted_least_squares_problem():
    # Reference: with H = L L^T the objective is || (W - sum_l c_l M_l) L ||_F^2, linear in c: lstsq.
    rng = np.random.default_rng(2)
    h = correlated(2, k=24)
    w = rng.standard_normal((30, 24))
    idx = rng.integers(0, 8, w.shape)
    chol = np.linalg.cholesky(h)
    design = np.stack([((idx == l).astype(float) @ chol).ravel() for l in range(8)], axis=1)   # (N*K, 8)
    want = np.linalg.lstsq(design, (w @ chol).ravel(), rcond=None)[0]
    np.testing.assert_allclose(refit(w, h, idx, 8), want, rtol=1e-6, atol=1e-9)


@pytest.mark.parametrize("bits", [3, 4, 6])
def test_palette_is_a_float16_table_and_gptq_beats_nearest(bits):
    rng = np.random.default_rng(3)
    h = correlated(3)
    w = rng.standard_normal((64, 48)) * 0.1
    plain, mine = palettize(w, None, bits), palettize(w, h, bits)
    for p in (plain, mine):
        assert isinstance(p, Palette) and p.lut.shape == (2 ** bits,) and p.indices.max() < 2 ** bits
        np.testing.assert_array_equal(p.lut, p.lut.astype(np.float16).astype(np.float32))   # what the program stores
        np.testing.assert_array_equal(p.dequantize(), p.lut[p.indices])
    # Nearest rounding into k-means' table is the peer's method; on these correlated inputs GPTQ with
    # refits lowers the layer's output error by 1.1 / 1.4 / 2.1 dB at 3 / 4 / 6 bits (measured)
    gain_db = 10 * np.log10(output_error(w, plain.dequantize(), h) / output_error(w, mine.dequantize(), h))
    assert gain_db >= 0.8, gain_db


def test_gptq_round_with_identity_hessian_is_nearest():
    # With uncorrelated, equal inputs there is nothing to compensate: GPTQ rounds to nearest.
    rng = np.random.default_rng(4)
    w = rng.standard_normal((20, 16))
    lut = np.sort(rng.standard_normal(8))
    np.testing.assert_array_equal(gptq_round(w, np.eye(16) * 100.0, lut, damp=0.0), nearest(w, lut))
