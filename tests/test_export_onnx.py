"""The ONNX target end to end on the digits model: export every precision through export_one,
check the files (opset, checker, dynamic axes, metadata, QDQ layout), the manifest, the validation
figures against PyTorch FP32, and that INT8 export is byte-for-byte reproducible."""
from __future__ import annotations

import hashlib
import subprocess
import sys
from dataclasses import replace

import numpy as np
import pytest

pytest.importorskip("onnxruntime")
onnx = pytest.importorskip("onnx")

from mixer_edge.errors import BadInput, CalibrationError, UnknownName  # noqa: E402
from mixer_edge.errors import NotRunnable  # noqa: E402
from mixer_edge.export.artifact import runtime_files  # noqa: E402
from mixer_edge.export.base import CALIB_METHODS, ExportSpec  # noqa: E402
from mixer_edge.runtime.schema import PRECISIONS  # noqa: E402
from mixer_edge.export.registry import get_target  # noqa: E402
from mixer_edge.export.validate import TOLERANCES  # noqa: E402
from mixer_edge.export.build import export_one

MANIFEST_KEYS = {"schema", "target", "precision", "files", "input", "output", "preprocess", "classes",
                 "model", "calibration", "validation", "versions"}
METADATA_KEYS = {"classes", "preprocess", "mixer_edge_version", "variant"}



@pytest.fixture(scope="module")
def export(ck, calib, val, tmp_path_factory):
    """export(precision, method=None, name=None) -> Outcome, each distinct export made once."""
    done = {}

    def make(precision, method=None, name="a"):
        key = (precision, method, name)
        if key not in done:
            out = tmp_path_factory.mktemp(f"onnx-{precision}-{method}-{name}")
            done[key] = export_one(ck, "onnx", ExportSpec(precision=precision, calib_method=method),
                                       calib if precision in ("int8", "int4") else None, out, validation=val)
        return done[key]

    return make


def _model(outcome):
    return onnx.load(str(outcome.artifact.file("model.onnx")))


def _sha(outcome) -> str:
    return hashlib.sha256(outcome.artifact.file("model.onnx").read_bytes()).hexdigest()


def _dims(value_info) -> list:
    return [d.dim_param or d.dim_value for d in value_info.type.tensor_type.shape.dim]


# ---- the target as data --------------------------------------------------------------------------

def test_registered_and_runs_here():
    t = get_target("onnx")
    assert t.name == "onnx"
    assert t.capabilities.precisions == frozenset(PRECISIONS)
    assert t.capabilities.requires == ("onnx", "onnxruntime")
    assert t.status().installed and t.status().runs_here, t.status()


def test_import_loads_no_sdk():
    code = ("import sys, mixer_edge.export.onnx, mixer_edge.export.registry as r; r.get_target('onnx'); "
            "bad = [m for m in ('onnx', 'onnxruntime') if m in sys.modules]; assert not bad, bad")
    subprocess.run([sys.executable, "-c", code], check=True)


# ---- every precision -----------------------------------------------------------------------------

@pytest.mark.parametrize("precision", PRECISIONS)
def test_file_is_a_clean_onnx_model(export, ck, precision):
    o = export(precision)
    assert o.passed, o.problems
    m = _model(o)
    onnx.checker.check_model(m, full_check=True)
    assert max(op.version for op in m.opset_import if op.domain in ("", "ai.onnx")) >= 17
    assert any(n.op_type == "LayerNormalization" for n in m.graph.node)  # one node, not decomposed
    cfg = ck.config
    (inp,), (out,) = m.graph.input, m.graph.output
    assert (inp.name, out.name) == ("input", "logits")
    assert _dims(inp) == ["batch", cfg.in_chans, *cfg.img_size]      # only the batch is dynamic
    assert _dims(out) == ["batch", cfg.num_classes]
    assert inp.type.tensor_type.elem_type == out.type.tensor_type.elem_type == onnx.TensorProto.FLOAT
    meta = {p.key: p.value for p in m.metadata_props}
    assert METADATA_KEYS <= set(meta)
    import json
    assert json.loads(meta["classes"]) == list(ck.classes)
    assert json.loads(meta["preprocess"]) == ck.preprocess.to_dict()
    assert meta["variant"] == cfg.variant


@pytest.mark.parametrize("precision", PRECISIONS)
def test_manifest(export, calib, precision):
    o = export(precision)
    mf = o.artifact.manifest
    assert MANIFEST_KEYS <= set(mf), MANIFEST_KEYS - set(mf)
    assert (mf["target"], mf["precision"]) == ("onnx", precision)
    runtime = [f"mixer_edge_runtime/{f}" for f in runtime_files()]
    assert [f["path"] for f in mf["files"]] == ["model.onnx", "edge_bench.py", *runtime, "golden.npz"]
    assert mf["input"] == {"name": "input", "shape": ["batch", 1, 8, 8], "dtype": "float32"}
    assert {"onnx", "onnxruntime", "torch", "mixer_edge"} <= set(mf["versions"])
    assert mf["validation"]["passed"] is True and mf["validation"]["samples"] == 179
    assert mf["validation"]["runner"].startswith("onnxruntime ")
    assert mf["calibration"] == (calib.manifest() if precision in ("int8", "int4") else None)
    # nothing but the model, the device runtime and the manifest: intermediates went to a temp folder
    assert sorted(p.name for p in o.artifact.path.iterdir()) == ["binding.json", "edge_bench.py", "golden.npz", "manifest.json",
                                                               "mixer_edge_runtime", "model.onnx"]


@pytest.mark.parametrize("precision", PRECISIONS)
def test_validation_within_tolerance(export, precision):
    v = export(precision).validation
    tol = TOLERANCES[precision]
    if tol.max_abs_diff is not None:
        assert v["max_abs_diff"] <= tol.max_abs_diff
    if tol.top1_agreement is not None:
        assert v["top1_agreement"] >= tol.top1_agreement
    if tol.cosine is not None:
        assert v["cosine"] >= tol.cosine
    assert v["top1"] >= v["reference_top1"] - 0.02


# ---- fp16 ----------------------------------------------------------------------------------------

def test_fp16_keeps_overflow_prone_nodes_in_fp32(export):
    o = export("fp16")
    m = onnx.shape_inference.infer_shapes(_model(o))
    types = {v.name: v.type.tensor_type.elem_type for v in [*m.graph.value_info, *m.graph.input]}
    types.update({i.name: i.data_type for i in m.graph.initializer})
    half, single = onnx.TensorProto.FLOAT16, onnx.TensorProto.FLOAT
    matmul_weights = [types[n.input[1]] for n in m.graph.node if n.op_type == "MatMul"]
    assert matmul_weights and set(matmul_weights) == {half}
    for n in m.graph.node:
        if n.op_type in ("LayerNormalization", "ReduceMean"):
            assert types[n.input[0]] == single, n.name
    details = o.artifact.manifest["export"]["fp16"]
    assert {"LayerNormalization", "ReduceMean"} <= set(details["block_ops"])
    assert details["keep_io_types"] is True
    # the CPU EP's float32 fallback is found and said, not hidden
    cpu = details["cpu_ep"]
    assert cpu["fp16_nodes"] > 0 and "MatMul" in cpu["upcast_ops"]
    assert o.artifact.manifest["export"]["notes"]


# ---- int8 ----------------------------------------------------------------------------------------

def test_int8_qdq_layout(export):
    o = export("int8")
    m = _model(o)
    inits = {i.name: i for i in m.graph.initializer}
    consumers = {}
    for n in m.graph.node:
        for i in n.input:
            consumers.setdefault(i, []).append(n)
    qs = [n for n in m.graph.node if n.op_type == "QuantizeLinear"]
    assert qs
    for n in qs:  # activations: int8, as the recipe chose
        assert inits[n.input[2]].data_type == onnx.TensorProto.INT8, n.name
    checked = 0
    for n in m.graph.node:
        if n.op_type != "DequantizeLinear" or n.input[0] not in inits:
            continue
        w = inits[n.input[0]]
        for user in consumers[n.output[0]]:
            if user.op_type not in ("MatMul", "Gemm", "Conv") or user.input[1] != n.output[0]:
                continue
            trans_b = next((a.i for a in user.attribute if a.name == "transB"), 0)
            out_axis = {"MatMul": 1, "Gemm": 0 if trans_b else 1, "Conv": 0}[user.op_type]
            axis = next((a.i for a in n.attribute if a.name == "axis"), 1)
            zp = onnx.numpy_helper.to_array(inits[n.input[2]])
            assert w.data_type == onnx.TensorProto.INT8
            assert axis % len(w.dims) == out_axis and zp.shape == (w.dims[out_axis],), user.name
            assert not zp.any()  # symmetric weights
            checked += 1
    assert checked == 18  # 16 MatMul + the stem (a MatMul on patches: export/onnx_stem.py) + head Gemm
    details = o.artifact.manifest["export"]["int8"]
    assert details["quantized_op_types"] == {"Gemm": 1, "MatMul": 17}
    assert (details["flavor"], details["symmetric_activations"], details["weight_bits"]) == ("onnxruntime", False, 7)
    assert details["calibration"]["method"] == "mse"   # ranges.DEFAULT_METHOD


def test_int8_is_deterministic(export):
    a, b = export("int8"), export("int8", name="again")
    assert a.artifact.path != b.artifact.path
    assert _sha(a) == _sha(b)


@pytest.mark.parametrize("method", [m for m in CALIB_METHODS if m != "mse"])
def test_int8_calibration_methods(export, method):
    o = export("int8", method)
    assert o.passed, o.problems
    details = o.artifact.manifest["export"]["int8"]["calibration"]
    assert details["method"] == method
    assert _sha(o) != _sha(export("int8"))  # the method changed the ranges (not the default's)


# ---- runner --------------------------------------------------------------------------------------

def test_runner_batches_threads_and_provider(export, val):
    o = export("fp32")
    t = get_target("onnx")
    r = t.load_runner(o.artifact, threads=1)
    assert r.config == {"provider": "CPUExecutionProvider", "providers": ["CPUExecutionProvider"],
                        "threads": 1, "spinning": r.config["spinning"], "graph_optimization": "all"}
    assert r.what.startswith("onnxruntime ") and r.what.endswith("CPUExecutionProvider")
    x = np.concatenate([val.x, val.x])                       # 358 images: two chunks of <= 256
    y = r(x)
    assert y.shape == (len(x), 10) and y.dtype == np.float32
    np.testing.assert_allclose(y[:1], r(x[:1]), atol=1e-5)
    np.testing.assert_allclose(y[len(val.x):], y[:len(val.x)], atol=1e-5)
    assert r(x[:0]).shape == (0, 10)
    # a provider this onnxruntime lacks: the runtime cannot run here (a not-run row, exit 3), not bad input
    with pytest.raises(NotRunnable, match="needs ONNX Runtime provider NoSuchExecutionProvider"):
        t.load_runner(o.artifact, provider="NoSuchExecutionProvider")


# ---- errors --------------------------------------------------------------------------------------

def test_bad_requests_fail_early(ck, calib, val, tmp_path):
    with pytest.raises(BadInput, match="opset 16"):
        export_one(ck, "onnx", ExportSpec(opset=16), None, tmp_path, validation=val)
    with pytest.raises(UnknownName, match="calibration method 'kl'"):
        export_one(ck, "onnx", ExportSpec(precision="int8", calib_method="kl"), calib, tmp_path, validation=val)
    with pytest.raises(CalibrationError):
        export_one(ck, "onnx", ExportSpec(precision="int8"), None, tmp_path, validation=val)
    wrong = replace(calib, x=np.zeros((4, 3, 8, 8), np.float32))
    with pytest.raises(CalibrationError, match=r"\[3, 8, 8\]"):
        export_one(ck, "onnx", ExportSpec(precision="int8"), wrong, tmp_path, validation=val)
    assert not any(tmp_path.iterdir())  # failed exports leave nothing behind
