"""Data sources: a spec string -> an ImageSet of raw uint8 images.

    digits             scikit-learn's bundled 8x8 digits
    mnist:DIR          IDX files, gzipped or not
    cifar10:DIR        the binary or the python (pickle) version
    imagefolder:DIR    one sub-folder per class
    folder:DIR         unlabeled images
    DIR                a bare folder: imagefolder if it holds class folders, folder if it holds images

SOURCES is the registry. A loader's parameter list is its spec grammar: no parameter means the bare
name, one parameter means NAME:DIR. The first docstring line is its --help text.
"""
from __future__ import annotations

import gzip
import inspect
import pickle
import re
import zlib
from dataclasses import replace
from pathlib import Path

import numpy as np

from ..errors import BadInput, unknown
from ..runtime import edge_bench as eb
from .dataset import ImageSet

DIGIT_CLASSES = tuple(str(d) for d in range(10))
CIFAR10_CLASSES = ("airplane", "automobile", "bird", "cat", "deer",
                   "dog", "frog", "horse", "ship", "truck")
IMAGE_SUFFIXES = eb.IMAGE_SUFFIXES
PROGRESS_ABOVE = 500  # files; fewer read in well under a second, a bar would only flicker


def load_data(spec: str) -> ImageSet:
    """Load the data set a spec names; ImageSet.spec keeps the spec exactly as given."""
    name, sep, arg = spec.partition(":")
    if name in SOURCES:
        data = _call(name, arg if sep else None, spec)
    else:
        data = _bare_path(spec)
    return replace(data, spec=spec)


def describe_sources() -> list[tuple[str, str]]:
    """(name, one-line help) for every source, for --help text."""
    return [(name, inspect.getdoc(fn).splitlines()[0]) for name, fn in SOURCES.items()]


def _takes_folder(loader) -> bool:
    return bool(inspect.signature(loader).parameters)


def _call(name: str, arg: str | None, spec: str) -> ImageSet:
    loader = SOURCES[name]
    if not _takes_folder(loader):
        if arg is not None:
            raise BadInput(f"data source {name!r} takes no folder, got {spec!r}; use: {name}")
        return loader()
    if not arg:
        raise BadInput(f"data source {name!r} needs a folder: {name}:DIR")
    root = Path(arg).expanduser()
    if not root.is_dir():
        what = "is a file, not a folder" if root.exists() else "not found"
        raise BadInput(f"data folder {what}: {arg} (from spec {spec!r})")
    return loader(root)


def _bare_path(spec: str) -> ImageSet:
    """A spec with no known prefix: an existing folder of images, or a mistake we name."""
    root = Path(spec).expanduser()
    if root.is_dir():
        return SOURCES[_guess_kind(root)](root)
    if root.exists():
        raise BadInput(f"data spec {spec!r} is a file; accepted: a folder, or "
                       f"{', '.join(SOURCES)} (an .npz calibration set goes to the calibration stage)")
    name, sep, _ = spec.partition(":")
    # 'svhn:DIR' is a source name we lack; 'C:\\x' (one letter) or './x' is a path that is not there.
    looks_named = bool(sep) and re.fullmatch(r"[A-Za-z][\w-]+", name)
    if not looks_named and (any(c in spec for c in "/\\~") or spec.startswith(".")):
        raise BadInput(f"data folder not found: {spec} (from spec {spec!r})")
    raise unknown("data source", name, SOURCES)


def _guess_kind(root: Path) -> str:
    has_images = bool(eb._images_in(root))
    has_classes = any(eb._images_in(d) for d in eb._class_dirs(root))
    if has_images == has_classes:
        found = "both loose images and class sub-folders" if has_images else "no images"
        raise BadInput(f"cannot tell what folder {root} holds ({found}); "
                       f"say imagefolder:{root} (one sub-folder per class) or folder:{root} (unlabeled)")
    return "imagefolder" if has_classes else "folder"


# ---- digits -------------------------------------------------------------------------------------

def load_digits() -> ImageSet:
    """digits  scikit-learn's bundled 8x8 handwritten digits, 1,797 images, 10 classes."""
    from sklearn.datasets import load_digits as sk_digits  # heavy import, only when asked for

    d = sk_digits()
    # Pixels are counts 0..16 (an 8x8 grid of 4x4 blocks); scale to the 0..255 every source uses.
    images = np.rint(d.images * (255.0 / 16.0)).astype(np.uint8)[..., None]  # (N, 8, 8, 1)
    return ImageSet(images, d.target.astype(np.int64), DIGIT_CLASSES, "digits")


# ---- mnist --------------------------------------------------------------------------------------

IDX_IMAGES = re.compile(r"^(?P<stem>.+)-images[-.]idx3-ubyte(\.gz)?$")
IDX_MAGIC = {"images": 2051, "labels": 2049}  # 0x0803 / 0x0801: uint8 data, 3 or 1 dimensions


def load_mnist(root: Path) -> ImageSet:
    """mnist:DIR  MNIST-style IDX files (*-images-idx3-ubyte[.gz] + *-labels-idx1-ubyte[.gz])."""
    pairs = _idx_pairs(root)
    images, labels = zip(*(_read_idx_pair(img, lab) for img, lab in pairs))
    if len({im.shape[1:] for im in images}) > 1:
        raise BadInput(f"IDX image files in {root} differ in image size: "
                       + ", ".join(f"{p[0].name} {im.shape[1:3]}" for p, im in zip(pairs, images)))
    return ImageSet(np.concatenate(images), np.concatenate(labels), DIGIT_CLASSES, f"mnist:{root}")


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


def load_cifar10(root: Path) -> ImageSet:
    """cifar10:DIR  CIFAR-10, binary or python version, in DIR or its cifar-10-batches-* folder."""
    folder, read, batches = _find_cifar(root)
    parts = [read(p) for p in batches]
    images = np.concatenate([im for im, _ in parts])
    labels = np.concatenate([lab for _, lab in parts])
    return ImageSet(images, labels, _cifar_classes(folder, labels), f"cifar10:{root}")


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
    batch = _unpickle(path)
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
        names = _key(_unpickle(folder / "batches.meta"), "label_names", folder / "batches.meta")
        classes = tuple(n.decode() if isinstance(n, bytes) else str(n) for n in names)
    if labels.size and labels.max() >= len(classes):
        raise BadInput(f"CIFAR-10 label {labels.max()} in {folder} but only {len(classes)} class names")
    return classes


# ---- restricted unpickling ----------------------------------------------------------------------

def _latin1_bytes(text: str, encoding: str = "latin1") -> bytes:
    """Protocol-2 pickles spell bytes as _codecs.encode(text, 'latin1'); allow exactly that."""
    if encoding.lower().replace("-", "") != "latin1":
        raise pickle.UnpicklingError(f"refusing _codecs.encode with encoding {encoding!r}")
    return text.encode("latin1")


# Resolved from live objects, so the allow-list works on numpy 1 (numpy.core) and 2 (numpy._core)
# without importing the numpy.core shim that numpy 2 deprecates.
_RECONSTRUCT = np.empty(0).__reduce__()[0]
_SCALAR = np.int64(0).__reduce__()[0]
_FROMBUFFER = np.empty(1).__reduce_ex__(5)[0]  # protocol 5 writes arrays as _frombuffer(bytes, ...)
PICKLE_ALLOWED = {
    **{(m, "_reconstruct"): _RECONSTRUCT for m in ("numpy.core.multiarray", "numpy._core.multiarray")},
    **{(m, "scalar"): _SCALAR for m in ("numpy.core.multiarray", "numpy._core.multiarray")},
    **{(m, "_frombuffer"): _FROMBUFFER for m in ("numpy.core.numeric", "numpy._core.numeric")},
    ("numpy", "ndarray"): np.ndarray,
    ("numpy", "dtype"): np.dtype,
    ("_codecs", "encode"): _latin1_bytes,
    **{("builtins", t.__name__): t for t in (list, dict, tuple, str, bytes, bytearray, int, float)},
}


class _DataOnlyUnpickler(pickle.Unpickler):
    """Unpickles numpy arrays and plain containers only. A pickle can name any callable and
    have it run while loading; a downloaded batch file is untrusted input."""

    def __init__(self, file, path: Path):
        super().__init__(file, encoding="bytes")  # Python 2 str -> bytes, as CIFAR's own loader does
        self.path = path

    def find_class(self, module: str, name: str):
        if (module, name) in PICKLE_ALLOWED:
            return PICKLE_ALLOWED[(module, name)]
        raise BadInput(f"refusing to unpickle {module}.{name} from {self.path}; "
                       f"only numpy arrays and plain lists, dicts, strings and bytes are accepted")


def _unpickle(path: Path):
    with open(path, "rb") as f:
        try:
            return _DataOnlyUnpickler(f, path).load()
        except BadInput:
            raise
        except Exception as e:  # a corrupt pickle can fail in many ways; all mean "not a batch"
            raise BadInput(f"cannot read {path}: {type(e).__name__}: {e}") from None


# ---- image folders ------------------------------------------------------------------------------

def load_imagefolder(root: Path) -> ImageSet:
    """imagefolder:DIR  one sub-folder of png/jpg/bmp images per class; sorted folder names are the classes."""
    d = _runtime(eb.read_imagefolder, root, _progress)
    return ImageSet(_images(d.images), d.labels, d.classes, f"imagefolder:{root}")


def load_folder(root: Path) -> ImageSet:
    """folder:DIR  a folder of unlabeled png/jpg/bmp images (for calibration or prediction)."""
    d = _runtime(eb.read_folder, root, _progress)
    return ImageSet(_images(d.images), None, (), f"folder:{root}")


# The image-folder readers are the device runtime's (one implementation, so a device reads a folder
# as training did); these adapt them to ImageSet and BadInput.

def _runtime(fn, *args):
    try:
        return fn(*args)
    except eb.BenchError as e:
        raise BadInput(str(e)) from None


def _images(images):
    """Stacked (N, H, W, C) when every image has one shape, else a tuple of (H, W, C) arrays."""
    return images if isinstance(images, np.ndarray) else tuple(images)


def _progress(files):
    from ..progress import progress

    return progress(files, desc="reading images", enabled=len(files) > PROGRESS_ABOVE, leave=False)


SOURCES = {
    "digits": load_digits,
    "mnist": load_mnist,
    "cifar10": load_cifar10,
    "imagefolder": load_imagefolder,
    "folder": load_folder,
}
