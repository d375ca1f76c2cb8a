"""runtime/batching.py: a runner over many images, in batches, a fixed-batch model given exactly
its batch (the last one padded, the padding's answers dropped)."""
from __future__ import annotations

import numpy as np

from mixer_edge.runtime.batching import run_batched, tile
from mixer_edge.runtime.streaming import Batches


def test_tile_repeats_the_first_images():
    x = np.arange(3)[:, None]
    assert tile(x, 2).ravel().tolist() == [0, 1] and tile(x, 7).ravel().tolist() == [0, 1, 2, 0, 1, 2, 0]


def test_dynamic_batches_cover_every_image_once():
    x = np.arange(10, dtype=np.float32)[:, None]
    seen = []

    def run(b):
        seen.append(len(b))
        return np.concatenate([b, -b], 1)      # (n, 2): a "logit" that names its image

    out = run_batched(run, x, batch=4)
    assert seen == [4, 4, 2] and out.dtype == np.float32 and out[:, 0].tolist() == list(range(10))


def test_a_fixed_batch_model_gets_its_batch_and_padding_is_dropped():
    x = np.arange(10, dtype=np.float32)[:, None]
    seen = []

    def run(b):
        assert len(b) == 4
        seen.append(b[:, 0].tolist())
        return b * 10

    out = run_batched(run, Batches(x, lambda part: np.asarray(part)), batch=64, fixed_batch=4)
    assert out[:, 0].tolist() == [10 * i for i in range(10)]
    assert seen[-1] == [8, 9, 0, 1]     # the last batch padded with the first images
