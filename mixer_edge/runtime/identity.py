"""Image identity: content keys, fingerprints, seeded splits, and the held-out selection.

An image is known by its pixels, not by the path or spec it came through: the same digit read from
mnist:data/mnist, mnist:/data/mnist, a copied folder of PNGs or a saved .npz has one key, so the
split and the images held out from evaluation are the same everywhere (docs/data.md).
"""
from __future__ import annotations

import base64
import binascii
import hashlib

import numpy as np

from .errors import BadInput

SPLIT_DEFAULT = {"seed": 0, "train": 0.8, "calib": 0.1, "eval": 0.1}
KEY_BYTES = 8
SELECTIONS = ("held-out", "all")


def image_keys(images) -> np.ndarray:
    """(N,) uint64: BLAKE2b of each (H, W, C) uint8 image's shape and pixels, 8 bytes."""
    keys = np.empty(len(images), np.uint64)
    for i, im in enumerate(images):
        h = hashlib.blake2b(np.asarray(im.shape, "<i8").tobytes(), digest_size=KEY_BYTES)
        h.update(np.ascontiguousarray(im, np.uint8).tobytes())
        keys[i] = int.from_bytes(h.digest(), "little")
    return keys


def fingerprint(keys) -> str:
    """Content fingerprint of an image set: order-free (sorted keys), 16 hex digits."""
    return hashlib.sha256(np.sort(np.asarray(keys, np.uint64)).astype("<u8").tobytes()).hexdigest()[:16]


def pack_keys(keys) -> str:
    """Sorted unique keys as base64 text, for manifests and checkpoint metadata."""
    return base64.b64encode(np.unique(np.asarray(keys, np.uint64)).astype("<u8").tobytes()).decode("ascii")


def unpack_keys(text: str, where: str) -> np.ndarray:
    try:
        raw = base64.b64decode(text.encode("ascii"), validate=True)
    except (binascii.Error, ValueError, AttributeError) as e:
        raise BadInput(f"{where}: image keys are not base64 ({e})") from None
    if len(raw) % KEY_BYTES:
        raise BadInput(f"{where}: image keys hold {len(raw)} bytes, not a multiple of {KEY_BYTES}")
    return np.frombuffer(raw, "<u8").astype(np.uint64)


def _mixed(keys: np.ndarray, seed: int) -> np.ndarray:
    """splitmix64 of key ^ seed: a seeded shuffle order that depends on each image alone."""
    with np.errstate(over="ignore"):
        z = keys ^ np.uint64((int(seed) * 0x9E3779B97F4A7C15) % 2 ** 64)
        z = (z ^ (z >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
        z = (z ^ (z >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
        return z ^ (z >> np.uint64(31))


def split_indices(labels, keys, split: dict = SPLIT_DEFAULT) -> dict:
    """Positions of the 'train', 'calib', 'eval' images, sorted. Each class is ordered by its images'
    seeded content hashes, the classes interleaved by rank so any cut is stratified, and the whole
    set cut by rounded cumulative counts (10,000 -> exactly 8,000 / 1,000 / 1,000). Depends on the
    images, labels and seed alone: a reordered, copied or re-encoded set splits the same."""
    keys = np.asarray(keys, np.uint64)
    n = len(keys)
    order = stratified_order(labels, keys, split["seed"])
    train, calib = int(round(n * split["train"])), int(round(n * split["calib"]))
    want = {"train": train, "calib": calib, "eval": n - train - calib}
    out, start = {}, 0
    for s in ("train", "calib", "eval"):
        out[s] = np.sort(order[start:start + want[s]])
        start += want[s]
    return out


def stratified_order(labels, keys, seed: int) -> np.ndarray:
    """Every position, each class ordered by its images' seeded content hashes and the classes
    interleaved by rank: any prefix is a seeded, class-stratified sample that depends on the
    images, labels and seed alone."""
    keys = np.asarray(keys, np.uint64)
    n = len(keys)
    if not n:
        return np.arange(0)
    prio = _mixed(keys, seed)
    groups = [np.arange(n)] if labels is None else [np.flatnonzero(labels == c) for c in np.unique(labels)]
    order = np.concatenate([g[np.lexsort((keys[g], prio[g]))] for g in groups])
    ranks = np.concatenate([np.arange(len(g)) / max(len(g), 1) for g in groups])
    return order[np.argsort(ranks, kind="stable")]


def reserved_keys(manifest: dict) -> np.ndarray:
    """Keys of the images the model was trained on and the artifact was calibrated on."""
    images = manifest.get("images") or {}
    return unpack_keys(images.get("reserved", ""), "manifest.json images.reserved")


def held_out(keys, manifest: dict, spec: str) -> np.ndarray:
    """Positions of the images (by their keys) that training and calibration did not use."""
    kept = np.flatnonzero(~np.isin(keys, reserved_keys(manifest)))
    if not len(kept):
        raise BadInput(f"every image of {spec!r} was used in training or calibration "
                       f"({len(keys)} images); give other images, or --images all")
    return kept


def select(data, selection: str, manifest: dict, limit: int | None, keys=None) -> tuple:
    """(data, about): held-out: every image of the data (readers.Data) that training and calibration
    did not use (by content); all: every image, training and calibration images included (said so
    in the result). keys: the data's image_keys when the caller has them (one hashing pass per set)."""
    if selection not in SELECTIONS:
        raise BadInput(f"unknown image selection {selection!r}; accepted: {', '.join(SELECTIONS)}")
    keys = image_keys(data.images) if keys is None else keys
    seen = np.isin(keys, reserved_keys(manifest))
    kept = held_out(keys, manifest, data.spec) if selection == "held-out" else np.arange(len(keys))
    kept = kept[:limit]
    return subset(data, kept), {
        "spec": data.spec, "data_fingerprint": fingerprint(keys), "selection": selection,
        "fingerprint": fingerprint(keys[kept]), "n": len(kept),
        "reserved_in_data": int(seen.sum()), "reserved_included": int(seen[kept].sum())}


def subset(data, idx):
    """The images and labels of data (readers.Data) at positions idx. An array, or a lazy ImageFiles,
    takes the index array as it is (nothing decoded); a list of images of different sizes is picked
    one by one."""
    images = [data.images[i] for i in idx] if isinstance(data.images, (list, tuple)) else data.images[idx]
    return data._replace(images=images, labels=None if data.labels is None else data.labels[idx])
