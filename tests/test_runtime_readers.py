"""runtime/readers.py: each data set format read back to the pixels written by hand (IDX, CIFAR-10
binary and python batches, image folders, a raw-image .npz), the spec dispatch, and the refusals.
The host's data sources wrap these (tests/test_data.py)."""
from __future__ import annotations

import gzip
import pickle
import struct

import numpy as np
import pytest
from PIL import Image

from mixer_edge.runtime.errors import BadInput
from mixer_edge.runtime.readers import (CIFAR10_CLASSES, DIGIT_CLASSES, read_cifar10, read_data, read_digits,
                                        read_mnist, read_npz)
from mixer_edge.runtime.streaming import ImageFiles

RNG = np.random.default_rng(3)


def write_idx(folder, stem, images, labels, gz=False):
    img = struct.pack(">IIII", 2051, *images.shape) + images.tobytes()
    lab = struct.pack(">II", 2049, len(labels)) + labels.astype(np.uint8).tobytes()
    op = gzip.compress if gz else (lambda b: b)
    (folder / f"{stem}-images-idx3-ubyte{'.gz' if gz else ''}").write_bytes(op(img))
    (folder / f"{stem}-labels-idx1-ubyte{'.gz' if gz else ''}").write_bytes(op(lab))


def test_mnist_idx_by_hand(tmp_path):
    test_images = RNG.integers(0, 256, (3, 5, 5), dtype=np.uint8)
    train_images = RNG.integers(0, 256, (2, 5, 5), dtype=np.uint8)
    write_idx(tmp_path, "t10k", test_images, np.array([1, 2, 3]), gz=True)
    write_idx(tmp_path, "train", train_images, np.array([7, 8]))
    d = read_mnist(tmp_path)
    assert d.classes == DIGIT_CLASSES and d.labels.tolist() == [7, 8, 1, 2, 3]   # train before t10k
    assert np.array_equal(d.images[..., 0], np.concatenate([train_images, test_images]))
    (tmp_path / "train-labels-idx1-ubyte").write_bytes(struct.pack(">II", 2049, 1) + b"\x07")
    with pytest.raises(BadInput, match="holds 2 images but .* holds 1 labels"):
        read_mnist(tmp_path)


def test_cifar10_binary_and_python_by_hand(tmp_path):
    images = RNG.integers(0, 256, (4, 32, 32, 3), dtype=np.uint8)
    labels = np.array([0, 9, 3, 3], np.uint8)
    planes = images.transpose(0, 3, 1, 2).reshape(4, -1)              # R, G, B planes per record
    (tmp_path / "bin").mkdir()
    (tmp_path / "bin" / "test_batch.bin").write_bytes(np.concatenate([labels[:, None], planes], 1).tobytes())
    d = read_cifar10(tmp_path / "bin")
    assert np.array_equal(d.images, images) and d.labels.tolist() == [0, 9, 3, 3] and d.classes == CIFAR10_CLASSES
    py = tmp_path / "py" / "cifar-10-batches-py"
    py.mkdir(parents=True)
    (py / "data_batch_1").write_bytes(pickle.dumps({b"data": planes, b"labels": labels.tolist()}, protocol=2))
    (py / "batches.meta").write_bytes(pickle.dumps({b"label_names": [f"c{i}".encode() for i in range(10)]}))
    d = read_cifar10(tmp_path / "py")
    assert np.array_equal(d.images, images) and d.classes == tuple(f"c{i}" for i in range(10))


def test_image_folder_and_npz_through_the_spec(tmp_path, monkeypatch):
    for cls, value in (("cat", 10), ("dog", 200)):
        (tmp_path / "f" / cls).mkdir(parents=True)
        Image.fromarray(np.full((4, 4), value, np.uint8)).save(tmp_path / "f" / cls / "a.png")
    d = read_data(f"imagefolder:{tmp_path / 'f'}")
    assert d.classes == ("cat", "dog") and d.labels.tolist() == [0, 1] and d.images[:, 0, 0, 0].tolist() == [10, 200]
    assert read_data(str(tmp_path / "f")).spec == str(tmp_path / "f")   # a bare folder: guessed
    unlabeled = read_data(f"folder:{tmp_path / 'f' / 'cat'}")
    assert unlabeled.labels is None and unlabeled.images.shape == (1, 4, 4, 1)
    monkeypatch.setenv("MIXER_EDGE_STREAM_ABOVE_MB", "0")
    assert isinstance(read_data(f"imagefolder:{tmp_path / 'f'}").images, ImageFiles)
    np.savez(tmp_path / "raw.npz", images=np.zeros((2, 3, 3), np.uint8), labels=np.array([1, 0]))
    d = read_data(str(tmp_path / "raw.npz"))
    assert d.images.shape == (2, 3, 3, 1) and d.labels.tolist() == [1, 0] and d.classes is None


def test_digits_scaled_to_bytes():
    pytest.importorskip("sklearn")
    from sklearn.datasets import load_digits

    d, sk = read_digits(), load_digits()
    assert d.images.shape == (1797, 8, 8, 1) and d.images.max() == 255
    assert np.array_equal(d.images[..., 0], np.rint(sk.images * 255 / 16).astype(np.uint8))


@pytest.mark.parametrize("arrays, message", [
    ({"x": np.zeros((2, 1, 3, 3), np.float32)}, "has no 'images' array"),
    ({"images": np.zeros((2, 3, 3), np.float32)}, "'images' is float32"),
    ({"images": np.zeros((2, 3, 3), np.uint8), "labels": np.zeros(3)}, "2 images but 'labels' of shape"),
])
def test_npz_refusals(tmp_path, arrays, message):
    np.savez(tmp_path / "d.npz", **arrays)
    with pytest.raises(BadInput, match=message):
        read_npz(tmp_path / "d.npz")
    (tmp_path / "pickled.npz").write_bytes(b"PK\x03\x04 not a zip")
    with pytest.raises(BadInput, match="cannot read .*pickled.npz as an .npz"):
        read_npz(tmp_path / "pickled.npz")


@pytest.mark.parametrize("spec, message", [("mnist:/no/such/dir", "data folder not found"),
                                           ("whatever", "cannot read data 'whatever'; accepted: mnist:DIR")])
def test_spec_refusals(spec, message):
    with pytest.raises(BadInput, match=message):
        read_data(spec)
