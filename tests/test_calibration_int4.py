"""Low-bit weight codes (calibration/int4.py) against hand computations: the grid, the MSE scale
search by brute force, and GPTQ's output error against round-to-nearest measured directly on inputs."""
from __future__ import annotations

import numpy as np
import pytest

from mixer_edge.calibration.int4 import (SCALE_GRID, block_scales, check_block, gptq, layer_block, output_error,
                                         qrange, round_to_nearest)
from mixer_edge.errors import BadInput


def test_the_grids_by_hand():
    assert qrange(4) == (-8, 7) and qrange(8) == (-128, 127)
    assert layer_block(512, 32) == 32 and layer_block(49, 32) == 49 and layer_block(64, 128) == 64
    assert check_block(16) == 16
    for bad in (8, 48, 0):
        with pytest.raises(BadInput, match="power of two"):
            check_block(bad)


def test_block_scale_is_the_brute_force_minimum():
    rng = np.random.default_rng(0)
    w = rng.standard_normal((5, 32)) * np.array([[1.0], [0.1], [3.0], [1e-3], [1.0]])
    w[4, 7] = 25.0                                                   # one outlier
    got = block_scales(w, 4)
    for r in range(len(w)):
        best = None
        for frac in np.linspace(0.5, 1.0, SCALE_GRID):              # the same candidates, one at a time
            s = np.float64(max(np.abs(w[r]).max() * frac, 1e-12) / 7)
            err = float(((np.clip(np.round(w[r] / s), -8, 7) * s - w[r]) ** 2).sum())
            best = (err, s) if best is None or err < best[0] else best
        assert got[r] == pytest.approx(best[1], rel=1e-6)
    assert np.all(got <= np.abs(w).max(axis=1) / 7 * (1 + 1e-6))      # never wider than max |w|


def test_round_to_nearest_codes_and_error():
    rng = np.random.default_rng(1)
    w = rng.standard_normal((16, 64))
    q = round_to_nearest(w, 32)
    assert q.codes.dtype == np.int8 and q.codes.min() >= -8 and q.codes.max() <= 7
    assert q.scales.shape == (16, 2)
    s = np.repeat(q.scales, 32, axis=1)
    inside = np.abs(w) <= 7 * s                                      # not clipped: within half a step
    assert np.all(np.abs(q.dequantize() - w)[inside] <= s[inside] / 2 + 1e-6)


def test_gptq_lowers_the_output_error_on_correlated_inputs():
    """Inputs with strongly correlated columns (what a LayerNorm'd activation looks like): GPTQ's
    output error, computed directly as |X W^T - X Wq^T|^2, is well under round-to-nearest's."""
    rng = np.random.default_rng(2)
    base = rng.standard_normal((2000, 8))
    x = base @ rng.standard_normal((8, 64)) + 0.1 * rng.standard_normal((2000, 64))   # (rows, K) rank ~8
    w = rng.standard_normal((32, 64))
    h = x.T @ x

    def direct(wq):
        return float(((x @ w.T - x @ wq.T) ** 2).sum())

    g, r = gptq(w, h, 32), round_to_nearest(w, 32)
    assert output_error(w, g.dequantize(), h) == pytest.approx(direct(g.dequantize()), rel=1e-6)
    assert direct(g.dequantize()) < direct(r.dequantize()) / 4       # > 6 dB; measured ~15 dB here


def test_gptq_8_bit_and_shapes():
    rng = np.random.default_rng(3)
    w, x = rng.standard_normal((10, 49)), rng.standard_normal((500, 49))
    q = gptq(w, x.T @ x, 49, bits=8)
    assert q.bits == 8 and q.scales.shape == (10, 1) and q.codes.min() >= -128
    assert np.abs(q.dequantize() - w).max() < np.abs(w).max() / 100  # 8 bits: within 1 % of the range
