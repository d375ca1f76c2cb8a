"""runtime/bundle.py: a packed artifact's bundle.json read and checked (shape, a path inside the
folder, the sha256 of what it names, by hashlib here), and the default result file's name."""
from __future__ import annotations

import hashlib
import json

import numpy as np
import pytest

from mixer_edge.runtime.bundle import BUNDLE, KIND, bundled_data, data_sha256, default_result, read_bundle
from mixer_edge.runtime.errors import BadInput


def bundle(folder, data="bundle/images.npz", **over) -> dict:
    (folder / "bundle").mkdir(parents=True, exist_ok=True)
    np.savez(folder / "bundle" / "images.npz", images=np.zeros((3, 8, 8, 1), np.uint8), labels=np.arange(3))
    doc = {"kind": KIND, "schema": 1, "data": data, "images": 3,
           "sha256": hashlib.sha256((folder / "bundle" / "images.npz").read_bytes()).hexdigest(), **over}
    (folder / BUNDLE).write_text(json.dumps(doc))
    return doc


def test_an_artifact_that_was_not_packed(tmp_path):
    assert read_bundle(tmp_path) is None and bundled_data(tmp_path) is None


def test_a_packed_artifact(tmp_path):
    bundle(tmp_path)
    spec, doc = bundled_data(tmp_path)
    assert spec == str(tmp_path / "bundle" / "images.npz") and doc["images"] == 3


def test_png_folder_digest_and_spec(tmp_path):
    """A folder of PNGs hashes as its files' relative names and sha256s, in order (computed here by hand)."""
    for rel, data in (("images/1/b.png", b"bb"), ("images/0/a.png", b"a")):
        (tmp_path / "bundle" / rel).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / "bundle" / rel).write_bytes(data)
    h = hashlib.sha256()
    for rel, data in (("0/a.png", b"a"), ("1/b.png", b"bb")):
        h.update(f"{rel}\0{hashlib.sha256(data).hexdigest()}\n".encode())
    assert data_sha256(tmp_path / "bundle" / "images") == h.hexdigest()
    (tmp_path / BUNDLE).write_text(json.dumps({"kind": KIND, "schema": 1, "data": "bundle/images", "images": 2,
                                              "sha256": h.hexdigest()}))
    assert bundled_data(tmp_path)[0] == f"imagefolder:{tmp_path / 'bundle' / 'images'}"


@pytest.mark.parametrize("change, words", [
    (lambda f: (f / "bundle" / "images.npz").write_bytes(b"tampered"), "do not match their sha256"),
    (lambda f: (f / "bundle" / "images.npz").unlink(), "missing"),
    (lambda f: bundle(f, data="../outside.npz"), "leads outside"),
    (lambda f: bundle(f, kind="something-else"), "kind"),
    (lambda f: (f / BUNDLE).write_text("{not json"), "bundle description"),
])
def test_a_bad_bundle_is_one_error(tmp_path, change, words):
    bundle(tmp_path)
    change(tmp_path)
    with pytest.raises(BadInput, match=words):
        read_bundle(tmp_path)


def test_default_result_name():
    assert default_result("orin-agx") == "result-orin-agx.json"
    assert default_result("my jetson/../x") == "result-my-jetson-x.json"   # one file name, no folder
    assert default_result("orin.local") == "result-orin-local.json" and default_result("..") == "result-device.json"
