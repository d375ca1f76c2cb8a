"""runtime/bench.py: one artifact benchmarked end to end as the device scripts do it: its top-1 on
the held-out images equals plain ONNX Runtime's on the images a hand selection keeps; a runtime
that cannot run here gives a not-run entry, a reference that cannot run is refused."""
from __future__ import annotations

import json
import shutil

import numpy as np
import pytest

from conftest import reseal
from mixer_edge.runtime.backends import Options
from mixer_edge.runtime.bench import bench_artifact
from mixer_edge.runtime.errors import BadInput
from mixer_edge.runtime.identity import image_keys, reserved_keys
from mixer_edge.runtime.preprocess import preprocess
from mixer_edge.runtime.readers import read_data
from mixer_edge.runtime.results import RESULT_KEYS
from mixer_edge.runtime.timing import Settings

FAST = Settings(warmup=0, iters=2, batch_sizes=(1, 4), min_calls=2, min_seconds=0)


def test_top1_is_plain_onnxruntime_on_the_held_out_images(digits_onnx_artifact):
    ort = pytest.importorskip("onnxruntime")
    data = read_data("digits")
    manifest = json.loads((digits_onnx_artifact / "manifest.json").read_text())
    kept = ~np.isin(image_keys(data.images), reserved_keys(manifest))           # the selection by hand
    x = preprocess(data.images[kept], manifest["preprocess"])
    sess = ort.InferenceSession(str(digits_onnx_artifact / "model.onnx"), providers=["CPUExecutionProvider"])
    top1 = float((sess.run(None, {"input": x})[0].argmax(1) == data.labels[kept]).mean())

    entry, versions = bench_artifact(digits_onnx_artifact, data, FAST, Options(threads=1))
    assert tuple(entry) == RESULT_KEYS and entry["status"] == "ok" and "onnxruntime" in versions
    assert entry["accuracy"]["n"] == int(kept.sum()) and entry["accuracy"]["top1"] == pytest.approx(top1, abs=1e-12)
    assert entry["device_check"]["status"] == "passed" and entry["data"]["labels"] == "by name"
    assert entry["latency_ms"]["count"] == 2 and [t["batch"] for t in entry["throughput"]] == [1, 4]
    assert entry["runtime"]["threads"] == 1 and entry["size_bytes"] > 0


def test_not_run_and_an_unrunnable_reference(digits_onnx_artifact, tmp_path):
    folder = tmp_path / "tensorrt-fp32"
    shutil.copytree(digits_onnx_artifact, folder)
    m = json.loads((folder / "manifest.json").read_text())
    (folder / "manifest.json").write_text(json.dumps({**m, "target": "tensorrt"}))   # its engine: never built here
    reseal(folder)   # the same ONNX file, so only binding.json knew the target
    data = read_data("digits")
    entry, versions = bench_artifact(folder, data, FAST, Options())
    assert entry["status"] == "not-run" and "engine is not built yet" in entry["reason"] and versions == {}
    assert entry["latency_ms"] is None and entry["accuracy"] is None
    with pytest.raises(BadInput, match="reference .*tensorrt-fp32 cannot run here"):
        bench_artifact(digits_onnx_artifact, data, FAST, Options(), reference=str(folder))
