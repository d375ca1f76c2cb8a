"""runtime/images.py: one file decoded to uint8 (H, W, C) by its mode, against Pillow's own
conversions; which files of a folder are images; the two folder layouts."""
from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from mixer_edge.runtime.errors import BadInput
from mixer_edge.runtime.images import (class_dirs, folder_files, folder_kind, image_files, imagefolder_files,
                                       images_in, read_image, read_images)

RNG = np.random.default_rng(7)


def save(path, array, mode=None):
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(array, mode).save(path) if mode else Image.fromarray(array).save(path)
    return path


def test_modes_by_pillows_own_conversion(tmp_path):
    rgb = RNG.integers(0, 256, (5, 6, 3), dtype=np.uint8)
    gray = RNG.integers(0, 256, (5, 6), dtype=np.uint8)
    rgba = RNG.integers(0, 256, (5, 6, 4), dtype=np.uint8)
    wide = RNG.integers(0, 65536, (5, 6), dtype=np.uint16)
    assert np.array_equal(read_image(save(tmp_path / "rgb.png", rgb)), rgb)
    assert np.array_equal(read_image(save(tmp_path / "gray.png", gray)), gray[..., None])
    assert np.array_equal(read_image(save(tmp_path / "rgba.png", rgba)), rgba[..., :3])    # alpha dropped
    got = read_image(save(tmp_path / "wide.png", wide))                                    # 16-bit: / 257, rounded
    assert got.shape == (5, 6, 1) and np.array_equal(got[..., 0], np.rint(wide / 257.0).astype(np.uint8))
    Image.fromarray(rgb).convert("P", palette=Image.Palette.ADAPTIVE).save(tmp_path / "p.png")
    want = np.asarray(Image.open(tmp_path / "p.png").convert("RGB"))
    assert np.array_equal(read_image(tmp_path / "p.png"), want)


def test_corrupt_and_oversized_images_are_refused(tmp_path, monkeypatch):
    (tmp_path / "bad.png").write_bytes(b"\x89PNG not really")
    with pytest.raises(BadInput, match="cannot read image .*bad.png"):
        read_image(tmp_path / "bad.png")
    save(tmp_path / "big.png", np.zeros((64, 64), np.uint8))
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 1000)   # 4,096 pixels: past twice the limit, a bomb
    with pytest.raises(BadInput, match="cannot read image .*big.png"):
        read_image(tmp_path / "big.png")


def test_read_images_stacks_one_size_and_lists_mixed_sizes(tmp_path):
    a = save(tmp_path / "a.png", np.zeros((4, 4), np.uint8))
    b = save(tmp_path / "b.png", np.ones((4, 4), np.uint8))
    c = save(tmp_path / "c.png", np.ones((2, 3), np.uint8))
    assert read_images([a, b]).shape == (2, 4, 4, 1)
    mixed = read_images([a, c])
    assert isinstance(mixed, list) and [m.shape for m in mixed] == [(4, 4, 1), (2, 3, 1)]
    seen = []
    read_images([a, b], wrap=lambda files: seen.append(len(files)) or files)
    assert seen == [2]


def test_folder_layouts(tmp_path):
    for cls in ("b", "a"):
        save(tmp_path / "classes" / cls / "1.png", np.zeros((4, 4), np.uint8))
        save(tmp_path / "classes" / cls / "0.jpg", np.zeros((4, 4, 3), np.uint8))
    (tmp_path / "classes" / "a" / ".hidden.png").write_bytes(b"")
    (tmp_path / "classes" / "a" / "notes.txt").write_text("x")
    files, labels, classes = imagefolder_files(tmp_path / "classes")
    assert classes == ("a", "b") and labels.tolist() == [0, 0, 1, 1]
    assert [f.name for f in files] == ["0.jpg", "1.png", "0.jpg", "1.png"]   # sorted, hidden and .txt skipped
    assert [d.name for d in class_dirs(tmp_path / "classes")] == ["a", "b"]
    assert folder_kind(tmp_path / "classes") == "imagefolder"
    assert folder_kind(tmp_path / "classes" / "a") == "folder" and len(folder_files(tmp_path / "classes" / "a")) == 2
    (tmp_path / "empty").mkdir()
    assert folder_kind(tmp_path / "empty") is None and images_in(tmp_path / "empty") == []
    with pytest.raises(BadInput, match="no class sub-folders"):
        imagefolder_files(tmp_path / "empty")
    with pytest.raises(BadInput, match="has no images"):
        folder_files(tmp_path / "empty")


def test_image_files_from_files_and_folders(tmp_path):
    a = save(tmp_path / "x" / "deep" / "a.png", np.zeros((4, 4), np.uint8))
    b = save(tmp_path / "b.bmp", np.zeros((4, 4), np.uint8))
    assert image_files([tmp_path / "x", b]) == [a, b]
    with pytest.raises(BadInput, match="image not found"):
        image_files([tmp_path / "missing.png"])
    (tmp_path / "none").mkdir()
    with pytest.raises(BadInput, match="has no images"):
        image_files([tmp_path / "none"])
