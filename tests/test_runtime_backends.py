"""runtime/backends: the registry (one module per runtime, its load / NEEDS / LIBRARY), and each
backend against the plain runtime it wraps: ONNX Runtime and OpenVINO sessions give plain
onnxruntime's logits on the same file, with the configuration they report; TensorRT and Core ML
say why they cannot run here. GPU facts without a GPU."""
from __future__ import annotations

import hashlib
import json
import shutil
import sys
from types import SimpleNamespace

import numpy as np
import pytest

from mixer_edge.export.registry import TARGETS, get_target
from mixer_edge.runtime.artifact import read_manifest
from mixer_edge.runtime.backends import BACKENDS, NEEDS, Options, import_library, load_backend
from mixer_edge.runtime.backends import cuda
from mixer_edge.runtime.backends import onnxruntime as ort_backend
from mixer_edge.runtime.backends import tensorrt as trt_backend
from mixer_edge.runtime.errors import BadInput, NotRunnable

X = np.random.default_rng(0).normal(size=(5, 1, 8, 8)).astype(np.float32)


def test_every_target_has_its_backend_module():
    assert set(BACKENDS) == set(TARGETS)
    for name, module in BACKENDS.items():
        assert get_target(name).backend is module                    # the host runs what the device runs
        assert callable(module.load) and isinstance(module.NEEDS, tuple) and hasattr(module, "LIBRARY")
    assert set(NEEDS) <= set(BACKENDS)


def test_unknown_target_and_library_import(digits_onnx_artifact, monkeypatch):
    m = read_manifest(digits_onnx_artifact)
    with pytest.raises(NotRunnable, match="no runner for target 'toy'; it runs onnx, openvino, tensorrt, coreml"):
        load_backend(digits_onnx_artifact, {**m, "target": "toy"}, Options())
    monkeypatch.delitem(sys.modules, "json", raising=False)
    import_library(SimpleNamespace(LIBRARY="json"))
    assert "json" in sys.modules
    import_library(SimpleNamespace(LIBRARY="no_such_library_here"))   # the load reports it, not this
    import_library(None)


def plain_ort(path, x):
    ort = pytest.importorskip("onnxruntime")
    return ort.InferenceSession(str(path), providers=["CPUExecutionProvider"]).run(None, {"input": x})[0]


def test_onnxruntime_is_plain_onnxruntime(digits_onnx_artifact):
    pytest.importorskip("onnxruntime")
    m = read_manifest(digits_onnx_artifact)
    b = load_backend(digits_onnx_artifact, m, Options(threads=1))
    np.testing.assert_allclose(b.run(X), plain_ort(digits_onnx_artifact / "model.onnx", X), rtol=0, atol=1e-6)
    assert b.config["threads"] == 1 and b.config["provider"] == "CPUExecutionProvider"
    assert b.what.startswith("onnxruntime ") and "onnxruntime" in b.versions
    basic = ort_backend.session(digits_onnx_artifact / "model.onnx", optimization="basic")
    assert basic.config["graph_optimization"] == "basic"
    with pytest.raises(NotRunnable, match="needs ONNX Runtime provider NoSuchExecutionProvider"):
        load_backend(digits_onnx_artifact, m, Options(provider="NoSuchExecutionProvider"))
    with pytest.raises(BadInput, match="--precision-hint applies to openvino artifacts"):
        load_backend(digits_onnx_artifact, m, Options(precision_hint="f32"))


@pytest.fixture(scope="module")
def ir_artifact(digits_onnx_artifact, tmp_path_factory):
    """The digits ONNX converted to an IR by OpenVINO itself, in a hand-made artifact folder."""
    ov = pytest.importorskip("openvino")
    folder = tmp_path_factory.mktemp("ir") / "openvino-fp32"
    folder.mkdir()
    ov.save_model(ov.convert_model(str(digits_onnx_artifact / "model.onnx")), str(folder / "model.xml"),
                  compress_to_fp16=False)
    m = json.loads((digits_onnx_artifact / "manifest.json").read_text())
    m.update(target="openvino", golden=None, files=[
        {"path": n, "sha256": hashlib.sha256((folder / n).read_bytes()).hexdigest()} for n in ("model.xml", "model.bin")])
    (folder / "manifest.json").write_text(json.dumps(m))
    return folder


def test_openvino_is_plain_onnxruntime_with_an_explicit_f32_hint(ir_artifact, digits_onnx_artifact):
    m = read_manifest(ir_artifact)
    b = load_backend(ir_artifact, m, Options(threads=1))
    np.testing.assert_allclose(b.run(X), plain_ort(digits_onnx_artifact / "model.onnx", X), rtol=0, atol=1e-4)
    assert b.config["precision_hint"] == "f32" and b.config["applied_precision"] == "f32"
    assert b.config["threads"] == 1 and b.what.startswith("openvino ")
    with pytest.raises(NotRunnable, match="needs OpenVINO device NOPE"):
        load_backend(ir_artifact, m, Options(provider="NOPE"))
    with pytest.raises(BadInput, match="unknown --precision-hint 'f8'"):
        load_backend(ir_artifact, m, Options(precision_hint="f8"))
    unlisted = ir_artifact.parent / "unlisted"
    shutil.copytree(ir_artifact, unlisted)
    m2 = json.loads((unlisted / "manifest.json").read_text())
    m2["files"] = m2["files"][:1]                                   # model.bin no longer vouched for
    (unlisted / "manifest.json").write_text(json.dumps(m2))
    with pytest.raises(BadInput, match="'model.bin' is not among the files"):
        load_backend(unlisted, read_manifest(unlisted), Options())


@pytest.mark.parametrize("precision,device,isa,hint", [
    ("fp16", "CPU", ["avx2", "avx512f", "avx512_bf16"], "bf16"),    # Zen 4, Cooper Lake
    ("fp16", "CPU", ["avx2", "amx_tile", "amx_bf16"], "bf16"),      # Sapphire Rapids
    ("fp16", "CPU", ["avx2", "fma", "avx512_vnni"], "f32"),        # no BF16: f16 / bf16 would be emulated
    ("fp16", "GPU", ["amx_bf16"], "f32"),                          # the CPU's flags say nothing of a GPU
    ("fp32", "CPU", ["amx_bf16"], "f32"),                          # FP32 and INT8 are checked exactly: f32
    ("int8", "CPU", ["amx_bf16"], "f32"),
])
def test_openvino_default_hint_is_bf16_only_for_fp16_on_a_bf16_cpu(precision, device, isa, hint):
    from mixer_edge.runtime.backends.openvino import default_hint

    assert default_hint({"precision": precision}, device, isa) == hint


def test_tensorrt_says_why_not(digits_onnx_artifact):
    m = {**read_manifest(digits_onnx_artifact), "target": "tensorrt",
         "export": {"engine": {"built": False, "reason": "no GPU at export"}}}
    with pytest.raises(NotRunnable, match=r"the engine is not built yet: build it on this device with `python3 "
                                          r"trt_build.py .*` \(at export: no GPU at export\)"):
        trt_backend.load(digits_onnx_artifact, m, Options())
    with pytest.raises(BadInput, match="do not apply to TensorRT engines"):
        trt_backend.load(digits_onnx_artifact, m, Options(threads=2))
    trt_backend.check_engine_version("10.3.0", "10.3.0")
    with pytest.raises(BadInput, match="engine built with TensorRT 10.3.0, this runtime is 11.1.0"):
        trt_backend.check_engine_version("10.3.0", "11.1.0")
    assert trt_backend.engine_section({"export": {"engine": {"built": True}}}) == {"built": True}


def test_gpu_facts_and_buffers(monkeypatch):
    monkeypatch.setattr(cuda, "GPU_NODES", ())
    monkeypatch.setattr(cuda.shutil, "which", lambda name: None)
    assert cuda.gpu_present() == (False, "no NVIDIA GPU here (no /dev/nvidia0, no Jetson /dev/nvgpu, no nvidia-smi)")

    class Works:
        name = "stand-in buffers"

    monkeypatch.setattr(cuda, "BUFFER_LIBRARIES", (("broken", lambda: 1 / 0), ("stand-in", Works)))
    assert isinstance(cuda.gpu_buffers(), Works)   # the first library that works, after one that does not
