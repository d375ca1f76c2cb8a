"""runtime/modelfile.py: the protocol-buffer field walk by hand, and the facts it reads from real
exports of every target agreeing with what the export's own structural check recorded (its
quantized-op count, made with onnx / OpenVINO's API / coremltools), the precision and the shapes."""
from __future__ import annotations

import json

import pytest

from mixer_edge.runtime.claims import model_facts
from mixer_edge.runtime.errors import BadInput
from mixer_edge.runtime.modelfile import fields, read_onnx

# field 1 varint 150, field 2 string "hi", field 3 packed varints [1, 300], field 4 fixed32 7
MESSAGE = bytes([0x08, 0x96, 0x01, 0x12, 0x02]) + b"hi" + bytes([0x1A, 0x03, 0x01, 0xAC, 0x02, 0x25, 7, 0, 0, 0])
CASES = [("onnx", "fp16"), ("onnx", "int8"), ("tensorrt", "int8"), ("openvino", "int8"), ("openvino", "fp16"),
         ("coreml", "int8"), ("coreml", "fp16")]
NEEDS = {"onnx": "onnxruntime", "tensorrt": "onnxruntime", "openvino": "openvino", "coreml": "coremltools"}


def test_fields_by_hand():
    got = [(n, v if isinstance(v, int) else bytes(v)) for n, v in fields(MESSAGE)]
    assert got == [(1, 150), (2, b"hi"), (3, bytes([0x01, 0xAC, 0x02])), (4, 7)]


@pytest.mark.parametrize("blob", [MESSAGE[:-2], bytes([0x0B]), bytes([0x08]), bytes([0x3A, 0x05, 0x00])])
def test_a_cut_or_foreign_file_is_refused_in_one_line(tmp_path, blob):
    (tmp_path / "model.onnx").write_bytes(blob)
    with pytest.raises(BadInput, match="model.onnx is not a readable ONNX model"):
        read_onnx(tmp_path / "model.onnx", "model.onnx")


@pytest.fixture(scope="module")
def exports(ck, calib, val, tmp_path_factory):
    from mixer_edge.export.base import ExportSpec
    from mixer_edge.export.build import export_one

    out = {}
    for target, precision in CASES:
        try:
            __import__(NEEDS[target])
        except ImportError:
            continue
        o = export_one(ck, target, ExportSpec(precision), calib if precision == "int8" else None,
                       tmp_path_factory.mktemp(f"facts-{target}-{precision}"), validation=val)
        out[(target, precision)] = o.artifact.path
    return out


@pytest.mark.parametrize("target, precision", CASES)
def test_facts_of_real_exports_are_what_the_export_recorded(exports, target, precision):
    if (target, precision) not in exports:
        pytest.skip(f"{NEEDS[target]} is not installed")
    folder = exports[(target, precision)]
    manifest = json.loads((folder / "manifest.json").read_text())
    facts = model_facts(folder, manifest)
    assert facts.precision == precision, facts.evidence
    assert list(facts.input_shape[1:]) == manifest["input"]["shape"][1:] and facts.input_shape[0] is None
    assert facts.output_shape[-1] == len(manifest["classes"]) == 10
    ops = manifest["validation"].get("quantized_ops")
    if precision == "int8":   # the export counted with onnx / openvino / coremltools; the same count from the file
        assert facts.quantized(ops["quantized"] == "weights") == ops["counted"] == ops["intended"] > 0
    else:
        assert facts.quantized(False) == 0 and len(facts.matmuls) == 18
    if target in ("onnx", "tensorrt"):
        assert list(facts.classes) == manifest["classes"] and facts.preprocess == manifest["preprocess"]
