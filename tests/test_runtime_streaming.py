"""runtime/streaming.py: image files that stand for their decoded array (indexing, lazy subsets,
one decode at a time), the size rule that chooses streaming, the threshold's override, and model
inputs made a batch at a time above it. Whole-flow parity (training, export, benchmarks on a
streamed folder) is tests/test_streaming.py."""
from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from mixer_edge.runtime import images, streaming
from mixer_edge.runtime.errors import BadInput
from mixer_edge.runtime.streaming import (STREAM_ENV, Batches, ImageFiles, decoded_or_streamed, model_inputs,
                                          stream_above_mb, streams)


@pytest.fixture
def pngs(tmp_path):
    paths = []
    for i in range(6):
        paths.append(tmp_path / f"{i}.png")
        Image.fromarray(np.full((4, 5), i * 40, np.uint8)).save(paths[-1])
    return paths


@pytest.fixture
def decodes(monkeypatch):
    count = []
    real = images.read_image
    monkeypatch.setattr(images, "read_image", lambda p: count.append(p) or real(p))
    return count


def test_image_files_index_like_the_array(pngs, decodes):
    files = ImageFiles(pngs)
    eager = np.stack([images.read_image(p) for p in pngs])
    decodes.clear()
    assert len(files) == 6 and repr(files) == "ImageFiles(6 files)"
    assert np.array_equal(files[2], eager[2]) and len(decodes) == 1
    sub = files[np.array([5, 0])]
    assert isinstance(sub, ImageFiles) and len(decodes) == 1          # a lazy subset: nothing decoded
    assert np.array_equal(np.stack(list(sub)), eager[[5, 0]]) and len(decodes) == 3
    assert isinstance(files[1:3], ImageFiles) and len(files[np.zeros(6, bool)]) == 0
    assert [p.endswith("4.png") for p in files[np.arange(6) == 4].paths] == [True]   # a boolean mask
    with pytest.raises(BadInput, match="indexed by an int, a slice or a 1-d index array"):
        files[np.zeros((2, 2), int)]


def test_streaming_is_chosen_by_the_estimated_size(pngs, monkeypatch):
    files = ImageFiles(pngs)    # 6 images of 4 x 5 x 1 bytes = 120 bytes
    monkeypatch.setattr(streaming, "STREAM_ABOVE_MB", 120 / 2 ** 20)
    assert not streams(files) and isinstance(decoded_or_streamed(files), np.ndarray)
    monkeypatch.setattr(streaming, "STREAM_ABOVE_MB", 119 / 2 ** 20)
    assert streams(files) and decoded_or_streamed(files) is files


@pytest.mark.parametrize("text, value", [(None, 256), ("0", 0.0), ("12.5", 12.5)])
def test_threshold_and_its_override(monkeypatch, text, value):
    if text is None:
        monkeypatch.delenv(STREAM_ENV, raising=False)
    else:
        monkeypatch.setenv(STREAM_ENV, text)
    assert stream_above_mb() == value


@pytest.mark.parametrize("text", ["lots", "-1", "nan"])
def test_a_bad_override_is_refused(monkeypatch, text):
    monkeypatch.setenv(STREAM_ENV, text)
    with pytest.raises(BadInput, match=f"{STREAM_ENV}='{text}' is not a size"):
        stream_above_mb()


def test_model_inputs_held_or_made_a_batch_at_a_time(monkeypatch):
    raw = np.arange(10 * 4, dtype=np.float32).reshape(10, 1, 2, 2)
    prepare = lambda part: np.asarray(part) * 2   # noqa: E731
    monkeypatch.setenv(STREAM_ENV, "1")
    held = model_inputs(raw, prepare)
    assert isinstance(held, np.ndarray) and np.array_equal(held, raw * 2)
    monkeypatch.setenv(STREAM_ENV, "0")
    lazy = model_inputs(raw, prepare)
    assert isinstance(lazy, Batches) and len(lazy) == 10 and np.array_equal(lazy[3:7], raw[3:7] * 2)
    with pytest.raises(BadInput, match="taken by slices"):
        lazy[3]
    assert isinstance(model_inputs(raw[:0], prepare), np.ndarray)   # nothing to estimate: held (empty)


@pytest.mark.parametrize("stream", [False, True])
def test_unreadable_files_left_out_when_asked_held_or_streamed(pngs, monkeypatch, stream):
    """--skip-bad: a zero-byte .jpg first and a corrupt file later are left out and listed, held or
    streamed alike (a streamed folder is decoded once up front to find them); without it the first
    stops the read, naming the file."""
    empty = pngs[0].parent / "0-empty.jpg"
    empty.write_bytes(b"")
    corrupt = pngs[0].parent / "3-cut.png"
    corrupt.write_bytes(pngs[3].read_bytes()[:40])
    files = ImageFiles([empty, *pngs[:3], corrupt, *pngs[3:]])
    monkeypatch.setattr(streaming, "STREAM_ABOVE_MB", 0 if stream else 256)
    bad = []
    got = decoded_or_streamed(files, bad=bad)
    assert isinstance(got, ImageFiles) == stream
    assert [b[0] for b in bad] == [str(empty), str(corrupt)] and len(got) == 6
    assert np.array_equal(np.stack(list(got)), np.stack([images.read_image(p) for p in pngs]))
    if not stream:
        with pytest.raises(BadInput, match=f"cannot read image {empty}"):
            decoded_or_streamed(files)
