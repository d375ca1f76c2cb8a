"""runtime/claims.py: what manifest.json says of its files, re-derived from them on every read
(artifact.read_manifest), and binding.json sealing the rest. Issue 20: an INT8 artifact whose
manifest was changed to "fp32" by hand was run, benchmarked and recommended as FP32."""
from __future__ import annotations

import hashlib
import json
import shutil

import pytest

from conftest import reseal
from mixer_edge.runtime.artifact import read_manifest
from mixer_edge.runtime.claims import BINDING, bound, golden_threshold
from mixer_edge.runtime.errors import BadInput


@pytest.fixture(scope="module")
def int8(ck, calib, val, tmp_path_factory):
    from mixer_edge.export.base import ExportSpec
    from mixer_edge.export.build import export_one

    pytest.importorskip("onnxruntime")
    return export_one(ck, "onnx", ExportSpec("int8"), calib, tmp_path_factory.mktemp("claims"),
                      validation=val).artifact.path


def edited(source, tmp_path, edit, sealed: bool = False):
    """A copy of an artifact with its manifest edited; sealed: binding.json recomputed, as a forger
    would, so that what refuses it is the re-derivation from the model file alone."""
    folder = tmp_path / source.name
    shutil.copytree(source, folder)
    manifest = json.loads((folder / "manifest.json").read_text())
    edit(manifest)
    (folder / "manifest.json").write_text(json.dumps(manifest))
    if sealed:
        reseal(folder)
    return folder


def test_an_int8_artifact_edited_to_fp32_is_refused_naming_both(int8, tmp_path):
    folder = edited(int8, tmp_path, lambda m: m.update(precision="fp32"))
    with pytest.raises(BadInput) as e:
        read_manifest(folder)
    said = str(e.value)
    assert "precision: manifest.json says 'fp32', model.onnx says 'int8' (" in said and "QuantizeLinear" in said
    assert said.endswith("re-export the artifact, or restore its manifest.json") and "\n" not in said


def _classes(m):
    m["classes"].append("extra")
    m["output"]["shape"] = ["batch", 11]


def _size(m):
    m["preprocess"]["size"] = [9, 9]
    m["input"]["shape"] = ["batch", 1, 9, 9]


@pytest.mark.parametrize("edit, says", [
    (lambda m: m.update(precision="fp16"), "precision: manifest.json says 'fp16', model.onnx says 'int8'"),
    (_size, "input.shape: manifest.json says [batch, 1, 9, 9], model.onnx takes [?, 1, 8, 8]"),
    (_classes, "output.shape: manifest.json says [batch, 11], model.onnx gives [?, 10]; classes: manifest.json "
               "names 11 classes, model.onnx gives 10 scores"),
    (lambda m: m["classes"].__setitem__(0, "zero"), "classes: manifest.json says ['zero', '1', "),
    (lambda m: m["preprocess"].__setitem__("mean", [0.4]),
     "preprocess.mean: manifest.json says [0.4], model.onnx's metadata says [0.5]"),
    (lambda m: m["golden"].update(threshold_sqnr_db=5.0),
     "golden.threshold_sqnr_db: manifest.json says 5.0 dB, golden.npz implies 20.0 dB (int8 floor 20 dB, export SQNR"),
    (lambda m: m["validation"]["quantized_ops"].update(counted=17),
     "validation.quantized_ops.counted: manifest.json says 17, model.onnx quantizes 18 of its 18 matrix multiplies"),
    (lambda m: m.update(target="openvino"),
     "target: manifest.json says 'openvino', but its model file model.onnx is an ONNX model, not an OpenVINO IR"),
], ids=["precision", "input", "classes-count", "class-names", "preprocess", "golden", "quantized-ops", "target"])
@pytest.mark.parametrize("sealed", [False, True], ids=["by-hand", "binding-recomputed"])
def test_each_claim_is_checked_against_the_model_file(int8, tmp_path, edit, says, sealed):
    folder = edited(int8, tmp_path, edit, sealed)
    with pytest.raises(BadInput, match="manifest.json does not match its files") as e:
        read_manifest(folder)
    assert says in str(e.value), str(e.value)


def test_the_golden_threshold_is_the_rule_applied_to_golden_npz(int8):
    m = read_manifest(int8)
    assert m["golden"]["threshold_sqnr_db"] == round(golden_threshold("int8", m["golden"]["built_sqnr_db"]), 2)


@pytest.mark.parametrize("edit, key", [(lambda m: m["validation"].update(passed=False), "validation"),
                                       (lambda m: m["images"].update(note="x"), "images"),
                                       (lambda m: m["files"].pop(), "files")])
def test_what_no_file_tells_is_bound_by_binding_json(int8, tmp_path, edit, key):
    folder = edited(int8, tmp_path, edit)
    with pytest.raises(BadInput, match=rf"manifest.json was changed after export \(what differs from what "
                                       rf"binding.json sealed: {key}\); re-export"):
        read_manifest(folder)


def test_a_recomputed_binding_or_none_is_accepted(int8, tmp_path):
    """binding.json is a digest anyone can recompute: it catches hand edits; a forger is stopped by a
    signature (test_runtime_signing.py). An artifact exported before it existed has none."""
    folder = edited(int8, tmp_path, lambda m: m["images"].update(note="edited"), sealed=True)
    assert read_manifest(folder)["images"]["note"] == "edited"
    (folder / BINDING).unlink()
    manifest = json.loads((folder / "manifest.json").read_text())
    manifest["images"]["note"] = "edited again"
    (folder / "manifest.json").write_text(json.dumps(manifest))
    assert read_manifest(folder)["images"]["note"] == "edited again"


def test_a_broken_binding_is_refused(int8, tmp_path):
    folder = edited(int8, tmp_path, lambda m: None)
    (folder / BINDING).write_text("[]")
    with pytest.raises(BadInput, match="binding.json is not a mixer-edge binding"):
        read_manifest(folder)


def test_the_device_stamp_of_an_engine_keeps_the_binding(ck, val, tmp_path):
    """trt_build.py rewrites the manifest on the device (the engine's file entry, export.engine,
    versions): that is outside the binding, so the artifact still reads."""
    from mixer_edge.export.base import ExportSpec
    from mixer_edge.export.build import export_one
    from mixer_edge.runtime.engine import stamp_engine

    folder = export_one(ck, "tensorrt", ExportSpec("fp32"), None, tmp_path, validation=val).artifact.path
    before = bound(read_manifest(folder))
    (folder / "model.engine").write_bytes(b"an engine")
    info = {"built": True, "file": "model.engine", "sha256": hashlib.sha256(b"an engine").hexdigest(),
            "tensorrt": "10.3.0", "cuda": {"version": "12.6"}}
    stamp_engine(folder, read_manifest(folder), info)
    after = read_manifest(folder)
    assert after["export"]["engine"]["tensorrt"] == "10.3.0" and bound(after) == before
