"""Data sources, splits and Preprocess on real MNIST and small synthetic files."""
from __future__ import annotations

import gzip
import os
import pickle
import re
import shutil
import struct
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from mixer_edge.data.dataset import SplitSpec, split_indices, take_split
from mixer_edge.data.preprocess import Preprocess
from mixer_edge.data.sources import SOURCES, describe_sources, load_data
from mixer_edge.errors import BadInput, UnknownName

MNIST_DIR = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "mnist"
MNIST_COUNTS = [980, 1135, 1032, 1010, 982, 892, 958, 1028, 974, 1009]


@pytest.fixture(scope="module")
def mnist():
    if not (MNIST_DIR / "t10k-images-idx3-ubyte.gz").is_file():
        pytest.skip(f"shared MNIST not found at {MNIST_DIR}")
    return load_data(f"mnist:{MNIST_DIR}")


# ---- registry -----------------------------------------------------------------------------------

TESTED_SOURCES = {"digits", "mnist", "cifar10", "imagefolder", "folder"}


def test_every_registered_source_is_tested_and_described():
    assert set(SOURCES) == TESTED_SOURCES
    described = dict(describe_sources())
    assert set(described) == set(SOURCES)
    for name, help_line in described.items():
        assert help_line.startswith(name) and "\n" not in help_line


def test_unknown_source_names_every_accepted_one():
    with pytest.raises(UnknownName) as e:
        load_data("svhn:/tmp")
    assert "'svhn'" in str(e.value)
    for name in SOURCES:
        assert name in str(e.value)


@pytest.mark.parametrize("name", ["mnist", "mnist:", "imagefolder"])
def test_source_without_folder(name):
    with pytest.raises(BadInput, match=r"needs a folder: \w+:DIR"):
        load_data(name)


def test_missing_folder_names_dir_and_spec(tmp_path):
    missing = tmp_path / "nope"
    with pytest.raises(BadInput) as e:
        load_data(f"mnist:{missing}")
    assert str(e.value) == f"data folder not found: {missing} (from spec 'mnist:{missing}')"
    with pytest.raises(BadInput, match="data folder not found"):
        load_data(str(missing))


def test_digits_takes_no_folder():
    with pytest.raises(BadInput, match="takes no folder"):
        load_data("digits:/tmp")


# ---- digits -------------------------------------------------------------------------------------

def test_digits():
    from sklearn.datasets import load_digits

    d = load_data("digits")
    assert d.images.shape == (1797, 8, 8, 1) and d.images.dtype == np.uint8
    assert d.labels.dtype == np.int64 and d.classes == tuple("0123456789")
    assert d.spec == "digits" and d.images.max() == 255
    raw = load_digits()
    np.testing.assert_array_equal(d.labels, raw.target)
    np.testing.assert_array_equal(d.images[5, ..., 0], np.rint(raw.images[5] * 255 / 16))


# ---- mnist --------------------------------------------------------------------------------------

def _check_mnist(d):
    assert d.images.shape == (10000, 28, 28, 1) and d.images.dtype == np.uint8
    assert d.labels.dtype == np.int64 and d.labels[0] == 7
    assert np.bincount(d.labels).tolist() == MNIST_COUNTS
    assert d.classes == tuple("0123456789")


def test_mnist_gz(mnist):
    _check_mnist(mnist)
    assert mnist.spec == f"mnist:{MNIST_DIR}"
    assert 30 < mnist.images.mean() < 40  # MNIST's mean pixel is ~33 on 0..255


@pytest.fixture(scope="module")
def mnist_plain(tmp_path_factory):
    """A decompressed copy of the shared files, to damage freely."""
    if not MNIST_DIR.is_dir():
        pytest.skip(f"shared MNIST not found at {MNIST_DIR}")
    out = tmp_path_factory.mktemp("mnist_plain")
    for kind in ("images-idx3", "labels-idx1"):
        with gzip.open(MNIST_DIR / f"t10k-{kind}-ubyte.gz") as f:
            (out / f"t10k-{kind}-ubyte").write_bytes(f.read())
    return out


def test_mnist_plain_matches_gz(mnist, mnist_plain):
    d = load_data(f"mnist:{mnist_plain}")
    _check_mnist(d)
    np.testing.assert_array_equal(d.images, mnist.images)


def _damaged(src: Path, tmp_path: Path, edit) -> Path:
    """A copy of an MNIST folder with one file's bytes edited."""
    out = tmp_path / "damaged"
    shutil.copytree(src, out)
    images = out / "t10k-images-idx3-ubyte"
    images.write_bytes(edit(images.read_bytes()))
    return out


def test_mnist_bad_magic(mnist_plain, tmp_path):
    d = _damaged(mnist_plain, tmp_path, lambda b: struct.pack(">I", 2049) + b[4:])
    with pytest.raises(BadInput, match=r"t10k-images-idx3-ubyte is not an IDX images file: magic 2049, expected 2051"):
        load_data(f"mnist:{d}")


def test_mnist_truncated(mnist_plain, tmp_path):
    d = _damaged(mnist_plain, tmp_path, lambda b: b[:-100])
    with pytest.raises(BadInput, match=r"t10k-images-idx3-ubyte is truncated: 7839916 bytes, expected 7840016"):
        load_data(f"mnist:{d}")


def test_mnist_header_only_partly_there(tmp_path):
    (tmp_path / "t10k-images-idx3-ubyte").write_bytes(b"\x00\x00\x08")
    (tmp_path / "t10k-labels-idx1-ubyte").write_bytes(b"")
    with pytest.raises(BadInput, match="truncated: 3 bytes"):
        load_data(f"mnist:{tmp_path}")


@pytest.mark.parametrize("cut", [slice(0, 500), slice(0, 10)])
def test_mnist_broken_gzip(tmp_path, cut):
    pixels = np.random.default_rng(0).integers(0, 256, 784, dtype=np.uint8).tobytes()  # ~800 B compressed
    blob = gzip.compress(struct.pack(">IIII", 2051, 1, 28, 28) + pixels)
    (tmp_path / "t10k-images-idx3-ubyte.gz").write_bytes(blob[cut])
    (tmp_path / "t10k-labels-idx1-ubyte.gz").write_bytes(gzip.compress(struct.pack(">II", 2049, 1) + b"\x00"))
    with pytest.raises(BadInput, match=r"cannot read .*t10k-images-idx3-ubyte.gz: broken gzip data"):
        load_data(f"mnist:{tmp_path}")
    bad = bytearray(blob)
    bad[12:20] = b"\xff" * 8  # damage the deflate stream itself: zlib.error, not OSError
    (tmp_path / "t10k-images-idx3-ubyte.gz").write_bytes(bytes(bad))
    with pytest.raises(BadInput, match="broken gzip data"):
        load_data(f"mnist:{tmp_path}")


def test_mnist_count_mismatch(mnist_plain, tmp_path):
    # Claim 9,999 images and drop the last one: a valid images file, but one label too many.
    d = _damaged(mnist_plain, tmp_path, lambda b: b[:4] + struct.pack(">I", 9999) + b[8:-784])
    with pytest.raises(BadInput, match=r"holds 9999 images but .* holds 10000 labels"):
        load_data(f"mnist:{d}")


def _write_idx(folder: Path, stem: str, images: np.ndarray, labels: np.ndarray, gz: bool):
    n, h, w = images.shape
    blobs = {f"{stem}-images-idx3-ubyte": struct.pack(">IIII", 2051, n, h, w) + images.tobytes(),
             f"{stem}-labels-idx1-ubyte": struct.pack(">II", 2049, n) + labels.tobytes()}
    for name, blob in blobs.items():
        (folder / (name + ".gz" if gz else name)).write_bytes(gzip.compress(blob) if gz else blob)


def test_mnist_train_before_t10k_and_missing_labels(tmp_path):
    rng = np.random.default_rng(0)
    train = rng.integers(0, 256, (3, 28, 28), dtype=np.uint8)
    test = rng.integers(0, 256, (2, 28, 28), dtype=np.uint8)
    _write_idx(tmp_path, "t10k", test, np.array([1, 2], np.uint8), gz=True)
    _write_idx(tmp_path, "train", train, np.array([3, 4, 5], np.uint8), gz=False)
    d = load_data(f"mnist:{tmp_path}")
    assert d.labels.tolist() == [3, 4, 5, 1, 2]
    np.testing.assert_array_equal(d.images[..., 0], np.concatenate([train, test]))
    (tmp_path / "train-labels-idx1-ubyte").unlink()
    with pytest.raises(BadInput, match="train-images-idx3-ubyte has no labels file"):
        load_data(f"mnist:{tmp_path}")


def test_mnist_empty_folder(tmp_path):
    with pytest.raises(BadInput, match=r"no MNIST files in .*images-idx3-ubyte"):
        load_data(f"mnist:{tmp_path}")


# ---- cifar10 ------------------------------------------------------------------------------------

def _cifar_records(seed: int, n: int):
    rng = np.random.default_rng(seed)
    images = rng.integers(0, 256, (n, 32, 32, 3), dtype=np.uint8)  # (N, H, W, C)
    labels = rng.integers(0, 10, n).astype(np.uint8)
    return images, labels


def _chw_rows(images: np.ndarray) -> np.ndarray:
    return images.transpose(0, 3, 1, 2).reshape(len(images), -1)  # (N, 3072): R plane, G, B


def test_cifar10_binary(tmp_path):
    folder = tmp_path / "cifar-10-batches-bin"
    folder.mkdir()
    batches = {"data_batch_2.bin": _cifar_records(2, 2), "data_batch_1.bin": _cifar_records(1, 3),
               "test_batch.bin": _cifar_records(3, 2)}
    for name, (images, labels) in batches.items():
        records = np.concatenate([labels[:, None], _chw_rows(images)], axis=1)
        (folder / name).write_bytes(records.tobytes())
    names = [f"c{i}" for i in range(10)]
    (folder / "batches.meta.txt").write_text("\n".join(names) + "\n\n")
    d = load_data(f"cifar10:{tmp_path}")
    order = ["data_batch_1.bin", "data_batch_2.bin", "test_batch.bin"]
    assert d.images.shape == (7, 32, 32, 3) and d.images.dtype == np.uint8
    np.testing.assert_array_equal(d.images, np.concatenate([batches[n][0] for n in order]))
    assert d.labels.tolist() == np.concatenate([batches[n][1] for n in order]).tolist()
    assert d.classes == tuple(names)
    (folder / "test_batch.bin").write_bytes(b"\x00" * 3074)
    with pytest.raises(BadInput, match=r"test_batch.bin is 3074 bytes; expected a whole number of 3073-byte"):
        load_data(f"cifar10:{tmp_path}")


@pytest.mark.parametrize("protocol", [2, pickle.DEFAULT_PROTOCOL, 5])
def test_cifar10_python(tmp_path, protocol):
    batches = {"data_batch_1": _cifar_records(1, 3), "test_batch": _cifar_records(2, 2)}
    for name, (images, labels) in batches.items():
        blob = {b"batch_label": b"x", b"data": _chw_rows(images), b"labels": labels.tolist()}
        (tmp_path / name).write_bytes(pickle.dumps(blob, protocol=protocol))
    meta = {b"label_names": [f"n{i}".encode() for i in range(10)], b"num_vis": 3072}
    (tmp_path / "batches.meta").write_bytes(pickle.dumps(meta, protocol=protocol))
    d = load_data(f"cifar10:{tmp_path}")
    np.testing.assert_array_equal(d.images, np.concatenate([batches[n][0] for n in batches]))
    assert d.labels.tolist() == np.concatenate([batches[n][1] for n in batches]).tolist()
    assert d.classes == tuple(f"n{i}" for i in range(10))


def _py2_batch_pickle(rows: np.ndarray, labels: list[int]) -> bytes:
    """A batch as Python 2's cPickle wrote the real CIFAR-10 files: py2 str (BINSTRING) and
    numpy.core.multiarray names, which a Python 3 pickler can no longer produce."""
    def s(b: bytes) -> bytes:
        return b"T" + struct.pack("<I", len(b)) + b
    n, width = rows.shape
    dtype = b"cnumpy\ndtype\n" + s(b"u1") + b"K\x00K\x01\x87R(K\x03" + s(b"|") + \
        b"NNNJ\xff\xff\xff\xffJ\xff\xff\xff\xffK\x00tb"
    array = (b"cnumpy.core.multiarray\n_reconstruct\ncnumpy\nndarray\nK\x00\x85" + s(b"b") + b"\x87R"
             + b"(K\x01" + struct.pack("<BiBi", ord("J"), n, ord("J"), width) + b"\x86" + dtype
             + b"\x89" + s(rows.tobytes()) + b"tb")
    label_list = b"](" + b"".join(b"K" + bytes([v]) for v in labels) + b"e"
    return b"\x80\x02}(" + s(b"data") + array + s(b"labels") + label_list + b"u."


def test_cifar10_python2_pickle(tmp_path):
    images, labels = _cifar_records(4, 3)
    (tmp_path / "data_batch_1").write_bytes(_py2_batch_pickle(_chw_rows(images), labels.tolist()))
    d = load_data(f"cifar10:{tmp_path}")
    np.testing.assert_array_equal(d.images, images)
    assert d.labels.tolist() == labels.tolist()


def test_cifar10_default_class_names(tmp_path):
    images, labels = _cifar_records(0, 2)
    (tmp_path / "test_batch").write_bytes(pickle.dumps({"data": _chw_rows(images), "labels": labels}))
    d = load_data(f"cifar10:{tmp_path}")
    assert d.classes[0] == "airplane" and d.classes[9] == "truck" and len(d) == 2


class _Exploit:
    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return os.system, (f"echo hi > {self.marker}",)


def test_cifar10_refuses_malicious_pickle(tmp_path):
    marker = tmp_path / "ran"
    folder = tmp_path / "cifar-10-batches-py"
    folder.mkdir()
    (folder / "data_batch_1").write_bytes(pickle.dumps({b"data": _Exploit(marker), b"labels": [0]}))
    with pytest.raises(BadInput, match=r"refusing to unpickle (posix|nt)\.system from .*data_batch_1"):
        load_data(f"cifar10:{tmp_path}")
    assert not marker.exists()


def test_cifar10_refuses_other_codecs(tmp_path):
    # _codecs.encode is allowed for protocol-2 bytes, but only with latin1.
    evil = b"\x80\x02c_codecs\nencode\nX\x03\x00\x00\x00abcX\x06\x00\x00\x00base64\x86R."
    (tmp_path / "test_batch").write_bytes(evil)
    with pytest.raises(BadInput, match="cannot read .*test_batch"):
        load_data(f"cifar10:{tmp_path}")


def test_cifar10_empty_folder(tmp_path):
    with pytest.raises(BadInput, match="no CIFAR-10 batches in"):
        load_data(f"cifar10:{tmp_path}")


# ---- image folders ------------------------------------------------------------------------------

def _save(path: Path, array: np.ndarray, mode: str | None = None):
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(array, mode).save(path)


@pytest.fixture
def mixed_folder(tmp_path):
    """Two classes, mixed sizes, gray and RGB, plus files a loader must skip."""
    rng = np.random.default_rng(0)
    root = tmp_path / "pets"
    _save(root / "cat" / "a.png", np.full((10, 12), 255, np.uint8))                           # gray
    _save(root / "cat" / "b.JPG", rng.integers(0, 256, (20, 16, 3), dtype=np.uint8))          # RGB
    _save(root / "dog" / "c.bmp", np.zeros((8, 8, 3), np.uint8))                              # RGB
    _save(root / "dog" / "d.png", rng.integers(0, 256, (6, 6, 4), dtype=np.uint8), "RGBA")     # -> RGB
    _save(root / "dog" / ".hidden.png", np.zeros((4, 4), np.uint8))
    (root / "dog" / "._c.bmp").write_bytes(b"macOS resource fork, not an image")
    (root / "dog" / "notes.txt").write_text("not an image")
    _save(root / ".thumbs" / "e.png", np.zeros((4, 4), np.uint8))
    return root


def test_imagefolder_mixed(mixed_folder):
    d = load_data(f"imagefolder:{mixed_folder}")
    assert d.classes == ("cat", "dog") and d.labels.tolist() == [0, 0, 1, 1]
    assert isinstance(d.images, tuple)
    assert [im.shape for im in d.images] == [(10, 12, 1), (20, 16, 3), (8, 8, 3), (6, 6, 3)]
    assert all(im.dtype == np.uint8 for im in d.images)
    assert (d.images[0] == 255).all() and (d.images[2] == 0).all()
    # A bare folder path with class sub-folders is an imagefolder.
    bare = load_data(str(mixed_folder))
    assert bare.spec == str(mixed_folder) and bare.labels.tolist() == [0, 0, 1, 1]


def test_imagefolder_same_size_stacks(tmp_path):
    for i, cls in enumerate(["b", "a"]):
        _save(tmp_path / cls / "x.png", np.full((5, 7, 3), 40 * i, np.uint8))
    d = load_data(f"imagefolder:{tmp_path}")
    assert isinstance(d.images, np.ndarray) and d.images.shape == (2, 5, 7, 3)
    assert d.classes == ("a", "b") and d.images[0].max() == 40 and d.images[1].max() == 0


def test_image_modes(tmp_path):
    _save(tmp_path / "p.png", np.arange(16, dtype=np.uint8).reshape(4, 4), "L")
    Image.fromarray(np.arange(16, dtype=np.uint8).reshape(4, 4), "L").convert("P").save(tmp_path / "q.png")
    Image.fromarray(np.full((4, 4), 65535, np.uint16)).save(tmp_path / "r.png")  # 16-bit gray
    Image.new("1", (4, 4), 1).save(tmp_path / "s.bmp")
    d = load_data(f"folder:{tmp_path}")
    p, q, r, s = d.images
    assert p.shape == (4, 4, 1) and q.shape == (4, 4, 3) and r.shape == (4, 4, 1) and s.shape == (4, 4, 1)
    np.testing.assert_array_equal(q[..., 0], p[..., 0])
    assert (r == 255).all() and (s == 255).all()


def test_imagefolder_empty_class(mixed_folder):
    (mixed_folder / "empty").mkdir()
    (mixed_folder / "empty" / "readme.txt").write_text("x")
    with pytest.raises(BadInput) as e:
        load_data(f"imagefolder:{mixed_folder}")
    assert str(e.value) == f"class folder {mixed_folder / 'empty'} has no images (png/jpg/jpeg/bmp)"


def test_imagefolder_corrupt_image(mixed_folder):
    bad = mixed_folder / "cat" / "z.png"
    bad.write_bytes(b"\x89PNG\r\n\x1a\n" + b"\x00" * 40)
    with pytest.raises(BadInput, match=f"cannot read image {bad}: "):
        load_data(f"imagefolder:{mixed_folder}")


def test_imagefolder_without_classes(tmp_path):
    _save(tmp_path / "a.png", np.zeros((4, 4), np.uint8))
    with pytest.raises(BadInput, match="no class sub-folders"):
        load_data(f"imagefolder:{tmp_path}")


def test_folder_unlabeled(tmp_path):
    for i in range(3):
        _save(tmp_path / f"{i}.png", np.full((4, 5), i, np.uint8))
    (tmp_path / "sub").mkdir()
    for spec in (f"folder:{tmp_path}", str(tmp_path)):
        d = load_data(spec)
        assert d.labels is None and d.classes == () and d.images.shape == (3, 4, 5, 1)
        assert d.images[:, 0, 0, 0].tolist() == [0, 1, 2]


def test_folder_errors(tmp_path):
    with pytest.raises(BadInput, match="has no images"):
        load_data(f"folder:{tmp_path}")
    with pytest.raises(BadInput, match="cannot tell what folder"):
        load_data(str(tmp_path))
    (tmp_path / "calib.npz").write_bytes(b"")
    with pytest.raises(BadInput, match="is a file"):
        load_data(str(tmp_path / "calib.npz"))


# ---- splits -------------------------------------------------------------------------------------

def test_mnist_split_sizes_disjoint_stratified(mnist):
    parts = split_indices(mnist, SplitSpec(seed=0))
    assert {k: len(v) for k, v in parts.items()} == {"train": 8000, "calib": 1000, "eval": 1000}
    union = np.concatenate(list(parts.values()))
    assert len(np.unique(union)) == 10000
    counts = np.array(MNIST_COUNTS)
    for name, frac in (("train", 0.8), ("calib", 0.1), ("eval", 0.1)):
        got = np.bincount(mnist.labels[parts[name]], minlength=10)
        assert np.abs(got - frac * counts).max() <= 2, (name, got)


def test_take_split_is_seeded(mnist):
    a = take_split(mnist, "calib", SplitSpec(seed=0))
    b = take_split(mnist, "calib", SplitSpec(seed=0))
    c = take_split(mnist, "calib", SplitSpec(seed=1))
    assert len(a) == 1000 and a.images.shape == (1000, 28, 28, 1)
    np.testing.assert_array_equal(a.images, b.images)
    np.testing.assert_array_equal(a.labels, b.labels)
    assert not np.array_equal(a.images, c.images)
    assert take_split(mnist, "all") is mnist
    with pytest.raises(BadInput, match="unknown split 'test'"):
        take_split(mnist, "test")


def test_take_split_on_tuple_images(mixed_folder):
    d = load_data(f"imagefolder:{mixed_folder}")
    part = take_split(d, "train", SplitSpec(seed=0, train=0.5, calib=0.25, eval=0.25))
    assert len(part) == 2 and isinstance(part.images, tuple) and sorted(part.labels.tolist()) == [0, 1]


# ---- Preprocess on loaded data ------------------------------------------------------------------

@pytest.mark.parametrize("channels", [1, 3])
def test_preprocess_mixed_folder(mixed_folder, channels):
    d = load_data(f"imagefolder:{mixed_folder}")
    x = Preprocess.default(8, channels)(d.images)
    assert x.shape == (4, channels, 8, 8) and x.dtype == np.float32
    np.testing.assert_allclose(x[0], 1.0, atol=1e-6)    # all-255 gray image
    np.testing.assert_allclose(x[2], -1.0, atol=1e-6)   # all-0 RGB image
    assert -1.0 <= x.min() and x.max() <= 1.0


def test_preprocess_mnist_batch(mnist):
    x = Preprocess.default(28, 1)(mnist.images[:16])
    assert x.shape == (16, 1, 28, 28) and x.dtype == np.float32
    np.testing.assert_allclose(x, mnist.images[:16].transpose(0, 3, 1, 2) / 127.5 - 1.0, atol=1e-6)


# ---- issue 20: photographers' folders ------------------------------------------------------------

def test_exif_rotated_copy_is_the_same_image(tmp_path):
    """A portrait photo stored sideways and tagged (EXIF orientation 6) reads as its upright copy:
    the same pixels, the same content key, the same preprocessed array."""
    rng = np.random.default_rng(3)
    upright = rng.integers(0, 256, (12, 9, 3), dtype=np.uint8)
    _save(tmp_path / "a" / "upright.png", upright)
    exif = Image.Exif()
    exif[0x0112] = 6
    (tmp_path / "b").mkdir()
    Image.fromarray(upright).transpose(Image.Transpose.ROTATE_90).save(tmp_path / "b" / "turned.png", exif=exif)
    a, b = load_data(f"folder:{tmp_path / 'a'}"), load_data(f"folder:{tmp_path / 'b'}")
    assert np.array_equal(a.images, b.images) and a.images.shape == (1, 12, 9, 3)
    assert a.keys.tolist() == b.keys.tolist()
    pre = Preprocess.default(8, 3)
    assert np.array_equal(pre(a.images), pre(b.images))


def test_nested_class_folders_are_read(tmp_path):
    """3,000 images of a class, one of them in a sub-folder: all 3,000 read (none left out silently)."""
    _save(tmp_path / "seven" / "a.png", np.zeros((4, 4), np.uint8))
    _save(tmp_path / "seven" / "old" / "b.png", np.ones((4, 4), np.uint8))
    _save(tmp_path / "five" / "c.png", np.zeros((4, 4), np.uint8))
    d = load_data(f"imagefolder:{tmp_path}")
    assert len(d) == 3 and d.classes == ("five", "seven") and d.labels.tolist() == [0, 1, 1]
    assert [Path(f).relative_to(tmp_path).as_posix() for f in d.files] == ["five/c.png", "seven/a.png",
                                                                          "seven/old/b.png"]


@pytest.fixture
def with_bad_files(tmp_path):
    """Two classes of 3 readable images, plus a zero-byte .jpg and a link loop in class b."""
    for cls in ("a", "b"):
        for i in range(3):
            _save(tmp_path / "d" / cls / f"{i}.png", np.full((4, 4), 10 * i + (cls == "b"), np.uint8))
    (tmp_path / "d" / "b" / "1-empty.jpg").write_bytes(b"")
    os.symlink("9-loop.png", tmp_path / "d" / "b" / "9-loop.png")
    return tmp_path / "d"


@pytest.mark.parametrize("stream", [False, True])
def test_skip_bad_leaves_unreadable_files_out_with_a_list(with_bad_files, monkeypatch, capsys, stream):
    from mixer_edge.data.sources import ReadOptions
    from mixer_edge.runtime import streaming

    monkeypatch.setattr(streaming, "STREAM_ABOVE_MB", 0 if stream else 256)
    spec = f"imagefolder:{with_bad_files}"
    with pytest.raises(BadInput, match=r"cannot read image .*1-empty.jpg: .*--skip-bad"):
        load_data(spec).keys
    capsys.readouterr()
    d = load_data(spec, ReadOptions(skip_bad=True))
    assert len(d) == 6 and d.labels.tolist() == [0, 0, 0, 1, 1, 1]
    assert [Path(p).name for p, _ in d.skipped] == ["1-empty.jpg", "9-loop.png"]
    err = capsys.readouterr().err.splitlines()
    assert err[-1].startswith("warning: --skip-bad left out 2 of 8 images of") and "1-empty.jpg" in err[0]
    assert d.describe()["skipped"][0]["image"].endswith("1-empty.jpg")
    assert np.array_equal(d.keys, load_data(f"imagefolder:{with_bad_files}", ReadOptions(skip_bad=True)).keys)


def test_skip_bad_with_nothing_readable_is_an_error(tmp_path):
    from mixer_edge.data.sources import ReadOptions

    (tmp_path / "x.jpg").write_bytes(b"")
    with pytest.raises(BadInput, match="none of the 1 images of folder:.* can be read"):
        load_data(f"folder:{tmp_path}", ReadOptions(skip_bad=True))


@pytest.mark.parametrize("text, suffix", [
    ('{"08_eight": "eight", "SEVEN-photos": "seven", "sept": "seven"}', ".json"),
    ("# folder = class\n08_eight = eight\n\nSEVEN-photos = seven\nsept=seven\n", ".txt"),
])
def test_class_map_renames_and_merges_folders(tmp_path, capsys, text, suffix):
    from mixer_edge.data.sources import ReadOptions

    for i, folder in enumerate(("08_eight", "SEVEN-photos", "sept", "five")):
        _save(tmp_path / "d" / folder / "x.png", np.full((4, 4), i, np.uint8))
    (tmp_path / f"map{suffix}").write_text(text + ("" if suffix == ".json" else "ghost = nine\n"))
    d = load_data(f"imagefolder:{tmp_path / 'd'}", ReadOptions(class_map=str(tmp_path / f"map{suffix}")))
    # sorted folders: 08_eight, SEVEN-photos, five, sept -> eight, seven, five (first appearance)
    assert d.classes == ("eight", "seven", "five") and d.labels.tolist() == [0, 1, 2, 1]
    err = capsys.readouterr().err
    assert ("ghost" in err and err.startswith("warning: ")) == (suffix == ".txt")


@pytest.mark.parametrize("text, suffix, message", [
    ('["a", "b"]', ".json", "a JSON object of folder name -> class name"),
    ('{"a": 3}', ".json", "a JSON object of folder name -> class name"),
    ("{not json", ".json", "is not JSON"),
    ("a = b\njust a name\n", ".txt", "line 2: expected FOLDER = CLASS"),
    ("a = \n", ".txt", "line 1: expected FOLDER = CLASS"),
    ("a = b\na = c\n", ".txt", "maps a twice"),
    ("# nothing\n", ".txt", "maps no folder"),
])
def test_class_map_refusals(tmp_path, text, suffix, message):
    from mixer_edge.data.sources import ReadOptions

    _save(tmp_path / "d" / "a" / "x.png", np.zeros((4, 4), np.uint8))
    (tmp_path / f"m{suffix}").write_text(text)
    with pytest.raises(BadInput, match=re.escape(message)):
        load_data(f"imagefolder:{tmp_path / 'd'}", ReadOptions(class_map=str(tmp_path / f"m{suffix}")))
    with pytest.raises(BadInput, match="class map not found"):
        load_data(f"imagefolder:{tmp_path / 'd'}", ReadOptions(class_map=str(tmp_path / "nope.json")))


def test_small_images_warned_with_their_names(tmp_path, capsys):
    from mixer_edge.data.dataset import warn_small

    _save(tmp_path / "ok.png", np.zeros((28, 28), np.uint8))
    _save(tmp_path / "dot.png", np.zeros((1, 1), np.uint8))
    d = load_data(f"folder:{tmp_path}")
    warn_small(d, (28, 28))
    err = capsys.readouterr().err.splitlines()
    assert len(err) == 1 and err[0].startswith("warning: 1 of 2 images are much smaller") and "dot.png (1x1)" in err[0]
    warn_small(d.subset(np.flatnonzero([f.endswith("ok.png") for f in d.files])), (28, 28))
    assert capsys.readouterr().err == ""
