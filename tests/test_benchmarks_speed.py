"""benchmarks/speed.py's guard: it stores its ratios, passes against its own stored run, and fails on a
deliberately slowed artifact (one whose graph computes every batch eight times: the same logits,
eight times the work), naming the ratio that got worse."""
import importlib.util
import json
import sys
from pathlib import Path

import numpy as np
import pytest

from conftest import reseal

SCRIPT = Path(__file__).parents[1] / "benchmarks" / "speed.py"


@pytest.fixture(scope="module")
def speed():
    spec = importlib.util.spec_from_file_location("speed_benchmark", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


def _doc(**ratios):
    return {"batches": {"1": {"ratios": ratios}}}


def test_the_guard_flags_a_ratio_worse_by_more_than_the_margin(speed):
    base = _doc(**{"mixer-edge onnx int8 x floor": 2.0, "mixer-edge onnx int8 / ort quantize_static defaults": 0.5,
                   "nncf quantize defaults x floor": 3.0})
    now = _doc(**{"mixer-edge onnx int8 x floor": 2.4, "mixer-edge onnx int8 / ort quantize_static defaults": 0.56,
                  "nncf quantize defaults x floor": 9.0, "mixer-edge openvino int8 x floor": 99.0})
    # the floor ratio only with floor=True: 2.4 / 2.0 = 1.20 > 1.15 flagged; 0.56 / 0.5 = 1.12 within;
    # a peer's ratio and a new key are not ours to guard
    worse = speed.guard(now, base, margin=0.15, floor=True)
    assert len(worse) == 1 and worse[0].startswith("batch 1: mixer-edge onnx int8 x floor 2.400, was 2.000 (1.20x")
    assert speed.guard(now, base, margin=0.15) == []
    slower = _doc(**{"mixer-edge onnx int8 / ort quantize_static defaults": 0.6})   # 1.20x the stored 0.5
    assert speed.guard(slower, base, margin=0.15)[0].startswith("batch 1: mixer-edge onnx int8 / ort quantize_static")


def _slowed(src: Path, dest: Path, copies: int = 8) -> Path:
    """The artifact with its graph run on `copies` copies of the batch, the first copy's logits returned."""
    import shutil

    import onnx
    from onnx import helper

    from mixer_edge.runtime.artifact import sha256_file

    shutil.copytree(src, dest)
    path = dest / "model.onnx"
    m = onnx.load(str(path))
    g = m.graph
    inner = "input_repeated"
    for node in g.node:   # "logits" is the graph's output: made by one node, read by none
        node.input[:] = [inner if i == "input" else i for i in node.input]
        node.output[:] = ["logits_all" if o == "logits" else o for o in node.output]
    g.node.insert(0, helper.make_node("Concat", ["input"] * copies, [inner], axis=0))
    g.initializer.extend([onnx.numpy_helper.from_array(np.array([0], np.int64), "zero"),
                          onnx.numpy_helper.from_array(np.array([0], np.int64), "axis0")])
    g.node.extend([helper.make_node("Shape", ["input"], ["input_shape"], start=0, end=1),
                   helper.make_node("Slice", ["logits_all", "zero", "input_shape", "axis0"], ["logits"])])
    onnx.save(m, str(path))
    manifest = json.loads((dest / "manifest.json").read_text())
    for entry in manifest["files"]:
        if entry["path"] == "model.onnx":
            entry.update(sha256=sha256_file(path), bytes=path.stat().st_size)
    (dest / "manifest.json").write_text(json.dumps(manifest))
    reseal(dest)
    return dest


def test_the_guard_passes_on_todays_artifact_and_fails_on_a_slowed_one(speed, ck, calib, val, digits_checkpoint,
                                                                      tmp_path, capsys):
    from mixer_edge.export.base import ExportSpec
    from mixer_edge.export.build import export_one
    from mixer_edge.runtime.backends.onnxruntime import session

    good = export_one(ck, "onnx", ExportSpec("int8"), calib, tmp_path / "a", validation=val,
                      keep_invalid=True).artifact.path
    slow = _slowed(good, tmp_path / "slow" / "onnx-int8")
    x = val.x[:3]
    assert np.array_equal(session(good / "model.onnx").run(x), session(slow / "model.onnx").run(x))  # same logits
    common = [str(digits_checkpoint), "--data", "digits", "--threads", "1", "--no-peers", "--batches", "1",
              "--rounds", "8", "--calls", "5", "--probe-rounds", "3", "--eval-images", "60"]
    base = tmp_path / "base.json"
    assert speed.main([*common, "--use", str(good), "--json", str(base)]) == 0
    stored = json.loads(base.read_text())
    assert stored["batches"]["1"]["ratios"]["mixer-edge onnx int8 x floor"] > 0
    assert stored["agreement"]["mixer-edge onnx int8"] >= 0.95
    assert speed.main([*common, "--use", str(good), "--baseline", str(base), "--margin", "0.5"]) == 0
    capsys.readouterr()
    assert speed.main([*common, "--use", str(slow), "--baseline", str(base), "--margin", "0.5"]) == speed.EXIT_SLOWER
    err = capsys.readouterr().err
    assert "guard: slower than" in err and "mixer-edge onnx int8 / pytorch eager fp32" in err
