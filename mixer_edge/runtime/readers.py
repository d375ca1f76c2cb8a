"""Data sets as raw uint8 images with labels: digits, MNIST (IDX), CIFAR-10 (binary or python
batches), image folders (decoded, or streamed when large), a raw-image .npz. The host's data
sources (mixer_edge/data/sources.py) wrap these readers: one implementation, so a device reads a
data set exactly as training and evaluation did."""
from __future__ import annotations

import gzip
import re
import zipfile
import zlib
from pathlib import Path
from typing import NamedTuple

import numpy as np

from .errors import BadInput
from .images import folder_files, folder_kind, imagefolder_files
from .streaming import ImageFiles, decoded_or_streamed
from .unpickle import unpickle


class Data(NamedTuple):
    images: object                  # uint8 (N, H, W, C), a list of (H, W, C) when sizes differ, or ImageFiles
    labels: np.ndarray | None       # int64 (N,) or None (unlabeled)
    classes: tuple | None           # class names when the source knows them
    spec: str


DIGIT_CLASSES = tuple(str(d) for d in range(10))
CIFAR10_CLASSES = ("airplane", "automobile", "bird", "cat", "deer",
                   "dog", "frog", "horse", "ship", "truck")
DATA_HELP = ("mnist:DIR (IDX files, gzipped or not), imagefolder:DIR (one sub-folder of images per "
             "class), folder:DIR (unlabeled images), DIR (either, guessed), FILE.npz (uint8 'images' "
             "(N,H,W[,C]) and 'labels')")


def read_data(spec: str) -> Data:
    name, sep, arg = spec.partition(":")
    if spec == "digits":
        return read_digits()
    readers = {"mnist": read_mnist, "cifar10": read_cifar10, "imagefolder": read_imagefolder, "folder": read_folder}
    if sep and name in readers:
        root = Path(arg).expanduser()
        if not root.is_dir():
            raise BadInput(f"data folder {'is a file' if root.exists() else 'not found'}: {arg} (from spec {spec!r})")
        return readers[name](root)._replace(spec=spec)
    p = Path(spec).expanduser()
    if p.suffix == ".npz" and p.is_file():
        return read_npz(p)._replace(spec=spec)
    if p.is_dir():
        kind = folder_kind(p)
        if kind is None:
            raise BadInput(f"cannot tell what folder {p} holds; say imagefolder:{p} or folder:{p}")
        return readers[kind](p)._replace(spec=spec)
    raise BadInput(f"cannot read data {spec!r}; accepted: {DATA_HELP}")


def read_npz(path: Path) -> Data:
    try:
        return _read_npz(path)
    except BadInput:
        raise
    except (ValueError, OSError, EOFError, zipfile.BadZipFile) as e:   # not an .npz, truncated, pickled
        raise BadInput(f"cannot read {path} as an .npz of uint8 'images' and 'labels': {e}") from None


def _read_npz(path: Path) -> Data:
    with np.load(path, allow_pickle=False) as z:
        if "images" not in z.files:
            raise BadInput(f"{path} has no 'images' array (found {', '.join(z.files)}); expected raw "
                           f"uint8 'images' (N,H,W[,C]) and 'labels' (a calibration .npz holds "
                           f"preprocessed tensors, not images)")
        images = z["images"]
        labels = z["labels"].astype(np.int64) if "labels" in z.files else None
        classes = tuple(str(c) for c in z["classes"]) if "classes" in z.files else None
    if images.dtype != np.uint8 or images.ndim not in (3, 4):
        raise BadInput(f"{path}: 'images' is {images.dtype} {images.shape}; expected uint8 (N,H,W[,C])")
    if labels is not None and labels.shape != (len(images),):
        raise BadInput(f"{path}: {len(images)} images but 'labels' of shape {labels.shape}")
    return Data(images if images.ndim == 4 else images[..., None], labels, classes, str(path))


def read_digits(_root=None) -> Data:
    """digits  scikit-learn's bundled 8x8 handwritten digits, 1,797 images, 10 classes."""
    try:
        from sklearn.datasets import load_digits as sk_digits  # heavy import, only when asked for
    except ImportError:
        raise BadInput("the digits data set comes with scikit-learn: pip install scikit-learn") from None
    d = sk_digits()
    # Pixels are counts 0..16 (an 8x8 grid of 4x4 blocks); scale to the 0..255 every source uses.
    images = np.rint(d.images * (255.0 / 16.0)).astype(np.uint8)[..., None]  # (N, 8, 8, 1)
    return Data(images, d.target.astype(np.int64), DIGIT_CLASSES, "digits")


def read_imagefolder(root: Path) -> Data:
    """imagefolder:DIR: one sub-folder of images per class, decoded now or streamed (decoded_or_streamed)."""
    files, labels, classes = imagefolder_files(root)
    return Data(decoded_or_streamed(ImageFiles(files)), labels, classes, f"imagefolder:{root}")


def read_folder(root: Path) -> Data:
    """folder:DIR: unlabeled images (calibration, prediction), decoded now or streamed."""
    return Data(decoded_or_streamed(ImageFiles(folder_files(root))), None, None, f"folder:{root}")


# ---- mnist --------------------------------------------------------------------------------------

IDX_IMAGES = re.compile(r"^(?P<stem>.+)-images[-.]idx3-ubyte(\.gz)?$")
IDX_MAGIC = {"images": 2051, "labels": 2049}  # 0x0803 / 0x0801: uint8 data, 3 or 1 dimensions


def read_mnist(root: Path) -> Data:
    """mnist:DIR  MNIST-style IDX files (*-images-idx3-ubyte[.gz] + *-labels-idx1-ubyte[.gz])."""
    pairs = _idx_pairs(root)
    images, labels = zip(*(_read_idx_pair(img, lab) for img, lab in pairs))
    if len({im.shape[1:] for im in images}) > 1:
        raise BadInput(f"IDX image files in {root} differ in image size: "
                       + ", ".join(f"{p[0].name} {im.shape[1:3]}" for p, im in zip(pairs, images)))
    return Data(np.concatenate(images), np.concatenate(labels), DIGIT_CLASSES, f"mnist:{root}")


def _idx_pairs(root: Path) -> list[tuple[Path, Path]]:
    """Every images file with its labels file, train-* before t10k-* as in the original release."""
    stems = {}
    for p in sorted(root.iterdir()):
        m = IDX_IMAGES.match(p.name)
        if m and p.is_file():
            stems.setdefault(m["stem"], p)  # sorted: the plain file wins over its .gz twin
    if not stems:
        raise BadInput(f"no MNIST files in {root}; expected *-images-idx3-ubyte[.gz] "
                       f"with matching *-labels-idx1-ubyte[.gz]")
    order = sorted(stems, key=lambda s: (not s.startswith("train"), not s.startswith("t10k"), s))
    return [(stems[s], _labels_for(root, s, stems[s])) for s in order]


def _labels_for(root: Path, stem: str, images: Path) -> Path:
    for name in (f"{stem}-labels-idx1-ubyte", f"{stem}-labels.idx1-ubyte"):
        for p in (root / name, root / f"{name}.gz"):
            if p.is_file():
                return p
    raise BadInput(f"{images} has no labels file; expected {root / stem}-labels-idx1-ubyte[.gz]")


def _read_idx_pair(images_path: Path, labels_path: Path) -> tuple[np.ndarray, np.ndarray]:
    images = _read_idx(images_path, "images")
    labels = _read_idx(labels_path, "labels")
    if len(images) != len(labels):
        raise BadInput(f"{images_path} holds {len(images)} images but {labels_path} "
                       f"holds {len(labels)} labels; expected the same count")
    if labels.size and labels.max() > 9:
        raise BadInput(f"{labels_path} has label {labels.max()}; expected digits 0-9")
    return images[..., None], labels.astype(np.int64)  # (N, H, W, 1), (N,)


def _read_idx(path: Path, kind: str) -> np.ndarray:
    raw = _read_maybe_gzip(path)
    ndim = 3 if kind == "images" else 1
    head = 4 * (1 + ndim)
    if len(raw) < head:
        raise BadInput(f"{path} is truncated: {len(raw)} bytes, expected an IDX {kind} header of {head}")
    magic, *dims = np.frombuffer(raw, ">u4", count=1 + ndim).tolist()
    if magic != IDX_MAGIC[kind]:
        raise BadInput(f"{path} is not an IDX {kind} file: magic {magic}, expected {IDX_MAGIC[kind]}")
    want = head + int(np.prod(dims))
    if len(raw) != want:
        problem = "truncated" if len(raw) < want else "too long"
        raise BadInput(f"{path} is {problem}: {len(raw)} bytes, expected {want} for {kind} of shape {tuple(dims)}")
    return np.frombuffer(raw, np.uint8, offset=head).reshape(dims)


def _read_maybe_gzip(path: Path) -> bytes:
    """By content, not by name: renamed and re-compressed copies are common."""
    raw = path.read_bytes()
    if raw[:2] != b"\x1f\x8b":
        return raw
    try:
        return gzip.decompress(raw)
    except (OSError, EOFError, zlib.error) as e:
        raise BadInput(f"cannot read {path}: broken gzip data ({e})") from None


# ---- cifar10 ------------------------------------------------------------------------------------

CIFAR_RECORD = 1 + 3 * 32 * 32  # label byte, then the image as 3 planes of 32x32 (R, G, B)


def read_cifar10(root: Path) -> Data:
    """cifar10:DIR  CIFAR-10, binary or python version, in DIR or its cifar-10-batches-* folder."""
    folder, read, batches = _find_cifar(root)
    parts = [read(p) for p in batches]
    images = np.concatenate([im for im, _ in parts])
    labels = np.concatenate([lab for _, lab in parts])
    return Data(images, labels, _cifar_classes(folder, labels), f"cifar10:{root}")


def _find_cifar(root: Path):
    """(folder, reader, batch files) of the first layout found."""
    for folder in (root, root / "cifar-10-batches-bin", root / "cifar-10-batches-py"):
        # The binary version first: it needs no unpickling at all.
        for suffix, read in ((".bin", _cifar_bin), ("", _cifar_py)):
            batches = _batches(folder, suffix)
            if batches:
                return folder, read, batches
    raise BadInput(f"no CIFAR-10 batches in {root}; expected data_batch_*.bin / test_batch.bin "
                   f"or data_batch_* / test_batch, here or in cifar-10-batches-bin/ or cifar-10-batches-py/")


def _batches(folder: Path, suffix: str) -> list[Path]:
    """data_batch_1..5 in number order, then test_batch, as the original release orders them."""
    if not folder.is_dir():
        return []
    pattern = re.compile(r"^(data_batch_(\d+)|test_batch)" + re.escape(suffix) + "$")
    found = [(m, p) for p in folder.iterdir() if p.is_file() and (m := pattern.match(p.name))]
    found.sort(key=lambda mp: (mp[0][2] is None, int(mp[0][2] or 0)))
    return [p for _, p in found]


def _cifar_bin(path: Path) -> tuple[np.ndarray, np.ndarray]:
    raw = np.fromfile(path, np.uint8)
    if raw.size == 0 or raw.size % CIFAR_RECORD:
        raise BadInput(f"{path} is {raw.size} bytes; expected a whole number of "
                       f"{CIFAR_RECORD}-byte CIFAR-10 records (1 label + 3x32x32 pixels)")
    records = raw.reshape(-1, CIFAR_RECORD)
    images = records[:, 1:].reshape(-1, 3, 32, 32).transpose(0, 2, 3, 1)  # (N, 32, 32, 3)
    return np.ascontiguousarray(images), records[:, 0].astype(np.int64)


def _cifar_py(path: Path) -> tuple[np.ndarray, np.ndarray]:
    batch = unpickle(path)
    data, labels = _key(batch, "data", path), _key(batch, "labels", path)
    data = np.asarray(data)
    if data.dtype != np.uint8 or data.ndim != 2 or data.shape[1] != 3072:
        raise BadInput(f"{path}: 'data' is {data.dtype} {data.shape}; expected uint8 (N, 3072)")
    try:
        labels = np.asarray(labels, dtype=np.int64)
    except (TypeError, ValueError) as e:
        raise BadInput(f"{path}: labels are not integers ({e})") from None
    if labels.shape != (len(data),):
        raise BadInput(f"{path}: {len(data)} images but labels of shape {labels.shape}; expected ({len(data)},)")
    images = data.reshape(-1, 3, 32, 32).transpose(0, 2, 3, 1)  # (N, 32, 32, 3)
    return np.ascontiguousarray(images), labels


def _key(d, key: str, path: Path):
    """The batches were written by Python 2, so keys are bytes; accept re-pickled str keys too."""
    if isinstance(d, dict):
        for k in (key.encode(), key):
            if k in d:
                return d[k]
    raise BadInput(f"{path} has no {key!r} entry; expected a dict as the CIFAR-10 python version has")


def _cifar_classes(folder: Path, labels: np.ndarray) -> tuple[str, ...]:
    classes = CIFAR10_CLASSES
    if (folder / "batches.meta.txt").is_file():
        lines = (folder / "batches.meta.txt").read_text(encoding="utf-8", errors="replace").splitlines()
        classes = tuple(s.strip() for s in lines if s.strip())
    elif (folder / "batches.meta").is_file():
        names = _key(unpickle(folder / "batches.meta"), "label_names", folder / "batches.meta")
        classes = tuple(n.decode() if isinstance(n, bytes) else str(n) for n in names)
    if labels.size and labels.max() >= len(classes):
        raise BadInput(f"CIFAR-10 label {labels.max()} in {folder} but only {len(classes)} class names")
    return classes
