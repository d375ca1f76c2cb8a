"""Selection and storage of calibration sets.

A CalibrationSet holds images already preprocessed with the checkpoint's own Preprocess, so every
target quantizes from the very same tensors. Selection is seeded and class-stratified when labels
exist. Storage is a pickle-free .npz plus a JSON manifest carrying its sha256.
"""
from __future__ import annotations

import hashlib
import io
import zipfile
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..data.dataset import ImageSet, SplitSpec, split_indices, warn_small
from ..data.sources import ReadOptions
from ..errors import BadInput, CalibrationError
from ..runtime.artifact import atomic_write_bytes, atomic_write_json, read_json
from ..runtime.identity import fingerprint

DEFAULT_SIZE = 300
WARN_BELOW = 100


@dataclass(frozen=True)
class CalibrationSet:
    x: np.ndarray                     # (N, C, H, W) float32, preprocessed
    labels: np.ndarray | None         # (N,) int64 or None
    source: str                       # data spec (and split) it came from
    seed: int
    sha256: str
    preprocess: dict
    warnings: tuple[str, ...] = field(default=())
    keys: np.ndarray | None = None    # (N,) uint64 content keys of the raw images; None: unknown (old .npz)

    def __len__(self) -> int:
        return len(self.x)

    def batches(self, batch_size: int = 1):
        for i in range(0, len(self.x), batch_size):
            yield self.x[i:i + batch_size]

    def manifest(self) -> dict:
        return {"source": self.source, "size": len(self), "seed": self.seed, "sha256": self.sha256,
                "fingerprint": None if self.keys is None else fingerprint(self.keys),
                "preprocess": self.preprocess, "shape": list(self.x.shape)}


def content_sha256(x: np.ndarray, labels: np.ndarray | None) -> str:
    h = hashlib.sha256(np.ascontiguousarray(x, np.float32).tobytes())
    if labels is not None:
        h.update(np.ascontiguousarray(labels, np.int64).tobytes())
    return h.hexdigest()


def make_calibration(spec: str, preprocess, *, size: int = DEFAULT_SIZE, seed: int = 0,
                     trained=None, split: SplitSpec = SplitSpec(), validation_apart: bool = False,
                     options: ReadOptions = ReadOptions()) -> CalibrationSet:
    """Draw `size` images from a data spec (or load a saved .npz). Never an image the model was
    trained on (`trained`: content keys), nor one of the data's eval split where validation may take
    it (calibration_pool; `calib make` saves a set that validation never takes its images from: it
    passes validation_apart)."""
    if spec.endswith(".npz"):
        return load_calibration(spec, preprocess)
    from ..data.sources import load_data

    return draw_calibration(load_data(spec, options), preprocess, size=size, seed=seed, trained=trained,
                            split=split, validation_apart=validation_apart)


def calibration_pool(data: ImageSet, trained, split: SplitSpec, validation_apart: bool = False) -> tuple:
    """(images calibration may draw from, what they are). The train and calib splits of the data, less
    the images the model was trained on: on the model's own training data that is exactly its calib
    split, and the eval split stays for validation (without --eval-data) and for the held-out
    figures of eval, bench and pack. The user's own calibration images, sharing none with the
    training data, are used whole when validation has images of its own (validation_apart:
    --eval-data, or a set saved for later)."""
    if validation_apart and not np.isin(data.keys, _keys(trained)).any():
        return data, f"{data.spec} (all {len(data)} images: none trained on, validation has its own)"
    parts = split_indices(data, split)
    pool = data.subset(np.sort(np.concatenate([parts["train"], parts["calib"]]))).without(trained)
    return pool, f"{data.spec} ({len(pool)} of {len(data)} images: not trained on, not held out for validation)"


def _keys(keys) -> np.ndarray:
    return np.zeros(0, np.uint64) if keys is None else np.asarray(keys, np.uint64)


def draw_calibration(data: ImageSet, preprocess, *, size: int, seed: int, trained=None,
                     split: SplitSpec = SplitSpec(), validation_apart: bool = False) -> CalibrationSet:
    if size < 1:
        raise CalibrationError(f"--calib-size must be at least 1, got {size}")
    pool, where = calibration_pool(data, trained, split, validation_apart)
    if len(pool) == 0:
        raise CalibrationError(f"no usable images in calibration data {where}")
    if len(pool) < size:
        raise CalibrationError(f"calibration asked for {size} images but {where} has only {len(pool)}; "
                               f"use --calib-size {len(pool)} or more data")
    chosen = pool.subset(_select(pool, size, seed))
    warn_small(chosen, preprocess.size)
    x = preprocess(chosen.images)   # a streamed folder decodes only these `size` images here
    warn = (f"calibration set of {size} images is small (< {WARN_BELOW}); INT8 ranges may be unreliable",) \
        if size < WARN_BELOW else ()
    return CalibrationSet(x=x, labels=chosen.labels, source=where, seed=seed,
                          sha256=content_sha256(x, chosen.labels), preprocess=preprocess.to_dict(),
                          warnings=warn, keys=chosen.keys)


def _select(pool: ImageSet, size: int, seed: int) -> np.ndarray:
    """Seeded choice of `size` indices, in proportion to each class when labels exist."""
    rng = np.random.default_rng(seed)
    if pool.labels is None:
        return np.sort(rng.permutation(len(pool))[:size])
    classes = np.unique(pool.labels)
    groups = [rng.permutation(np.flatnonzero(pool.labels == c)) for c in classes]
    # Round-robin over classes by within-class rank: any prefix is as balanced as it can be.
    ranks = np.concatenate([np.arange(len(g)) / len(g) for g in groups])
    order = np.concatenate(groups)[np.argsort(ranks, kind="stable")]
    return np.sort(order[:size])


def save_calibration(calib: CalibrationSet, path) -> Path:
    """path.npz (arrays only) + path.json (manifest with sha256), both written atomically."""
    path = Path(path)
    if path.suffix != ".npz":
        raise BadInput(f"calibration sets are saved as .npz, got {path}")
    path.parent.mkdir(parents=True, exist_ok=True)
    buf = io.BytesIO()
    arrays = {"x": calib.x, **{k: v for k, v in (("labels", calib.labels), ("keys", calib.keys)) if v is not None}}
    np.savez(buf, **arrays)
    atomic_write_bytes(path, buf.getvalue())
    try:
        atomic_write_json(path.with_suffix(".json"), {"format": "mixer-edge-calibration", "schema": 1,
                                                      **calib.manifest()})
    except BaseException:   # Ctrl-C or a full disk between the two files: keep neither, not half a set
        path.unlink(missing_ok=True)
        raise
    return path


def load_calibration(path, preprocess) -> CalibrationSet:
    """A saved set; its shape must be what this model's Preprocess produces."""
    path = Path(path)
    if not path.is_file():
        raise CalibrationError(f"calibration file not found: {path}")
    x, labels, keys = _read_arrays(path)
    want = (preprocess.channels, *preprocess.size)
    if x.ndim != 4 or tuple(x.shape[1:]) != want:
        raise CalibrationError(f"calibration set {path} holds images of shape {list(x.shape[1:])} but the "
                               f"model takes {list(want)} (channels, height, width)")
    meta = _read_sidecar(path)
    sha = content_sha256(x, labels)
    if meta.get("sha256") not in (None, sha):
        raise CalibrationError(f"calibration set {path} does not match the sha256 in {path.with_suffix('.json')}")
    if meta.get("preprocess") not in (None, preprocess.to_dict()):
        raise CalibrationError(f"calibration set {path} was made with preprocessing {meta['preprocess']}, "
                               f"the model uses {preprocess.to_dict()}")
    seed = meta.get("seed", 0)
    return CalibrationSet(x=x, labels=labels, source=str(meta.get("source", path)),
                          seed=seed if isinstance(seed, int) else 0, sha256=sha,
                          preprocess=preprocess.to_dict(), keys=keys)


def _read_arrays(path: Path):
    """x float (N, C, H, W); labels integer (N,) or absent; keys uint64 (N,) or absent (older sets)."""
    try:
        with np.load(path, allow_pickle=False) as f:
            arrays = {k: f[k] for k in ("x", "labels", "keys") if k in f.files}
    except (ValueError, OSError, EOFError, zipfile.BadZipFile) as e:
        raise CalibrationError(f"cannot read calibration set {path}: {e}") from None
    x, labels, keys = arrays.get("x"), arrays.get("labels"), arrays.get("keys")
    problems = []
    if x is None or x.dtype.kind not in "fiu":
        problems.append("'x' must be a numeric (N, C, H, W) array" if x is not None else "no 'x' array")
    n = None if x is None else len(x)
    if labels is not None and (labels.dtype.kind not in "iu" or labels.shape != (n,)):
        problems.append(f"'labels' is {labels.dtype} {list(labels.shape)}; expected integers of shape [{n}]")
    if keys is not None and (keys.dtype != np.uint64 or keys.shape != (n,)):
        problems.append(f"'keys' is {keys.dtype} {list(keys.shape)}; expected uint64 of shape [{n}]")
    if problems:
        raise CalibrationError(f"calibration set {path}: " + "; ".join(problems) +
                               " (a set written by `mixer-edge calib make`)")
    return x.astype(np.float32, copy=False), None if labels is None else labels.astype(np.int64), keys


def _read_sidecar(path: Path) -> dict:
    """The JSON beside the .npz, when there is one: a dict with the documented keys."""
    meta_path = path.with_suffix(".json")
    if not meta_path.is_file():
        return {}
    meta = read_json(meta_path, "calibration sidecar")
    if not isinstance(meta, dict) or meta.get("format", "mixer-edge-calibration") != "mixer-edge-calibration":
        raise CalibrationError(f"calibration sidecar {meta_path} is not a mixer-edge calibration manifest "
                               f"(expected an object with format 'mixer-edge-calibration')")
    return meta
