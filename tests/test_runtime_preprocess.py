"""runtime/preprocess.py against hand computation: (x / 255 - mean) / std per channel, gray <-> RGB
(repetition; ITU-R 601 luma rounded), Pillow's resize called directly, (N, C, H, W) float32 out; and
the refusals. Training's Preprocess (mixer_edge/data/preprocess.py) computes with this module."""
from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from mixer_edge.data.preprocess import Preprocess
from mixer_edge.runtime.errors import BadInput
from mixer_edge.runtime.preprocess import fit_image, preprocess

RNG = np.random.default_rng(4)


def spec(size=(4, 4), channels=1, mean=(0.5,), std=(0.5,), resize="bilinear") -> dict:
    return {"size": list(size), "channels": channels, "mean": list(mean), "std": list(std), "resize": resize}


def test_normalization_by_hand():
    images = RNG.integers(0, 256, (3, 4, 4, 3), dtype=np.uint8)
    mean, std = (0.1, 0.2, 0.3), (0.5, 0.25, 2.0)
    x = preprocess(images, spec(channels=3, mean=mean, std=std))
    assert x.dtype == np.float32 and x.shape == (3, 3, 4, 4) and x.flags.c_contiguous
    for c in range(3):
        want = (images[..., c].astype(np.float64) / 255 - mean[c]) / std[c]
        np.testing.assert_allclose(x[:, c], want, rtol=0, atol=1e-6)


def test_channel_conversion_by_hand():
    rgb = RNG.integers(0, 256, (2, 4, 4, 3), dtype=np.uint8)
    gray = preprocess(rgb, spec(mean=(0.0,), std=(1.0,)))[:, 0] * 255
    luma = np.clip(np.rint(rgb.astype(np.float64) @ [0.299, 0.587, 0.114]), 0, 255)
    np.testing.assert_allclose(gray, luma, atol=1e-3)
    one = RNG.integers(0, 256, (2, 4, 4), dtype=np.uint8)    # (N, H, W): one channel
    three = preprocess(one, spec(channels=3, mean=(0, 0, 0), std=(1, 1, 1)))
    for c in range(3):
        np.testing.assert_allclose(three[:, c] * 255, one, atol=1e-3)


@pytest.mark.parametrize("method, code", [("bilinear", Image.BILINEAR), ("nearest", Image.NEAREST),
                                          ("bicubic", Image.BICUBIC)])
def test_resize_is_pillows_resize(method, code):
    img = RNG.integers(0, 256, (13, 9), dtype=np.uint8)
    want = np.asarray(Image.fromarray(img).resize((6, 5), code))    # Pillow takes (W, H)
    got = fit_image(img, spec(size=(5, 6), resize=method))
    assert got.shape == (5, 6, 1) and np.array_equal(got[..., 0], want)
    x = preprocess([img, img], spec(size=(5, 6), resize=method, mean=(0,), std=(1,)))   # different size: one by one
    np.testing.assert_allclose(x[:, 0] * 255, np.stack([want, want]), atol=1e-3)


def test_empty_batch_and_the_host_preprocess_agree():
    assert preprocess(np.zeros((0, 4, 4, 1), np.uint8), spec()).shape == (0, 1, 4, 4)
    assert preprocess([], spec()).shape == (0, 1, 4, 4)
    p = Preprocess(size=(4, 4), channels=1)
    images = RNG.integers(0, 256, (2, 4, 4, 1), dtype=np.uint8)
    assert np.array_equal(p(images), preprocess(images, p.to_dict()))   # the host's spec, the runtime's arithmetic


@pytest.mark.parametrize("images, sp, message", [
    (np.zeros((1, 4, 4, 1), np.float32), spec(size=(2, 2)), "raw images must be uint8"),
    ([np.zeros((2, 2, 2, 2), np.uint8)], spec(size=(3, 3)), r"an image must be \(H, W\) or \(H, W, C\)"),
    (np.zeros((1, 4, 4, 4), np.uint8), spec(), "images with 4 channels cannot be converted to the model's 1"),
    (np.zeros((1, 4, 4, 1), np.uint8), spec(channels=2), "is not supported: channels 1 or 3"),
    (np.zeros((1, 4, 4, 1), np.uint8), spec(resize="lanczos"), "is not supported"),
])
def test_refusals_name_what_arrived(images, sp, message):
    with pytest.raises(BadInput, match=message):
        preprocess(images, sp)
