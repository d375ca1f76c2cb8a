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


# ---- issue 20: images as a photographer hands them over ----------------------------------------------

# Pillow's transpose codes (FLIP_LEFT_RIGHT 0, FLIP_TOP_BOTTOM 1, ROTATE_90 2, ROTATE_180 3, ROTATE_270 4,
# TRANSPOSE 5, TRANSVERSE 6): the stored pixels of an upright picture tagged with each EXIF orientation
# (TIFF 6.0: 2 mirrored, 3 turned 180, 4 flipped, 5 transposed, 6 turned 90 clockwise, 7 transversed,
# 8 turned 90 anticlockwise), each undone by the viewer's transpose.
STORED = {2: 0, 3: 3, 4: 1, 5: 5, 6: 2, 7: 6, 8: 4}


def tagged(path, upright: np.ndarray, orientation: int, **save):
    """The file a camera writes for an upright picture held at `orientation`: its pixels stored
    turned, the Orientation tag (0x0112) saying how to turn them back."""
    img = Image.fromarray(upright).transpose(STORED[orientation])
    exif = Image.Exif()
    exif[0x0112] = orientation
    path.parent.mkdir(parents=True, exist_ok=True)
    img.save(path, exif=exif, **save)
    return path


@pytest.mark.parametrize("orientation", sorted(STORED))
def test_exif_orientation_is_applied(tmp_path, orientation):
    upright = RNG.integers(0, 256, (5, 7, 3), dtype=np.uint8)
    path = tagged(tmp_path / "photo.png", upright, orientation)
    assert not np.array_equal(np.asarray(Image.open(path)), upright) or orientation == 1
    got = read_image(path)
    assert np.array_equal(got, upright)
    from PIL import ImageOps
    assert np.array_equal(got, np.asarray(ImageOps.exif_transpose(Image.open(path))))   # Pillow's own reading


def test_exif_rotated_jpeg_reads_as_pillows_upright_copy(tmp_path):
    """A phone's JPEG, turned 90 degrees and tagged 6 (and 8): read as Pillow's exif_transpose reads it,
    upright (5 x 7, not 7 x 5)."""
    from PIL import ImageOps

    upright = np.zeros((40, 56, 3), np.uint8)
    upright[:20] = 255                                   # the top half white: which way is up is visible
    for orientation in (6, 8):
        path = tagged(tmp_path / f"p{orientation}.jpg", upright, orientation, quality=95)
        got = read_image(path)
        assert got.shape == (40, 56, 3)
        assert np.array_equal(got, np.asarray(ImageOps.exif_transpose(Image.open(path)).convert("RGB")))
        assert got[:20].mean() > 200 and got[20:].mean() < 50


def test_content_keys_hash_the_oriented_pixels(tmp_path):
    """An upright PNG and its turned, tagged copy are one image by content (docs/data.md)."""
    from mixer_edge.runtime.identity import image_keys

    upright = RNG.integers(0, 256, (6, 9, 3), dtype=np.uint8)
    a = save(tmp_path / "upright.png", upright)
    b = tagged(tmp_path / "turned.png", upright, 6)
    assert image_keys([read_image(a)])[0] == image_keys([read_image(b)])[0] == image_keys([upright])[0]


def test_nested_folders_inside_a_class_are_read(tmp_path):
    """Images in sub-folders of a class folder belong to the class (as torchvision's ImageFolder and
    `predict FOLDER` read them), never left out."""
    save(tmp_path / "d" / "seven" / "a.png", np.zeros((4, 4), np.uint8))
    save(tmp_path / "d" / "seven" / "2023" / "may" / "b.png", np.zeros((4, 4), np.uint8))
    save(tmp_path / "d" / "five" / "c.png", np.zeros((4, 4), np.uint8))
    save(tmp_path / "d" / "five" / ".cache" / "x.png", np.zeros((4, 4), np.uint8))   # hidden: skipped
    files, labels, classes = imagefolder_files(tmp_path / "d")
    assert classes == ("five", "seven") and labels.tolist() == [0, 1, 1]
    assert [f.relative_to(tmp_path / "d").as_posix() for f in files] == ["five/c.png", "seven/2023/may/b.png",
                                                                        "seven/a.png"]
    assert len(folder_files(tmp_path / "d" / "seven")) == 2                    # folder:DIR reads below too
    only_nested = tmp_path / "n"
    save(only_nested / "cls" / "sub" / "a.png", np.zeros((4, 4), np.uint8))
    assert folder_kind(only_nested) == "imagefolder" and imagefolder_files(only_nested)[2] == ("cls",)


def test_symlink_loops_are_listed_not_followed_forever(tmp_path):
    """A file link to itself is an image file that cannot be read (listed, then refused or skipped
    by --skip-bad: never dropped without a word); a folder link back up is not walked again."""
    import os

    root = tmp_path / "d" / "seven"
    save(root / "a.png", np.zeros((4, 4), np.uint8))
    os.symlink("loop.png", root / "loop.png")
    os.symlink("..", root / "up")
    files, labels, _ = imagefolder_files(tmp_path / "d")
    assert [f.name for f in files] == ["a.png", "loop.png"]
    assert [f.name for f in image_files([tmp_path / "d"])] == ["a.png", "loop.png"]   # predict lists the same
    with pytest.raises(BadInput, match="cannot read image .*loop.png: .*symbolic links"):
        read_image(root / "loop.png")


def test_large_images_warned_and_bombs_refused(tmp_path, monkeypatch, capsys):
    """Above Pillow's warning limit: our own `warning:` line (Pillow's warning is hidden without
    --verbose), once per file; above its error limit: refused with the limit named."""
    path = save(tmp_path / "big.png", np.zeros((40, 40), np.uint8))          # 1,600 pixels
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 1000)
    assert read_image(path).shape == (40, 40, 1) and read_image(path).shape == (40, 40, 1)
    lines = capsys.readouterr().err.splitlines()
    assert len(lines) == 1 and lines[0].startswith("warning: ") and "big.png" in lines[0] and "40x40" in lines[0]
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 700)                      # past twice the limit
    with pytest.raises(BadInput, match=r"cannot read image .*big.png: .*decompression-bomb limit"):
        read_image(path)


def test_small_images_named_in_one_warning():
    from mixer_edge.runtime.images import small_images

    sizes = np.array([[28, 28], [1, 1], [3, 40], [28, 30]])
    text = small_images(sizes, (28, 28), ["a.png", "b.png", "c.png", "d.png"])
    assert text.startswith("2 of 4 images are much smaller than the model's 28x28 input") and "b.png (1x1)" in text
    assert small_images(sizes[[0, 3]], (28, 28)) is None
    assert small_images(np.array([[28, 28]]), (224, 224)) is None          # MNIST at 224: 8 times, not more


def test_unreadable_files_skipped_when_asked(tmp_path):
    """read_images with a `bad` list: a zero-byte .jpg and a link loop are left out, each named with
    why, the others decoded; without the list the first stops the read, naming the file."""
    import os

    good = save(tmp_path / "a.png", np.zeros((4, 4), np.uint8))
    empty = tmp_path / "b.jpg"
    empty.write_bytes(b"")
    os.symlink("c.png", tmp_path / "c.png")
    bad = []
    got = read_images([good, empty, tmp_path / "c.png"], bad=bad)
    assert got.shape == (1, 4, 4, 1) and [b[0] for b in bad] == [str(empty), str(tmp_path / "c.png")]
    assert "cannot identify image file" in bad[0][1]
    with pytest.raises(BadInput, match=f"cannot read image {empty}"):
        read_images([good, empty])


def test_missing_files_and_empty_folders_listed_when_asked(tmp_path):
    good = save(tmp_path / "a.png", np.zeros((4, 4), np.uint8))
    (tmp_path / "none").mkdir()
    bad = []
    assert image_files([good, tmp_path / "missing.png", tmp_path / "none"], bad=bad) == [good]
    assert [b[0] for b in bad] == [str(tmp_path / "missing.png"), str(tmp_path / "none")]
    assert "not found" in bad[0][1] and "has no images" in bad[1][1]


def test_non_utf8_names_are_shown_without_lone_surrogates(tmp_path):
    import os

    from mixer_edge.runtime.images import shown

    name = os.fsdecode(b"caf\xe9.png")                       # a Latin-1 name on a UTF-8 system
    assert "\udce9" in name
    assert shown(tmp_path / name).endswith("caf\\xe9.png")
    shown(tmp_path / name).encode("utf-8")                   # strict: no lone surrogate left
    assert shown("plain é.png") == "plain é.png"
    save(tmp_path / "d" / name[:-4] / "x.png", np.zeros((4, 4), np.uint8))   # a class folder of that name
    assert imagefolder_files(tmp_path / "d")[2] == ("caf\\xe9",)
