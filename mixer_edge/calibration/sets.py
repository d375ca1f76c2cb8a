"""Selection and storage of calibration sets.

A CalibrationSet holds images already preprocessed with the checkpoint's own Preprocess, so every
target quantizes from the very same tensors. Selection is seeded and class-stratified when labels
exist. Storage is a pickle-free .npz plus a JSON manifest carrying its sha256.
"""
from __future__ import annotations

import hashlib
import io
import json
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..data.dataset import ImageSet, SplitSpec, take_split
from ..errors import BadInput, CalibrationError
from ..models.checkpoint import atomic_write_bytes, atomic_write_json

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

    def __len__(self) -> int:
        return len(self.x)

    def batches(self, batch_size: int = 1):
        for i in range(0, len(self.x), batch_size):
            yield self.x[i:i + batch_size]

    def manifest(self) -> dict:
        return {"source": self.source, "size": len(self), "seed": self.seed, "sha256": self.sha256,
                "preprocess": self.preprocess, "shape": list(self.x.shape)}


def content_sha256(x: np.ndarray, labels: np.ndarray | None) -> str:
    h = hashlib.sha256(np.ascontiguousarray(x, np.float32).tobytes())
    if labels is not None:
        h.update(np.ascontiguousarray(labels, np.int64).tobytes())
    return h.hexdigest()


def make_calibration(spec: str, preprocess, *, size: int = DEFAULT_SIZE, seed: int = 0,
                     training_data: str | None = None, split: SplitSpec = SplitSpec()) -> CalibrationSet:
    """Draw `size` images from a data spec (or load a saved .npz). When the spec is the data the
    model was trained on, draw from its calibration split, never from train or eval images."""
    if spec.endswith(".npz"):
        return load_calibration(spec, preprocess)
    from ..data.sources import load_data

    data = load_data(spec)
    pool, where = (take_split(data, "calib", split), f"{spec} (calib split)") if spec == training_data \
        else (data, spec)
    if size < 1:
        raise CalibrationError(f"--calib-size must be at least 1, got {size}")
    if len(pool) == 0:
        raise CalibrationError(f"no readable images in calibration data {where}")
    if len(pool) < size:
        raise CalibrationError(f"calibration asked for {size} images but {where} has only {len(pool)}; "
                               f"use --calib-size {len(pool)} or more data")
    chosen = pool.subset(_select(pool, size, seed))
    x = preprocess(chosen.images)
    warn = (f"calibration set of {size} images is small (< {WARN_BELOW}); INT8 ranges may be unreliable",) \
        if size < WARN_BELOW else ()
    return CalibrationSet(x=x, labels=chosen.labels, source=where, seed=seed,
                          sha256=content_sha256(x, chosen.labels), preprocess=preprocess.to_dict(),
                          warnings=warn)


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
    arrays = {"x": calib.x} if calib.labels is None else {"x": calib.x, "labels": calib.labels}
    np.savez(buf, **arrays)
    atomic_write_bytes(path, buf.getvalue())
    atomic_write_json(path.with_suffix(".json"), {"format": "mixer-edge-calibration", "schema": 1,
                                                  **calib.manifest()})
    return path


def load_calibration(path, preprocess) -> CalibrationSet:
    """A saved set; its shape must be what this model's Preprocess produces."""
    path = Path(path)
    if not path.is_file():
        raise CalibrationError(f"calibration file not found: {path}")
    try:
        with np.load(path, allow_pickle=False) as f:
            x = f["x"].astype(np.float32, copy=False)
            labels = f["labels"] if "labels" in f.files else None
    except (ValueError, OSError, KeyError) as e:
        raise CalibrationError(f"cannot read calibration set {path}: {e}") from None
    want = (preprocess.channels, *preprocess.size)
    if x.ndim != 4 or tuple(x.shape[1:]) != want:
        raise CalibrationError(f"calibration set {path} holds images of shape {list(x.shape[1:])} but the "
                               f"model takes {list(want)} (channels, height, width)")
    meta_path = path.with_suffix(".json")
    meta = json.loads(meta_path.read_text()) if meta_path.is_file() else {}
    sha = content_sha256(x, labels)
    if meta.get("sha256") not in (None, sha):
        raise CalibrationError(f"calibration set {path} does not match the sha256 in {meta_path}")
    if meta.get("preprocess") not in (None, preprocess.to_dict()):
        raise CalibrationError(f"calibration set {path} was made with preprocessing {meta['preprocess']}, "
                               f"the model uses {preprocess.to_dict()}")
    return CalibrationSet(x=x, labels=labels, source=meta.get("source", str(path)),
                          seed=int(meta.get("seed", 0)), sha256=sha, preprocess=preprocess.to_dict())
