"""bench/provenance.py: `mixer-edge report` checks each result row against the artifact it measured
where that artifact is on this machine (the row's path, the same file hashes), and leaves a row from
elsewhere, or of an earlier export at the same path, as recorded."""
from __future__ import annotations

import json
import shutil

import pytest

from mixer_edge.bench.provenance import check_rows, measured_here
from mixer_edge.runtime.errors import BadInput


@pytest.fixture()
def doc(digits_bench_result):
    return json.loads(digits_bench_result.read_text())


def test_a_row_is_checked_only_against_the_artifact_it_measured(doc, digits_onnx_artifact, tmp_path):
    (row,) = [r for r in doc["results"] if r["target"] == "onnx"]
    assert measured_here(row) == digits_onnx_artifact
    assert measured_here({**row, "artifact": str(tmp_path / "on-the-jetson")}) is None   # another machine's path
    assert measured_here({**row, "target": "pytorch-eager"}) is None
    later = {**row, "sha256": {**row["sha256"], "model.onnx": "0" * 64}}              # an earlier export of this path
    assert measured_here(later) is None
    check_rows(doc, "r.json")   # the genuine result


def test_a_row_naming_another_precision_than_its_artifact_is_refused(doc, digits_onnx_artifact, tmp_path):
    doc["results"][0]["precision"] = "int8"
    with pytest.raises(BadInput, match="r.json: row .* says onnx int8, but the artifact it measured, .* is onnx fp32"):
        check_rows(doc, "r.json")


def test_an_edited_artifact_refuses_its_rows(doc, digits_onnx_artifact, tmp_path):
    folder = tmp_path / "onnx-fp32"
    shutil.copytree(digits_onnx_artifact, folder)
    manifest = json.loads((folder / "manifest.json").read_text())
    manifest["precision"] = "fp16"
    (folder / "manifest.json").write_text(json.dumps(manifest))
    doc["results"][0]["artifact"] = str(folder)
    with pytest.raises(BadInput, match="precision: manifest.json says 'fp16', model.onnx says 'fp32'"):
        check_rows(doc, "r.json")
