"""Core ML target on the tiny digits model: each variant converted once (module scope). Core ML
predicts only on macOS, so here the programs are read back and checked op by op (with coremltools'
MIL loader, independently of check_program), and W8A8 is measured through its quantized PyTorch
model against FP32 on the digits eval split. Prediction tests are marked macos."""
from __future__ import annotations

import json
import platform
import subprocess
import sys
from collections import Counter

import numpy as np
import pytest

ct = pytest.importorskip("coremltools")

from mixer_edge import Checkpoint, Preprocess, create_model  # noqa: E402
from mixer_edge.errors import BadInput, UnknownName, ValidationError  # noqa: E402
from mixer_edge.errors import NotRunnable  # noqa: E402
from mixer_edge.export.base import ExportSpec  # noqa: E402
from mixer_edge.export.coreml import (MODEL, W8A8_STAND_IN, CoreMLTarget, _predicts_here,  # noqa: E402
                                      check_program)
from mixer_edge.export.registry import get_target  # noqa: E402
from mixer_edge.export.build import export_one

SPECS = {
    "fp32": ExportSpec("fp32"),
    "fp16": ExportSpec("fp16"),
    "w8a8": ExportSpec("int8"),
    "weights_only": ExportSpec("int8", weights_only=True),
    "image": ExportSpec("fp16", coreml_input="image"),
}
ON_MAC = platform.system() == "Darwin"
WEIGHT_OPS = {"constexpr_affine_dequantize", "constexpr_blockwise_shift_scale"}



@pytest.fixture(scope="module")
def outcomes(ck, calib, val, tmp_path_factory):
    root = tmp_path_factory.mktemp("coreml")
    return {k: export_one(ck, "coreml", spec, calib, root / k, validation=val) for k, spec in SPECS.items()}


def program(outcome):
    """The saved program as coremltools' MIL loader reads it: (ops, spec, MLModel)."""
    from coremltools.converters.mil.frontend.milproto.load import load

    mlmodel = ct.models.MLModel(str(outcome.artifact.file(MODEL)), skip_model_load=True)
    spec = mlmodel.get_spec()
    prog = load(spec, spec.specificationVersion, mlmodel.weights_dir)
    ops, stack = [], [prog.functions["main"]]
    while stack:
        block = stack.pop()
        for op in block.operations:
            ops.append(op)
            stack.extend(op.blocks)
    return ops, spec, mlmodel


def dtype_of(var) -> str:
    from coremltools.converters.mil.mil import types

    return types.builtin_to_string(var.dtype)


def test_registered_lazy_and_not_runnable_here():
    assert isinstance(get_target("coreml"), CoreMLTarget)
    status = CoreMLTarget().status()
    assert status.installed and status.runs_here is _predicts_here()
    if not ON_MAC:
        assert "structural checks only" in status.reason
    code = "import sys, mixer_edge.export.coreml; assert 'coremltools' not in sys.modules"
    subprocess.run([sys.executable, "-c", code], check=True)


@pytest.mark.parametrize("variant", list(SPECS))
def test_export_kept_with_manifest(outcomes, ck, variant):
    o = outcomes[variant]
    assert o.passed, o.problems
    m = o.artifact.manifest
    paths = {f["path"] for f in m["files"]}
    assert {f"{MODEL}/Manifest.json", f"{MODEL}/Data/com.apple.CoreML/model.mlmodel",
            f"{MODEL}/Data/com.apple.CoreML/weights/weight.bin"} <= paths
    assert m["versions"]["coremltools"] == ct.__version__
    assert m["export"]["program"]["passed"] is True
    assert m["export"]["coreml"]["deployment_target"] == "iOS17"
    _, _, mlmodel = program(o)
    meta = mlmodel.user_defined_metadata
    assert json.loads(meta["classes"]) == list(ck.classes)
    assert json.loads(meta["preprocess"]) == ck.preprocess.to_dict()
    assert mlmodel.author.startswith("mixer-edge") and ck.config.variant in mlmodel.short_description


@pytest.mark.skipif(_predicts_here(), reason="on macOS the program itself is validated")
@pytest.mark.parametrize("variant", ["fp32", "fp16", "weights_only", "image"])
def test_validation_says_skipped_off_macos(outcomes, variant):
    v = outcomes[variant].validation
    assert v["passed"] is None and "runner" not in v and "top1_agreement" not in v
    assert v["skipped"] == "Core ML prediction needs macOS; program checked structurally instead"


@pytest.mark.skipif(_predicts_here(), reason="on macOS the program itself is validated")
def test_w8a8_quantized_pytorch_close_to_fp32(outcomes, val):
    o = outcomes["w8a8"]
    v = o.validation
    assert v["runner"] == W8A8_STAND_IN and v["passed"] is True and v["samples"] == 179
    assert v["top1_agreement"] >= 0.98 and v["cosine"] >= 0.99
    assert abs(v["top1"] - v["reference_top1"]) <= 1 / 179 + 1e-9   # within one image (0.56 points)
    assert v["sqnr_db"] > 25, v
    # The stand-in lived only for the export (no cache): later, nothing here can run the program.
    with pytest.raises(NotRunnable, match="needs macOS"):
        CoreMLTarget().validation_runner(o.artifact)
    q = o.artifact.manifest["export"]["quantization"]
    assert q["mode"] == "w8a8" and q["activation_quantizers"] > 0
    assert len(q["quantized_modules"]) == 18 and all("norm" in n for n in q["float_modules"])


def test_w8a8_program_has_int8_weights_and_activations(outcomes):
    ops, spec, _ = program(outcomes["w8a8"])
    types = Counter(op.op_type for op in ops)
    assert types["constexpr_affine_dequantize"] == 18          # 17 linear + the stem conv
    for op in ops:
        if op.op_type == "constexpr_affine_dequantize":
            assert op.quantized_data.val.dtype == np.int8
    assert types["quantize"] > 0 and types["dequantize"] > 0
    assert all(op.output_dtype.val in ("int8", "uint8") for op in ops if op.op_type == "quantize")
    assert types["quantize"] == outcomes["w8a8"].artifact.manifest["export"]["quantization"]["activation_quantizers"]
    assert spec.specificationVersion == 8                        # iOS17


def test_weights_only_program(outcomes):
    ops, _, _ = program(outcomes["weights_only"])
    types = Counter(op.op_type for op in ops)
    assert types["constexpr_affine_dequantize"] == 18 and not types["quantize"] and not types["dequantize"]
    assert all(dtype_of(op.outputs[0]) == "fp16" for op in ops if op.op_type in ("linear", "conv"))


@pytest.mark.parametrize("variant,compute", [("fp32", "fp32"), ("fp16", "fp16")])
def test_float_programs_compute_dtype(outcomes, variant, compute):
    ops, spec, _ = program(outcomes[variant])
    types = Counter(op.op_type for op in ops)
    assert types["linear"] == 17 and types["conv"] == 1 and types["layer_norm"] == 9
    assert not (set(types) & (WEIGHT_OPS | {"quantize", "dequantize"}))
    assert {dtype_of(op.outputs[0]) for op in ops if op.op_type in ("linear", "conv", "layer_norm")} == {compute}
    if compute == "fp32":
        assert "fp16" not in {dtype_of(o) for op in ops for o in op.outputs}
    (inp,) = spec.description.input
    assert inp.name == "input" and list(inp.type.multiArrayType.shape) == [1, 1, 8, 8]
    shapes = [list(s.shape) for s in inp.type.multiArrayType.enumeratedShapes.shapes]   # each one Neural-Engine
    assert shapes == [[b, 1, 8, 8] for b in (1, 2, 4, 8, 16, 32, 64)]                   # eligible, unlike a range
    assert not inp.type.multiArrayType.shapeRange.sizeRanges
    assert [o.name for o in spec.description.output] == ["logits"]


def test_image_input_bakes_preprocessing(outcomes, ck):
    ops, spec, _ = program(outcomes["image"])
    (inp,) = spec.description.input
    t = inp.type.imageType
    assert inp.name == "input" and (t.height, t.width) == (8, 8)
    assert ct.proto.FeatureTypes_pb2.ImageFeatureType.ColorSpace.Name(t.colorSpace) == "GRAYSCALE"
    (scale,) = [op for op in ops if op.op_type == "mul" and op.x.name == "input"]
    (bias,) = [op for op in ops if op.op_type == "add" and op.x.name == scale.outputs[0].name]
    mean, std = ck.preprocess.mean[0], ck.preprocess.std[0]   # 0.5, 0.5: (x / 255 - 0.5) / 0.5
    assert scale.y.val == pytest.approx(1 / (255 * std))
    assert bias.y.val == pytest.approx(-mean / std)
    rec = outcomes["image"].artifact.manifest["export"]["coreml"]["input"]
    assert rec["kind"] == "image" and rec["color_layout"] == "GRAYSCALE"


def test_check_program_catches_a_wrong_program(outcomes):
    fp16 = outcomes["fp16"].artifact.file(MODEL)
    with pytest.raises(ValidationError) as e:
        check_program(fp16, "int8", False, chw=(1, 8, 8), num_classes=10)
    assert "not quantized" in str(e.value) and "W8A8 asked" in str(e.value)
    with pytest.raises(ValidationError, match="expected \\(batch, 3, 8, 8\\)"):
        check_program(fp16, "fp16", False, chw=(3, 8, 8), num_classes=10)
    with pytest.raises(ValidationError, match="float32 compute"):
        check_program(fp16, "fp32", False)


def test_bad_requests_fail_before_converting(ck, calib, val, tmp_path):
    rgb = Checkpoint(model=create_model("T/2", num_classes=10, in_chans=3, img_size=8), classes=ck.classes,
                     preprocess=Preprocess((8, 8), 3, mean=(0.5, 0.4, 0.3), std=(0.2, 0.3, 0.4)))
    with pytest.raises(BadInput, match=r"per-channel std \[0.2, 0.3, 0.4\].*use --coreml-input tensor"):
        export_one(rgb, "coreml", ExportSpec("fp16", coreml_input="image"), None, tmp_path, validation=val)
    with pytest.raises(UnknownName, match="iOS15.*accepted: .*iOS17.*macOS14"):
        export_one(ck, "coreml", ExportSpec("fp16", coreml_target="iOS15"), None, tmp_path, validation=val)
    with pytest.raises(BadInput, match="W8A8.*iOS17 / macOS14 or newer.*iOS16"):
        export_one(ck, "coreml", ExportSpec("int8", coreml_target="iOS16"), calib, tmp_path, validation=val)
    assert not any(tmp_path.rglob("*.mlpackage"))


@pytest.mark.skipif(_predicts_here(), reason="Core ML runs on macOS")
def test_load_runner_refuses_off_macos(outcomes):
    with pytest.raises(NotRunnable, match="needs macOS"):
        CoreMLTarget().load_runner(outcomes["fp16"].artifact)


@pytest.mark.macos
@pytest.mark.skipif(not _predicts_here(), reason="Core ML prediction needs macOS")
@pytest.mark.parametrize("variant", ["fp32", "fp16", "w8a8", "weights_only", "image"])
def test_macos_program_validated_by_core_ml(outcomes, val, variant):
    v = outcomes[variant].validation
    assert v["passed"] is True and v["runner"].startswith("coremltools ")
    run = CoreMLTarget().load_runner(outcomes[variant].artifact, compute_units="cpu_only")
    logits = run(val.x[:70])   # more than one chunk of 64
    assert logits.shape == (70, 10)
    assert (logits.argmax(1) == val.reference[:70].argmax(1)).mean() >= 0.98
