"""runtime/artifact.py: reading an artifact (schema, shape, every listed file present with its
sha256, paths confined to the folder, only listed files opened) and the writers every stage uses
(sha256 against hashlib, atomic writes that leave nothing behind)."""
from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

import pytest

from mixer_edge.runtime import artifact
from mixer_edge.runtime.artifact import (MANIFEST, artifact_size, atomic_write_bytes, atomic_write_json, batch_axis,
                                         confined, file_hashes, listed, model_file, read_json, read_manifest,
                                         sha256_file)
from mixer_edge.runtime.errors import BadInput

PRE = {"size": [8, 8], "channels": 1, "mean": [0.5], "std": [0.5]}
ONNX = b"\x3a\x00"   # an ONNX ModelProto with an empty graph: read_manifest reads what a model.onnx says (claims.py)


def make(folder: Path, files: dict, **extra) -> Path:
    """An artifact folder holding `files` (name -> bytes), listed with their sha256."""
    folder.mkdir(parents=True, exist_ok=True)
    for name, data in files.items():
        (folder / name).parent.mkdir(parents=True, exist_ok=True)
        (folder / name).write_bytes(data)
    entries = [{"path": n, "sha256": hashlib.sha256(d).hexdigest()} for n, d in files.items()]
    manifest = {"schema": 1, "target": "onnx", "precision": "fp32", "files": entries, "preprocess": PRE,
                "classes": ["a", "b"], **extra}
    (folder / MANIFEST).write_text(json.dumps(manifest))
    return folder


def test_sha256_file_is_hashlib(tmp_path):
    data = os.urandom(3 << 20)   # more than one read chunk
    (tmp_path / "f").write_bytes(data)
    assert sha256_file(tmp_path / "f") == hashlib.sha256(data).hexdigest()


def test_read_manifest_checks_every_listed_file(tmp_path):
    folder = make(tmp_path / "a", {"model.onnx": ONNX, "sub/x.bin": b"x"})
    m = read_manifest(folder)
    assert file_hashes(m) == {"model.onnx": hashlib.sha256(ONNX).hexdigest(),
                              "sub/x.bin": hashlib.sha256(b"x").hexdigest()}
    assert artifact_size(folder, m) == 3 and model_file(folder, m, ".onnx") == folder / "model.onnx"
    (folder / "sub/x.bin").write_bytes(b"y")
    with pytest.raises(BadInput, match="sub/x.bin does not match its sha256"):
        read_manifest(folder)
    assert read_manifest(folder, verify=False)["target"] == "onnx"   # the manifest alone
    (folder / "sub/x.bin").unlink()
    with pytest.raises(BadInput, match="incomplete: sub/x.bin is missing"):
        read_manifest(folder)


@pytest.mark.parametrize("write, message", [
    (lambda f: None, r"not a mixer-edge artifact \(no manifest.json\)"),
    (lambda f: (f / MANIFEST).write_text("[1, 2]"), r"artifact schema None; this script reads schema 1"),
    (lambda f: (f / MANIFEST).write_text('{"schema": 2}'), r"artifact schema 2"),
    (lambda f: (f / MANIFEST).write_bytes(b"\xff{"), r"not valid JSON"),
    (lambda f: (f / MANIFEST).mkdir(), r"not a mixer-edge artifact"),
])
def test_what_is_not_an_artifact_is_refused(tmp_path, write, message):
    folder = tmp_path / "a"
    folder.mkdir()
    write(folder)
    with pytest.raises(BadInput, match=message):
        read_manifest(folder)


@pytest.mark.parametrize("name", ["../outside.onnx", "/etc/passwd", "", "a/../../b", "x\x00y", 5, None])
def test_paths_stay_inside_the_folder(tmp_path, name):
    (tmp_path / "outside.onnx").write_bytes(b"")
    with pytest.raises(BadInput, match="manifest file path"):
        confined(tmp_path / "a", name)


def test_a_link_leading_out_is_refused(tmp_path):
    (tmp_path / "secret").write_text("s")
    folder = tmp_path / "a"
    folder.mkdir()
    (folder / "link").symlink_to(tmp_path / "secret")
    with pytest.raises(BadInput, match="leads outside the artifact folder"):
        confined(folder, "link")
    assert confined(folder, "sub/../model.onnx") == folder / "sub/../model.onnx"   # inside: allowed


def test_only_listed_files_are_opened(tmp_path):
    folder = make(tmp_path / "a", {"model.onnx": ONNX})
    m = read_manifest(folder)
    (folder / "extra.npz").write_bytes(b"not vouched for")
    assert listed(folder, m, "model.onnx") == folder / "model.onnx"
    with pytest.raises(BadInput, match="'extra.npz' is not among the files manifest.json lists"):
        listed(folder, m, "extra.npz")
    with pytest.raises(BadInput, match=r"expected one .xml file in manifest.json, found none"):
        model_file(folder, m, ".xml")


def test_batch_axis():
    assert batch_axis({"input": {"shape": ["batch", 1, 8, 8]}}) is None
    assert batch_axis({"input": {"shape": [4, 1, 8, 8]}}) == 4
    assert batch_axis({}) is None


def test_read_json_says_which_file_and_why(tmp_path):
    (tmp_path / "deep.json").write_text("[" * 100_000 + "]" * 100_000)
    with pytest.raises(BadInput, match="deep.json is not valid JSON"):
        read_json(tmp_path / "deep.json", "result file")
    with pytest.raises(BadInput, match="result file not found"):
        read_json(tmp_path / "none.json", "result file")
    (tmp_path / "surrogate.json").write_text('{"a": "\\ud800"}')
    with pytest.raises(BadInput, match="surrogate.json is not valid JSON"):
        read_json(tmp_path / "surrogate.json", "result file")


def test_atomic_writes_leave_nothing_half_written(tmp_path, monkeypatch):
    path = tmp_path / "sub" / "r.json"
    atomic_write_json(path, {"a": 1})
    assert json.loads(path.read_text()) == {"a": 1}
    assert oct(path.stat().st_mode & 0o777) == oct(0o666 & ~_umask())   # not mkstemp's 0600

    def fail(*a):
        raise OSError("disk full")
    monkeypatch.setattr(artifact.os, "replace", fail)
    with pytest.raises(OSError, match="disk full"):
        atomic_write_bytes(path, b"new")
    assert json.loads(path.read_text()) == {"a": 1} and sorted(p.name for p in path.parent.iterdir()) == ["r.json"]


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def test_require_writable(tmp_path, monkeypatch):
    """A folder the results cannot be written to is refused before any work, in one line."""
    artifact.require_writable(tmp_path, "the result")
    artifact.require_writable(tmp_path / "not" / "yet", "the result")   # made later: its nearest parent decides
    asked = []
    monkeypatch.setattr(artifact.os, "access", lambda p, mode: asked.append(Path(p)) or mode != os.W_OK)
    with pytest.raises(BadInput, match=r"is not writable \(the result\): copy the artifact to a folder you own"):
        artifact.require_writable(tmp_path / "not" / "yet", "the result")
    assert asked == [tmp_path]
