"""A packed artifact (`mixer-edge pack`): beside the artifact's own files, a sample of images held
out from its training and calibration, and bundle.json saying where they are and their sha256. On
the device, `python3 edge_bench.py .` (or `python3 trt_build.py .`) with no --data benchmarks
those images and writes result-<device>.json, which `mixer-edge report` merges with the host's."""
from __future__ import annotations

import hashlib
import platform
import re
from pathlib import Path

from .artifact import confined, read_json, sha256_file
from .errors import BadInput
from .schema import NAME, SHA256, check_document, ints, one_of

BUNDLE = "bundle.json"
# What `mixer-edge pack` adds beside bundle.json (named here: signing.py allows them after export)
BUNDLE_DIR, README, SUMS = "bundle", "README-device.md", "SHA256SUMS"
DEFAULT_IMAGES = 200   # held-out images `mixer-edge pack` bundles unless --images says otherwise
KIND = "mixer-edge-bundle"
BUNDLE_SHAPE = {"kind": one_of(KIND), "schema": one_of(1), "data": NAME, "sha256": SHA256, "images": ints(1, 2 ** 31)}


def read_bundle(folder) -> dict | None:
    """bundle.json of a packed artifact, checked (shape, its data inside the folder with the sha256
    it names), or None for an artifact that was not packed."""
    path = Path(folder) / BUNDLE
    if not path.exists():
        return None
    doc = read_json(path, "bundle description")
    check_document(doc, path, BUNDLE_SHAPE)
    data = confined(Path(folder), doc["data"])
    if not data.exists() or data_sha256(data) != doc["sha256"]:
        raise BadInput(f"{path}: the bundled images {doc['data']} are missing or do not match their sha256 "
                       f"(copy the bundle again, and check it with: sha256sum -c SHA256SUMS)")
    return {**doc, "path": str(data)}


def data_sha256(path: Path) -> str:
    """The bundled images' sha256: the file's (images.npz), or for a folder of PNGs (images of
    several sizes) the sha256 of its files' relative names and sha256s, in sorted order."""
    path = Path(path)
    if not path.is_dir():
        return sha256_file(path)
    h = hashlib.sha256()
    for f in sorted(p for p in path.rglob("*") if p.is_file()):
        h.update(f"{f.relative_to(path).as_posix()}\0{sha256_file(f)}\n".encode())
    return h.hexdigest()


def bundled_data(folder) -> tuple[str, dict] | None:
    """(data spec, bundle) of the bundled images, for a device run with no --data; None if not packed.
    A folder of PNGs is one sub-folder per class (imagefolder:), an .npz is read as it is."""
    bundle = read_bundle(folder)
    if bundle is None:
        return None
    path = Path(bundle["path"])
    return (f"imagefolder:{path}" if path.is_dir() else str(path)), bundle


def default_result(device_name: str | None = None) -> str:
    """result-<device>.json: one file per device, so results copied back side by side do not clash."""
    name = re.sub(r"[^A-Za-z0-9_-]+", "-", device_name or platform.node() or "device").strip("-") or "device"
    return f"result-{name}.json"
