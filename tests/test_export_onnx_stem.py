"""export/onnx_stem.py: the patch stem as a matrix multiply computes what the convolution computed
(checked against the unmodified ONNX graph and against PyTorch), and ONNX Runtime then runs every
matrix multiply of an INT8 artifact in integer kernels (its own profiler says so)."""
import numpy as np
import pytest
import torch

import mixer_edge as me
from mixer_edge.export.onnx_io import export_fp32_onnx
from mixer_edge.export.onnx_stem import stem_as_matmul
from mixer_edge.runtime.backends.onnxruntime import session


def _run(model, x, tmp_path, name):
    import onnx

    path = tmp_path / name
    onnx.save(model, str(path))
    return session(path).run(x)


@pytest.mark.parametrize("variant,img,chans", [("T/2", 8, 1), ("T/4", 32, 3)])
def test_the_rewritten_stem_computes_the_same_logits(variant, img, chans, tmp_path):
    torch.manual_seed(0)
    model = me.create_model(variant, num_classes=10, img_size=img, in_chans=chans).eval()
    torch.nn.init.normal_(model.head.weight, std=0.02)
    fp32 = export_fp32_onnx(model, tmp_path / "fp32.onnx")
    rewritten, applied = stem_as_matmul(fp32)
    assert applied
    ops = [n.op_type for n in rewritten.graph.node]
    assert "Conv" not in ops                                                   # the stem is a MatMul now
    assert any(n.name == "/stem/proj/MatMul" for n in rewritten.graph.node)
    x = np.random.default_rng(1).standard_normal((3, chans, img, img)).astype(np.float32)
    before, after = _run(fp32, x, tmp_path, "a.onnx"), _run(rewritten, x, tmp_path, "b.onnx")
    with torch.no_grad():
        reference = model(torch.from_numpy(x)).numpy()
    # the same products summed in another order: float32 rounding only (logits of order 0.1-1)
    np.testing.assert_allclose(after, before, rtol=0, atol=1e-5)
    np.testing.assert_allclose(after, reference, rtol=0, atol=1e-5)


def test_a_stem_that_is_not_a_patch_convolution_is_left_alone(tmp_path):
    torch.manual_seed(0)
    fp32 = export_fp32_onnx(me.create_model("T/2", num_classes=10, img_size=8, in_chans=1), tmp_path / "f.onnx")
    conv = next(n for n in fp32.graph.node if n.op_type == "Conv")
    for a in conv.attribute:
        if a.name == "pads":
            a.ints[:] = [1, 1, 1, 1]
    same, applied = stem_as_matmul(fp32)
    assert not applied and same is fp32


def test_onnx_runtime_runs_every_matmul_of_the_int8_artifact_in_integer_kernels(ck, calib, val, tmp_path):
    from mixer_edge.export.base import ExportSpec
    from mixer_edge.export.build import export_one
    from mixer_edge.runtime.artifact import read_manifest
    from mixer_edge.runtime.backends import Options
    from mixer_edge.runtime.backends import onnxruntime as ort_backend
    from mixer_edge.runtime.profile import summarize

    o = export_one(ck, "onnx", ExportSpec("int8"), calib, tmp_path, validation=val, keep_invalid=True)
    m = read_manifest(o.dest)
    assert m["export"]["int8"]["stem"].startswith("patches x matrix")
    nodes = ort_backend.profile(o.dest, m, Options(threads=1), val.x[:2], calls=2)
    p = summarize(nodes, 2, 2, "onnxruntime")
    assert p["matmul"]["int8_macs_share"] == 1.0 and list(p["matmul"]["by_precision"]) == ["int8"]
    assert o.validation["sqnr_db"] > 30   # the digits model's INT8 as before the rewrite (39.5 dB measured)
