"""TensorRT target on the tiny digits model. Here there is no tensorrt and no GPU: every precision's
TensorRT-ready ONNX is exported once (module scope) and validated with ONNX Runtime against FP32
PyTorch on the digits eval split (179 images), its Q/DQ / FP16 rules are checked by walking the
graph, and the engine build plan is checked as data for TensorRT 10 and 11. Tests that need an
engine are marked gpu and skip here; nothing pretends an engine ran."""
from __future__ import annotations

import json
import shutil
import subprocess
import sys
import types
from argparse import Namespace
from collections import defaultdict
from pathlib import Path

import numpy as np
import pytest

onnx = pytest.importorskip("onnx")
pytest.importorskip("onnxruntime")

from onnx import helper, numpy_helper  # noqa: E402

from mixer_edge import load_data  # noqa: E402
from mixer_edge.data.dataset import take_split  # noqa: E402
from mixer_edge.errors import BadInput, MissingDependency, NotRunnable  # noqa: E402
from mixer_edge.export import artifact as art  # noqa: E402
from mixer_edge.export import tensorrt as trt_target  # noqa: E402
from mixer_edge.export.base import ExportSpec  # noqa: E402
from mixer_edge.export.registry import get_target  # noqa: E402
from mixer_edge.export.tensorrt import (TensorRTTarget, check_explicit_quantization,  # noqa: E402
                                        check_fp16_model)
from mixer_edge.cli.trt import add_trt_arguments, run_trt  # noqa: E402
from mixer_edge.export.validate import compare  # noqa: E402
from mixer_edge.export.build import export_one  # noqa: E402
from mixer_edge.runtime.artifact import read_manifest, sha256_file  # noqa: E402
from mixer_edge.runtime.backends import tensorrt as trt_backend  # noqa: E402
from mixer_edge.runtime.engine import DEFAULT_BATCH, build_artifact, stamp_engine  # noqa: E402
from mixer_edge.runtime.errors import EXIT_BAD_INPUT, EXIT_NOT_RUN  # noqa: E402

SPECS = {
    "fp32": ExportSpec("fp32"),
    "fp16": ExportSpec("fp16"),
    "int8": ExportSpec("int8", calib_method="minmax"),
    "int8-entropy": ExportSpec("int8", calib_method="entropy"),
}
EVAL_N = 179
TRT_HERE, TRT_WHY = trt_target.runs_here()
gpu = pytest.mark.gpu



@pytest.fixture(scope="module")
def outcomes(ck, calib, val, tmp_path_factory):
    out = tmp_path_factory.mktemp("tensorrt")
    return {name: export_one(ck, "tensorrt", spec, calib, out / name, validation=val)
            for name, spec in SPECS.items()}


def model_of(outcome):
    return onnx.load(str(outcome.artifact.file("model.onnx")))


# ---- graph helpers: what feeds what -------------------------------------------------------------

def graph_maps(model):
    producer, consumers = {}, defaultdict(list)
    for n in model.graph.node:
        producer.update({o: n for o in n.output})
        for k, i in enumerate(n.input):
            consumers[i].append((n, k))
    inits = {i.name: numpy_helper.to_array(i) for i in model.graph.initializer}
    return producer, consumers, inits


def attr(node, name, default=None):
    return next((helper.get_attribute_value(a) for a in node.attribute if a.name == name), default)


def first(model, op_type, pred=lambda n: True):
    return next(n for n in model.graph.node if n.op_type == op_type and pred(n))


# ---- registry, status, laziness -----------------------------------------------------------------

def test_registered_lazy_and_status():
    t = get_target("tensorrt")
    assert isinstance(t, TensorRTTarget) and t.capabilities.precisions == {"fp32", "fp16", "int8", "int4"}
    assert t.capabilities.requires == ("onnx", "onnxruntime")
    st = t.status()
    assert st.installed and st.runs_here is TRT_HERE
    if not TRT_HERE:
        assert ("tensorrt not installed here" in st.reason or "no NVIDIA GPU" in st.reason), st.reason
    code = ("import sys, mixer_edge.export.tensorrt; "
            "assert not {'tensorrt', 'onnxruntime', 'onnx'} & set(sys.modules), sorted(sys.modules)")
    subprocess.run([sys.executable, "-c", code], check=True)


# ---- export + validation -------------------------------------------------------------------------

@pytest.mark.parametrize("name", list(SPECS))
def test_export_validates_in_manifest(outcomes, name):
    o = outcomes[name]
    assert o.passed, o.problems
    m = o.artifact.manifest
    v = m["validation"]
    assert v["passed"] is True and v["samples"] == EVAL_N and v["data"] == "digits (eval split)"
    assert {f["path"] for f in m["files"]} >= {"model.onnx", "trt_build.py", "edge_bench.py"}
    assert m["export"]["onnx_kind"] == {"fp32": "fp32", "fp16": "fp16-typed"}.get(m["precision"], "explicit-qdq")
    eng = m["export"]["engine"]
    if TRT_HERE:
        assert eng["built"] is True and v["runner"].startswith("tensorrt ")
    else:
        assert eng["built"] is False and eng["reason"] == TRT_WHY and "model.engine" not in [f["path"] for f in m["files"]]
        assert v["runner"].endswith("(TensorRT-ready ONNX; engine not built here)")
        assert "versions" in m and "onnxruntime" in m["versions"] and "tensorrt" not in m["versions"]


def rerun(outcome, val) -> dict:
    """The validation figures again, from our own run of the file (not read from the manifest)."""
    runner = TensorRTTarget().validation_runner(outcome.artifact)
    return compare(val.reference, runner(val.x), val.labels)


def test_fp32_matches_pytorch(outcomes, val):
    f = rerun(outcomes["fp32"], val)
    assert f["max_abs_diff"] <= 1e-4 and f["top1_agreement"] == 1.0


@pytest.mark.parametrize("name", ["int8", "int8-entropy"])
def test_int8_accuracy_close_to_fp32(outcomes, val, name):
    f = rerun(outcomes[name], val)
    assert f["top1_agreement"] >= 0.98 and f["cosine"] >= 0.99, f
    assert abs(f["top1"] - f["reference_top1"]) <= 1 / EVAL_N + 1e-9, f   # at most one image
    assert f["sqnr_db"] > 20, f
    v = outcomes[name].validation
    assert v["top1_agreement"] == pytest.approx(f["top1_agreement"]) and v["sqnr_db"] == pytest.approx(f["sqnr_db"])
    cal = outcomes[name].artifact.manifest["export"]["qdq"]["calibration"]
    assert cal["method"] == SPECS[name].calib_method and cal["images"] == 100
    assert len(cal["ranges"]) == 18 and all(lo < 0 < hi for lo, hi in cal["ranges"].values())


def test_fp16_agreement_and_layernorm_in_fp32(outcomes, val):
    f = rerun(outcomes["fp16"], val)
    assert f["top1_agreement"] >= 0.995, f
    m = model_of(outcomes["fp16"])
    assert check_fp16_model(m) == []
    assert any(i.data_type == onnx.TensorProto.FLOAT16 for i in m.graph.initializer)
    g = onnx.shape_inference.infer_shapes(m).graph
    types = {v.name: v.type.tensor_type.elem_type for v in [*g.value_info, *g.input, *g.output]}
    types.update({i.name: i.data_type for i in g.initializer})
    lns = [n for n in g.node if n.op_type == "LayerNormalization"]
    assert len(lns) == 2 * 4 + 1  # two per block, one before the head
    assert all(types[i] == onnx.TensorProto.FLOAT for n in lns for i in n.input)
    matmuls = [n for n in g.node if n.op_type == "MatMul"]
    assert matmuls and all(types[i] == onnx.TensorProto.FLOAT16 for n in matmuls for i in n.input)
    casts = [n for n in g.node if n.op_type == "Cast"]
    assert {attr(c, "to") for c in casts} == {onnx.TensorProto.FLOAT, onnx.TensorProto.FLOAT16}
    fp16 = outcomes["fp16"].artifact.manifest["export"]["fp16"]
    assert fp16["fp32_ops"]["LayerNormalization"] == 9 and fp16["activation_scan"]["images"] == 100


def test_fp16_keeps_large_activations_in_fp32(outcomes, ck, calib, val, tmp_path):
    """With the threshold lowered below this model's activations, the nodes touching them stay fp32
    between Casts, the model still validates, and the check sees those tensors are float32."""
    from mixer_edge.export.onnx import export_fp32_onnx

    fp32 = export_fp32_onnx(ck.model, tmp_path / "fp32.onnx")
    peak = outcomes["fp16"].artifact.manifest["export"]["fp16"]["activation_scan"]["max_abs"]
    m16, details = trt_target.to_fp16_typed(fp32, calib.x, threshold=peak / 4)
    assert details["large_tensors"] and details["blocked_nodes"]
    assert check_fp16_model(m16, details["large_tensors"]) == []
    producers = {o: n.op_type for n in m16.graph.node for o in n.output}
    assert all(producers[t] != "Cast" for t in details["large_tensors"])  # produced by fp32 nodes, not casts
    path = tmp_path / "fp16.onnx"
    onnx.save(m16, str(path))
    run = trt_target.ort_validation_runner(path, "fp16")
    assert compare(val.reference, run(val.x))["top1_agreement"] >= 0.995
    assert any("no float16 initializers" in p for p in check_fp16_model(fp32))


# ---- INT8: the Q/DQ rules, by walking the graph ---------------------------------------------------

def test_int8_qdq_placement_and_rules(outcomes):
    m = model_of(outcomes["int8"])
    assert check_explicit_quantization(m) == []
    producer, consumers, inits = graph_maps(m)
    qs = [n for n in m.graph.node if n.op_type == "QuantizeLinear"]
    assert len(qs) == 2 * (1 + 16 + 1)  # activation + weight of the stem Conv, 16 MatMuls, the head Gemm
    for q in qs:
        zp = inits[q.input[2]]
        assert zp.dtype == np.int8 and not zp.any(), q.name
        assert [c.op_type for c, _ in consumers[q.output[0]]] == ["DequantizeLinear"]
    for node in m.graph.node:
        if node.op_type in ("Conv", "MatMul", "Gemm"):
            dq_act, dq_w = (producer[i] for i in node.input[:2])
            assert dq_act.op_type == dq_w.op_type == "DequantizeLinear", node.name
            assert inits[dq_act.input[1]].ndim == 0  # activation: per-tensor
            q_w = producer[dq_w.input[0]]
            w = inits[q_w.input[0]]
            out_axis = {"Conv": 0, "Gemm": 0 if attr(node, "transB", 0) else 1, "MatMul": 1}[node.op_type]
            assert attr(dq_w, "axis") == attr(q_w, "axis") == out_axis, node.name
            scale = inits[dq_w.input[1]]
            assert scale.shape == (w.shape[out_axis],) and (scale > 0).all()
            wq = np.round(np.moveaxis(w, out_axis, 0).reshape(len(scale), -1) / scale[:, None])
            assert np.abs(wq).max() <= 127  # TensorRT's symmetric weight range
        if node.op_type in ("LayerNormalization", "Add"):
            feeding = [producer[i].op_type for i in node.input if i in producer]
            assert "DequantizeLinear" not in feeding, node.name  # LayerNorm and residual Adds stay float
    qdq = outcomes["int8"].artifact.manifest["export"]["qdq"]
    assert qdq["quantized_ops"] == {"Conv": 1, "Gemm": 1, "MatMul": 16}
    assert qdq["activation_qdq"] == qdq["weight_qdq"] == 18
    assert qdq["float_ops"]["LayerNormalization"] == 9 and qdq["float_ops"]["Add"] == 32


def copy_model(model):
    m = onnx.ModelProto()
    m.CopyFrom(model)
    return m


def set_init(model, name, array):
    for i in model.graph.initializer:
        if i.name == name:
            i.CopyFrom(numpy_helper.from_array(array, name))


def test_rules_catch_broken_models(outcomes):
    good = model_of(outcomes["int8"])

    uint8 = copy_model(good)
    q = first(uint8, "QuantizeLinear")
    set_init(uint8, q.input[2], np.array(0, np.uint8))
    assert any("zero point is uint8" in p for p in check_explicit_quantization(uint8))

    shifted = copy_model(good)
    q = first(shifted, "QuantizeLinear", lambda n: n.input[0] == "input")
    set_init(shifted, q.input[2], np.array(3, np.int8))
    assert any("not all zeros" in p for p in check_explicit_quantization(shifted))

    before_add = copy_model(good)
    add = first(before_add, "Add", lambda n: n.name.endswith("blocks.0/Add"))  # the first residual Add
    t = add.input[0]
    before_add.graph.initializer.extend([numpy_helper.from_array(np.array(0.1, np.float32), "res_scale"),
                                         numpy_helper.from_array(np.array(0, np.int8), "res_zp")])
    nodes = list(before_add.graph.node)
    at = nodes.index(add)
    nodes[at:at] = [helper.make_node("QuantizeLinear", [t, "res_scale", "res_zp"], ["res_q"], name="res_Q"),
                    helper.make_node("DequantizeLinear", ["res_q", "res_scale", "res_zp"], ["res_dq"], name="res_DQ")]
    add.input[0] = "res_dq"
    del before_add.graph.node[:]
    before_add.graph.node.extend(nodes)
    onnx.checker.check_model(before_add)
    assert any("'res_DQ' feeds Add" in p for p in check_explicit_quantization(before_add))

    per_tensor = copy_model(good)
    gemm = first(per_tensor, "Gemm")
    producer, _, _ = graph_maps(per_tensor)
    dq_w = producer[gemm.input[1]]
    q_w = producer[dq_w.input[0]]
    set_init(per_tensor, dq_w.input[1], np.array(0.01, np.float32))
    set_init(per_tensor, dq_w.input[2], np.array(0, np.int8))
    for node in (q_w, dq_w):
        del node.attribute[:]
    problems = check_explicit_quantization(per_tensor)
    assert any("must be per-channel on its output axis 0 (10 scales)" in p for p in problems), problems

    negative = copy_model(good)
    set_init(negative, first(negative, "QuantizeLinear").input[1], np.array(-1.0, np.float32))
    assert any("positive and finite" in p for p in check_explicit_quantization(negative))

    plain = onnx.load(str(outcomes["fp32"].artifact.file("model.onnx")))
    assert check_explicit_quantization(plain) == ["no QuantizeLinear nodes: not an explicitly quantized model"]


# ---- `mixer-edge trt build`, runners, the on-device script ----------------------------------------

def trt_args(path, **kw):
    import argparse

    p = argparse.ArgumentParser()
    add_trt_arguments(p)
    args = p.parse_args(["build", str(path), *[a for k, v in kw.items() for a in (f"--{k.replace('_', '-')}", str(v))]])
    return args


def test_trt_build_refuses_non_tensorrt_artifacts(tmp_path):
    with pytest.raises(BadInput, match="not a mixer-edge artifact"):
        run_trt(trt_args(tmp_path))
    other = tmp_path / "openvino-fp32"
    other.mkdir()
    art.write_manifest(other, {"target": "openvino", "precision": "fp32", "files": [], "classes": ["a"],
                               "preprocess": {"size": [8, 8], "channels": 1, "mean": [0.5], "std": [0.5]}})
    with pytest.raises(BadInput, match="is a 'openvino' artifact, not a TensorRT one"):
        run_trt(trt_args(other, max_batch=8))


@pytest.mark.skipif(TRT_HERE or trt_target.installed("tensorrt"), reason="tensorrt is installed here")
def test_trt_build_without_tensorrt_says_how_to_install_it(outcomes):
    """JetPack's apt package on a Jetson, NVIDIA's wheel on x86-64: the runtime's table, not a pip extra."""
    with pytest.raises(MissingDependency, match=r"sudo apt-get install python3-libnvinfer .*"
                                                r"or pip install \"tensorrt-cu12>=10,<12\""):
        run_trt(trt_args(outcomes["int8"].artifact.path, timing_cache="/tmp/unused.cache"))
    assert "model.engine" not in [f["path"] for f in art.load_artifact(outcomes["int8"].artifact.path).manifest["files"]]


@pytest.mark.skipif(TRT_HERE, reason="an engine can be built here")
def test_runner_says_why_it_cannot_run_here(outcomes):
    with pytest.raises(NotRunnable, match="engine is not built"):
        TensorRTTarget().load_runner(outcomes["int8"].artifact)


def test_engine_version_mismatch_is_refused(outcomes, monkeypatch, tmp_path):
    """The stamped-version check runs before any GPU work, so a stand-in tensorrt module (only a
    version string) exercises it without pretending to run an engine."""
    monkeypatch.setitem(sys.modules, "tensorrt", types.SimpleNamespace(__version__="10.3.0"))
    a = outcomes["int8"].artifact
    manifest = json.loads(json.dumps(a.manifest))
    manifest["export"]["engine"] = {"built": True, "file": "model.engine", "tensorrt": "11.1.0"}
    manifest["files"].append({"path": "model.engine", "sha256": "0" * 64})   # listed, as trt_build stamps it
    msg = r"engine built with TensorRT 11.1.0, this runtime is 10.3.0: rebuild with `mixer-edge trt build DIR`"
    with pytest.raises(BadInput, match=msg):
        TensorRTTarget().load_runner(art.Artifact(a.path, manifest))
    with pytest.raises(BadInput, match=msg):
        trt_backend.load(a.path, manifest)


def test_stamp_engine_keeps_the_manifest_valid(outcomes, tmp_path):
    """The manifest bookkeeping of an on-device build (here with a stand-in engine file)."""
    folder = tmp_path / "tensorrt-int8"
    shutil.copytree(outcomes["int8"].artifact.path, folder)
    (folder / "model.engine").write_bytes(b"stand-in bytes, not an engine")
    info = {"built": True, "file": "model.engine", "sha256": sha256_file(folder / "model.engine"),
            "bytes": 29, "tensorrt": "10.3.0", "cuda": {"version": "12.6"}, "gpu": {"name": "test"}}
    stamp_engine(folder, read_manifest(folder), info)
    m = art.load_artifact(folder).manifest  # every sha256 still matches
    assert [f["path"] for f in m["files"]][-1] == "model.engine"
    assert m["export"]["engine"]["tensorrt"] == "10.3.0" and m["versions"]["tensorrt"] == "10.3.0"
    assert m["export"]["engine"]["defaults"] == DEFAULT_BATCH
    stamp_engine(folder, read_manifest(folder), info)  # a rebuild replaces the entry
    assert [f["path"] for f in art.load_artifact(folder).manifest["files"]].count("model.engine") == 1


def test_device_script_is_self_contained(outcomes, tmp_path):
    folder = tmp_path / "on-device"
    shutil.copytree(outcomes["fp16"].artifact.path, folder)
    code = ("import sys; sys.path.insert(0, '.'); import trt_build; "
            "assert trt_build.main.__module__ == 'mixer_edge_runtime.engine_cli'; "
            "assert not {'mixer_edge', 'torch', 'onnx', 'onnxruntime'} & set(sys.modules), sorted(sys.modules)")
    subprocess.run([sys.executable, "-c", code], cwd=folder, check=True)
    r = subprocess.run([sys.executable, "trt_build.py", "."], cwd=folder, capture_output=True, text=True)
    if TRT_HERE:
        pytest.skip("an engine can be built here: the gpu tests cover it")
    assert r.returncode == EXIT_NOT_RUN, r.stderr
    assert "cannot run here:" in r.stderr and ("tensorrt" in r.stderr or "GPU" in r.stderr)
    assert art.load_artifact(folder).manifest["export"]["engine"]["built"] is False  # untouched
    r = subprocess.run([sys.executable, "trt_build.py", str(tmp_path)], cwd=folder, capture_output=True, text=True)
    assert r.returncode == EXIT_BAD_INPUT and "not a mixer-edge artifact" in r.stderr


# ---- on a GPU with tensorrt ---------------------------------------------------------------------

@gpu
@pytest.mark.skipif(not TRT_HERE, reason=f"needs tensorrt and an NVIDIA GPU: {TRT_WHY}")
@pytest.mark.parametrize("name", ["fp32", "fp16", "int8"])
def test_engine_builds_stamps_and_matches_pytorch(outcomes, val, name, tmp_path):
    folder = tmp_path / name
    shutil.copytree(outcomes[name].artifact.path, folder)
    info = build_artifact(folder, max_batch=64)
    a = art.load_artifact(folder)
    eng = a.manifest["export"]["engine"]
    assert eng["built"] and eng["tensorrt"] == sys.modules["tensorrt"].__version__ and eng["gpu"]["name"]
    assert (folder / "timing.cache").stat().st_size > 0 and info["plan"]["profile"]["max"][0] == 64
    runner = TensorRTTarget().load_runner(a)
    f = compare(val.reference, runner(val.x), val.labels)
    tol = {"fp32": ("max_abs_diff", 1e-3), "fp16": ("top1_agreement", 0.995), "int8": ("top1_agreement", 0.98)}[name]
    assert (f[tol[0]] <= tol[1]) if tol[0] == "max_abs_diff" else (f[tol[0]] >= tol[1]), f
    again = build_artifact(folder, max_batch=64)
    assert again["timing_cache"]["loaded_bytes"] > 0


@gpu
@pytest.mark.skipif(not TRT_HERE, reason=f"needs tensorrt and an NVIDIA GPU: {TRT_WHY}")
def test_device_script_benchmarks_into_edge_bench_schema(outcomes, tmp_path):
    folder = tmp_path / "int8"
    shutil.copytree(outcomes["int8"].artifact.path, folder)
    ev = take_split(load_data("digits"), "eval")
    np.savez(tmp_path / "digits-eval.npz", images=np.asarray(ev.images, np.uint8), labels=ev.labels)
    out = tmp_path / "bench.json"
    r = subprocess.run([sys.executable, "trt_build.py", ".", "--data", str(tmp_path / "digits-eval.npz"),
                        "--iters", "5", "--json", str(out)], cwd=folder, capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    doc = json.loads(out.read_text())
    res = doc["results"][0]
    assert res["status"] == "ok" and res["target"] == "tensorrt" and res["latency_ms"]["count"] == 5
    assert res["accuracy"]["top1"] >= 0.9 and doc["versions"]["tensorrt"]


def test_cli_namespace_shape():
    args = trt_args(Path("x"), max_batch=16, opt_batch=2)
    assert isinstance(args, Namespace) and args.trt_action == "build" and args.max_batch == 16 and args.opt_batch == 2


def test_runtime_scripts_in_the_artifact_are_the_package_modules(outcomes):
    import mixer_edge.runtime.edge_bench as eb_module
    import mixer_edge.runtime.trt_build as tb_module

    folder = outcomes["int8"].artifact.path
    assert (folder / "edge_bench.py").read_bytes() == Path(eb_module.__file__).read_bytes()
    assert (folder / "trt_build.py").read_bytes() == Path(tb_module.__file__).read_bytes()
