"""runtime/profile.py and the backends' profilers: op kinds, shares and matmul work against hand
counts. The multiply-accumulates a runtime's profile finds must equal the model's own count from its
configuration (an independent formula, below), whichever runtime traced it."""
import json

import numpy as np
import pytest

from mixer_edge.runtime.profile import NodeTimes, format_profile, kind_of, matmul_macs, summarize


def config_macs(cfg) -> int:
    """Stem, token MLPs, channel MLPs and head of a Mixer, by hand from its configuration."""
    n, c, p = cfg.num_tokens, cfg.hidden_dim, cfg.patch_size
    block = 2 * n * cfg.tokens_mlp_dim * c + 2 * n * c * cfg.channels_mlp_dim
    return n * c * p * p * cfg.in_chans + cfg.num_layers * block + c * cfg.num_classes


def test_matmul_macs_whichever_operand_is_transposed():
    # (1, 196, 768) @ (768, 3072): 196 * 3072 * 768
    assert matmul_macs([1, 196, 768], [768, 3072], [1, 196, 3072]) == 196 * 3072 * 768
    assert matmul_macs([1, 196, 768], [3072, 768], [1, 196, 3072]) == 196 * 3072 * 768   # B stored (N, K)
    # token mixing with A transposed inside the kernel: (1, 196, 768) -> rows 768, reduce over 196
    assert matmul_macs([1, 196, 768], None, [1, 768, 384]) == 768 * 384 * 196
    assert matmul_macs([1, 196, 768], None, [1, 196, 3072]) == 196 * 3072 * 768
    assert matmul_macs([1, -1, 768], None, [1, 196, 3072]) is None      # a dynamic dimension: unknown


def test_summarize_shares_and_int8_work_by_hand():
    nodes = [NodeTimes("fc1", "MatMulIntegerToFloat", 6.0, "int8", 300),
             NodeTimes("fc2", "MatMul", 2.0, "float", 100),
             NodeTimes("q", "QuantizeLinear", 1.0),
             NodeTimes("t", "Transpose", 1.0),
             NodeTimes("x", "SomethingNew", 0.0)]
    p = summarize(nodes, calls=2, batch=1, source="test")
    assert p["node_ms"] == pytest.approx(5.0)                       # 10 ms over 2 calls
    kinds = {k["kind"]: k for k in p["by_kind"]}
    assert kinds["matmul int8"]["share"] == pytest.approx(0.6)
    assert kinds["matmul fp32"]["ms"] == pytest.approx(1.0)
    assert kinds["quantize / dequantize"]["share"] == pytest.approx(0.1)
    assert kinds["other"]["op_types"] == ["SomethingNew"]
    assert [k["kind"] for k in p["by_kind"]][0] == "matmul int8"    # largest first
    assert p["matmul"]["int8_macs_share"] == pytest.approx(0.75)    # 300 of 400
    assert p["matmul"]["int8_time_share"] == pytest.approx(0.75)    # 6 of 8 ms
    assert "75.0 % of multiply-accumulates" in format_profile("m", p)


def test_unknown_macs_make_the_share_unknown_not_zero():
    p = summarize([NodeTimes("a", "MatMul", 1.0, "int8", None), NodeTimes("b", "MatMul", 1.0, "float", 10)],
                  calls=1, batch=1, source="test")
    assert p["matmul"]["int8_macs_share"] is None and p["matmul"]["int8_time_share"] == pytest.approx(0.5)
    assert "unknown of multiply-accumulates" in format_profile("m", p)


def test_kinds_cover_both_runtimes_layer_names():
    assert kind_of("FullyConnectedQuantizedLegacy") == "matmul" and kind_of("MVN") == "layernorm"
    assert kind_of("FakeQuantize") == "quantize / dequantize" and kind_of("Reorder") == "reorder / layout"
    assert kind_of("BiasGelu") == "gelu" and kind_of("SkipLayerNormalization") == "layernorm"


@pytest.fixture(scope="module")
def int8_artifacts(ck, calib, val, tmp_path_factory):
    """The digits model as ONNX INT8, OpenVINO INT8 and ONNX FP32 artifacts."""
    from mixer_edge.export.base import ExportSpec
    from mixer_edge.export.build import export_one

    out = tmp_path_factory.mktemp("profile-artifacts")
    made = {}
    for target, precision in (("onnx", "int8"), ("openvino", "int8"), ("onnx", "fp32")):
        made[(target, precision)] = export_one(ck, target, ExportSpec(precision), calib if precision == "int8" else None,
                                               out, validation=val, keep_invalid=True).artifact.path
    return made


@pytest.mark.parametrize("target,precision,int8_share", [("onnx", "int8", 1.0), ("openvino", "int8", None),
                                                          ("onnx", "fp32", 0.0)])
def test_a_runtime_profile_counts_the_models_own_work(int8_artifacts, ck, target, precision, int8_share):
    from mixer_edge.runtime.artifact import read_manifest
    from mixer_edge.runtime.backends import BACKENDS, Options

    folder = int8_artifacts[(target, precision)]
    x = np.random.default_rng(0).random((2, ck.config.in_chans, *ck.config.img_size), dtype=np.float32)
    nodes = BACKENDS[target].profile(folder, read_manifest(folder), Options(threads=1), x, calls=3)
    p = summarize(nodes, 3, 2, BACKENDS[target].LIBRARY)
    assert p["matmul"]["macs"] == 2 * config_macs(ck.config)       # batch 2, counted from the traced shapes
    assert sum(k["share"] for k in p["by_kind"]) == pytest.approx(1.0, abs=1e-3)
    if int8_share is None:   # OpenVINO INT8: every matmul but the head, float by OpenVINO's rule
        head = ck.config.hidden_dim * ck.config.num_classes
        assert p["matmul"]["int8_macs_share"] == pytest.approx(1 - head / config_macs(ck.config), abs=1e-4)  # 4 places
        assert p["matmul"]["by_precision"]["fp32"]["macs"] == 2 * head
    else:
        assert p["matmul"]["int8_macs_share"] == pytest.approx(int8_share)


def test_bench_profile_goes_into_the_result_and_the_report(int8_artifacts, digits_checkpoint, tmp_path, capsys):
    from mixer_edge.cli import main

    result = tmp_path / "r.json"
    arts = [str(int8_artifacts[("openvino", "int8")]), str(digits_checkpoint)]
    assert main(["bench", *arts, "--data", "digits", "--iters", "3", "--warmup", "0", "--batch-sizes", "1",
                 "--profile", "3", "--json", str(result)]) == 0
    out = capsys.readouterr().out
    assert "profile of openvino-int8 (openvino, batch 1, 3 calls" in out
    assert "matmul work in INT8 kernels: 100.0 % of multiply-accumulates" in out
    doc = json.loads(result.read_text())
    ov, eager = doc["results"]
    assert ov["profile"]["status"] == "ok" and ov["profile"]["by_kind"][0]["kind"].startswith("matmul")
    assert eager["profile"]["status"] == "not-run" and "no runtime profiler" in eager["profile"]["reason"]
    assert main(["report", str(result), "--out", str(tmp_path / "rep")]) == 0
    md = (tmp_path / "rep" / "report.md").read_text()
    assert "## Where the time goes" in md and "100.0% of MACs" in md
    assert (tmp_path / "rep" / "time_by_op_type.png").stat().st_size > 1000
    assert "Where the time goes" in (tmp_path / "rep" / "report.html").read_text()


def test_a_result_without_profiles_has_no_profile_section(digits_bench_result, tmp_path):
    from mixer_edge.cli import main

    assert main(["report", str(digits_bench_result), "--out", str(tmp_path / "rep")]) == 0
    assert "Where the time goes" not in (tmp_path / "rep" / "report.md").read_text()
    assert not (tmp_path / "rep" / "time_by_op_type.png").exists()
