"""runtime/results.py: result entries with every schema key, the versioned document, reading one
back (kind, schema, shape), the manifest's summaries, and the terminal table."""
from __future__ import annotations

import json

import pytest

from mixer_edge.runtime.errors import BadInput
from mixer_edge.runtime.results import (KIND, RESULT_KEYS, SCHEMA, document, format_table, interval_text,
                                        quantization_summary, read_result, result_entry, validation_summary,
                                        validation_text)
from mixer_edge.runtime.timing import Settings, latency_stats, throughput_stats

DEVICE = {"name": "board", "cpu": "cpu", "cores_usable": 2, "isa": ["avx2"], "os": "Linux"}


def ok_entry(name="onnx-fp32"):
    lat = latency_stats([1.0, 2.0, 3.0])
    return result_entry(name=name, target="onnx", precision="fp32", status="ok", size_bytes=2e6, load_s=0.1,
                        first_inference_ms=5.0, latency_ms=lat, throughput=[throughput_stats(4, [2.0, 4.0])],
                        accuracy={"top1": 0.5, "top5": 1.0, "n": 2}, agreement=None, model_rss_mb=3.0,
                        process_peak_rss_mb=100.0)


def test_entries_have_every_key_and_refuse_others():
    e = result_entry(name="x", status="not-run", reason="why")
    assert tuple(e) == RESULT_KEYS and e["target"] is None and e["reason"] == "why"
    with pytest.raises(ValueError, match="not result keys"):
        result_entry(speed=3)


def test_document_round_trips_through_read_result(tmp_path):
    doc = document([ok_entry()], DEVICE, {"numpy": "2"}, Settings(batch_sizes=(1, 4)), "edge_bench.py", "digits")
    assert doc["schema"] == SCHEMA and doc["kind"] == KIND and doc["settings"]["batch_sizes"] == [1, 4]
    (tmp_path / "r.json").write_text(json.dumps(doc))
    assert read_result(tmp_path / "r.json") == json.loads(json.dumps(doc))
    (tmp_path / "old.json").write_text(json.dumps({**doc, "schema": 0}))
    with pytest.raises(BadInput, match="bench result schema 0; this mixer-edge reads schema 1"):
        read_result(tmp_path / "old.json")
    (tmp_path / "other.json").write_text(json.dumps({"kind": "mixer-edge-predictions"}))
    with pytest.raises(BadInput, match="is not a mixer-edge bench result"):
        read_result(tmp_path / "other.json")


def test_summaries_of_a_manifest_never_round_up():
    v = validation_summary({"validation": {"passed": None, "skipped": "needs macOS"}})
    assert v == {"status": "skipped", "checked_by": None, "runner": None, "reason": "needs macOS"}
    assert validation_summary({"validation": {"passed": True}})["checked_by"] == "not recorded"
    assert validation_summary({}) is None
    assert validation_text(v, "coreml") == "skipped: unchecked" and validation_text(None, "pytorch-eager") == "checkpoint"
    assert validation_text({"status": "passed", "checked_by": "stand-in"}, "tensorrt") == "passed (stand-in)"
    q = quantization_summary({"precision": "int8", "export": {"spec": {"calib_method": "mse", "float_layers": ["head"]}}})
    assert q["calib_method"] == "mse" and q["float_layers"] == ["head"] and quantization_summary({"precision": "fp32"}) is None


def test_table_rows_and_a_not_run_reason():
    doc = document([ok_entry(), result_entry(name="coreml-fp32", target="coreml", precision="fp32",
                                             status="not-run", reason="needs macOS")],
                   DEVICE, {}, Settings(), "t", "d")
    lines = format_table(doc).splitlines()
    assert lines[0].startswith("artifact") and lines[1].startswith("onnx-fp32")
    assert "2.000 [1.000, 3.000]" in lines[1] and "0.5000" in lines[1]     # median [its interval], top-1
    assert lines[2].endswith("not run: needs macOS") and lines[3].startswith("device: board: cpu, 2 cores, avx2")
    assert interval_text(None, None, ".1f") == "-" and interval_text(1.0, [None, 2.0], ".1f") == "1.0"
