"""runtime/engine.py: the TensorRT build plan as data, per TensorRT major (strong typing on 10.x,
nothing to ask on 11.x; no precision flags, no calibrator; TF32 cleared always; one profile over
the batch), its refusals, and what the builder says where there is no tensorrt or GPU. The build
itself needs an NVIDIA GPU: tests/test_export_tensorrt.py's gpu tests."""
from __future__ import annotations

import sys

import pytest

from mixer_edge.runtime.engine import (DEFAULT_BATCH, ENGINE, TIMING_CACHE, build_engine, build_plan, network_flags,
                                       plan_for)
from mixer_edge.runtime.errors import BadInput, NotRunnable

KINDS = {"fp32": "fp32", "fp16": "fp16-typed", "int8": "explicit-qdq"}


def manifest(precision="int8", shape=("batch", 1, 8, 8), **export):
    return {"target": "tensorrt", "precision": precision, "input": {"name": "input", "shape": list(shape)},
            "export": {"onnx_kind": KINDS[precision], **export}}


@pytest.mark.parametrize("major", [10, 11])
@pytest.mark.parametrize("precision", ["fp32", "fp16", "int8"])
def test_plan_per_major(precision, major):
    plan = build_plan(manifest(precision), major)
    assert plan["tensorrt_major"] == major and plan["network"]["strongly_typed"] is True
    assert plan["network"]["creation_flags"] == (["STRONGLY_TYPED"] if major == 10 else [])
    assert plan["builder_flags"]["set"] == [] and plan["calibrator"] is None  # no FP16 / INT8 flags on either
    assert plan["builder_flags"]["clear"] == ["TF32"]    # every precision: float layers compute in FP32
    assert plan["profile"] == {"input": "input", "min": [1, 1, 8, 8], "opt": [1, 1, 8, 8], "max": [32, 1, 8, 8]}
    assert plan["engine_file"] == ENGINE and plan["timing_cache"] == TIMING_CACHE
    assert plan["onnx_kind"] == KINDS[precision] and plan["workspace_bytes"] is None
    small = build_plan(manifest(precision), major, max_batch=8, opt_batch=4, timing_cache="/tmp/x.cache",
                       workspace_mib=64)
    assert small["profile"]["opt"][0] == 4 and small["profile"]["max"][0] == 8
    assert small["timing_cache"] == "/tmp/x.cache" and small["workspace_bytes"] == 64 << 20


def test_plan_defaults_from_the_manifest_and_a_smaller_max_pulls_them_along():
    m = manifest(engine={"defaults": {**DEFAULT_BATCH, "opt_batch": 16}})
    assert build_plan(m, 10)["profile"]["opt"][0] == 16
    assert build_plan(m, 10, max_batch=4)["profile"]["opt"][0] == 4


def test_plan_refusals():
    m = manifest()
    with pytest.raises(BadInput, match="min <= opt <= max"):
        build_plan(m, 10, opt_batch=64, max_batch=32)
    with pytest.raises(BadInput, match="TensorRT 8.x is too old"):
        build_plan(m, 8)
    with pytest.raises(BadInput, match="not a TensorRT artifact"):
        build_plan({**m, "target": "onnx"}, 10)
    fixed = manifest(shape=(4, 1, 8, 8))
    assert build_plan(fixed, 11)["profile"]["max"] == [4, 1, 8, 8]
    with pytest.raises(BadInput, match="fixed at 4"):
        build_plan(fixed, 11, max_batch=8)
    with pytest.raises(BadInput, match=r"manifest input shape \['batch', 8\] is not \(batch, C, H, W\)"):
        build_plan(manifest(shape=("batch", 8)), 10)
    with pytest.raises(BadInput, match="--workspace-mib must be at least 1"):
        plan_for("fp32", "input", (1, 8, 8), 10, workspace_mib=0)
    with pytest.raises(BadInput, match="unknown precision 'bf16'"):
        plan_for("bf16", "input", (1, 8, 8), 10)
    assert network_flags(11) == [] and network_flags(10) == ["STRONGLY_TYPED"]


def test_building_without_tensorrt_says_so(monkeypatch, tmp_path):
    monkeypatch.setitem(sys.modules, "tensorrt", None)
    with pytest.raises(NotRunnable, match="tensorrt is not installed here"):
        build_engine(tmp_path / "model.onnx", "fp32", tmp_path)
