"""runtime/identity.py: content keys against hashlib's BLAKE2b computed here, order-free
fingerprints, packed keys, the seeded class-stratified split (counts, disjointness, independence of
order and path), and the held-out selection."""
from __future__ import annotations

import hashlib

import numpy as np
import pytest

from mixer_edge.runtime.errors import BadInput
from mixer_edge.runtime.identity import (fingerprint, image_keys, pack_keys, select, split_indices, subset,
                                         unpack_keys)
from mixer_edge.runtime.readers import Data

RNG = np.random.default_rng(11)


def test_keys_are_blake2b_of_shape_and_pixels():
    images = RNG.integers(0, 256, (3, 4, 5, 1), dtype=np.uint8)
    for im, key in zip(images, image_keys(images)):
        h = hashlib.blake2b(np.array([4, 5, 1], "<i8").tobytes() + im.tobytes(), digest_size=8)
        assert int(key) == int.from_bytes(h.digest(), "little")
    same_pixels_other_shape = images[0].reshape(5, 4, 1)
    assert image_keys([same_pixels_other_shape])[0] != image_keys(images[:1])[0]


def test_fingerprint_is_order_free_and_keys_pack_round_trip():
    keys = image_keys(RNG.integers(0, 256, (20, 3, 3, 1), dtype=np.uint8))
    assert fingerprint(keys) == fingerprint(keys[::-1]) != fingerprint(keys[1:])
    assert len(fingerprint(keys)) == 16
    assert np.array_equal(unpack_keys(pack_keys(keys[::-1]), "t"), np.unique(keys))
    assert unpack_keys("", "t").size == 0
    with pytest.raises(BadInput, match="where: image keys are not base64"):
        unpack_keys("not base64!", "where")
    with pytest.raises(BadInput, match="hold 3 bytes, not a multiple of 8"):
        unpack_keys("AAAA", "where")


def test_split_counts_are_stratified_disjoint_and_follow_content():
    labels = np.repeat(np.arange(10), 100)                      # 1,000 images, 100 a class
    keys = image_keys(RNG.integers(0, 256, (1000, 2, 2, 1), dtype=np.uint8))
    parts = split_indices(labels, keys)
    assert [len(parts[s]) for s in ("train", "calib", "eval")] == [800, 100, 100]
    assert not set(parts["train"]) & set(parts["eval"]) and not set(parts["calib"]) & set(parts["eval"])
    assert np.bincount(labels[parts["eval"]]).tolist() == [10] * 10    # every class alike
    order = RNG.permutation(1000)                                 # the same images in another order
    shuffled = split_indices(labels[order], keys[order])
    assert set(keys[order][shuffled["eval"]]) == set(keys[parts["eval"]])
    other_seed = split_indices(labels, keys, {"seed": 1, "train": 0.8, "calib": 0.1, "eval": 0.1})
    assert set(other_seed["eval"]) != set(parts["eval"])
    assert {k: len(v) for k, v in split_indices(None, keys[:7]).items()} == {"train": 6, "calib": 1, "eval": 0}


def test_select_holds_out_the_reserved_images():
    images = RNG.integers(0, 256, (6, 2, 2, 1), dtype=np.uint8)
    keys = image_keys(images)
    data = Data(images, np.arange(6), None, "x.npz")
    manifest = {"images": {"reserved": pack_keys(keys[[1, 4]])}}
    part, about = select(data, "held-out", manifest, limit=None)
    assert part.labels.tolist() == [0, 2, 3, 5] and about["n"] == 4 and about["reserved_in_data"] == 2
    assert about["reserved_included"] == 0 and about["fingerprint"] == fingerprint(keys[[0, 2, 3, 5]])
    part, about = select(data, "all", manifest, limit=3)
    assert part.labels.tolist() == [0, 1, 2] and about["reserved_included"] == 1
    with pytest.raises(BadInput, match="every image of 'x.npz' was used in training or calibration"):
        select(data, "held-out", {"images": {"reserved": pack_keys(keys)}}, None)
    with pytest.raises(BadInput, match="unknown image selection 'some'"):
        select(data, "some", manifest, None)


def test_subset_of_mixed_sizes_picks_one_by_one():
    mixed = Data([np.zeros((2, 2, 1), np.uint8), np.ones((3, 3, 1), np.uint8)], np.array([4, 5]), None, "s")
    part = subset(mixed, np.array([1]))
    assert part.images[0].shape == (3, 3, 1) and part.labels.tolist() == [5]
