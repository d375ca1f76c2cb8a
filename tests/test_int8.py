"""What every INT8 export shares: smoothing before the target, layers kept in float, and
--max-drop's search, on every registered target that exports here. The hard case is the digits
model with LayerNorm outlier channels (function-preserving) quantized without smoothing."""
from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest

from mixer_edge.calibration.policy import TOKEN_ROW_SPREAD, token_mixing_rule
from mixer_edge.calibration.smoothing import inject_outliers
from mixer_edge.errors import BadInput
from mixer_edge.export import budget
from mixer_edge.export.base import ExportSpec
from mixer_edge.export.registry import TARGETS, get_target
from mixer_edge.export.build import export_one, raise_for
from mixer_edge.export.reference import validation_data
from mixer_edge.runtime.results import document, quantization_summary, result_entry
from mixer_edge.runtime.timing import Settings

BUDGET = 0.6   # top-1 points: one of the 179 digits eval images is 0.56
NEEDS = {"onnx": "onnxruntime", "tensorrt": "onnxruntime", "openvino": "openvino", "coreml": "coremltools"}


@pytest.fixture(scope="module")
def hard(ck, val):
    """The digits model with 100-300x outlier channels, and its validation data (same logits)."""
    model, _ = inject_outliers(ck.model, low=100, high=300, seed=1)
    c = replace(ck, model=model)
    return c, replace(val, reference=validation_data(c, val.x, val.labels, val.source).reference)


@pytest.fixture(scope="module")
def budget_outcomes(hard, calib, tmp_path_factory):
    c, v = hard
    out = {}
    for t in TARGETS:
        pytest.importorskip(NEEDS[t])
        out[t] = export_one(c, t, ExportSpec("int8", smooth=None, max_drop=BUDGET), calib,
                                tmp_path_factory.mktemp(f"budget-{t}"), validation=v, keep_invalid=True)
    return out


def test_every_target_is_covered():
    assert set(NEEDS) == set(TARGETS)


@pytest.mark.parametrize("target", list(TARGETS))
def test_max_drop_met_with_the_fewest_sensitive_layers(budget_outcomes, target):
    o = budget_outcomes[target]
    mp = o.artifact.manifest["export"]["mixed_precision"]
    v = o.validation
    drop = 100 * (v["reference_top1"] - v["top1"])
    first = mp["steps"][0]
    ruled = len(getattr(get_target(target), "float_by_rule", {}))   # OpenVINO's head, float from the first step
    assert first["float_layers"] == ruled and first["drop_points"] > BUDGET, "the hard case must need float layers"
    assert mp["met"] is True and o.passed and drop <= BUDGET + 1e-9, (mp["steps"], o.problems)
    assert mp["steps"][-1]["drop_points"] == pytest.approx(drop, abs=0.01)
    assert all(s["drop_points"] > BUDGET or not s["passed"] for s in mp["steps"][:-1])   # stopped at the first success
    ranked = [r["layer"] for r in mp["sensitivity"]["layers"]]
    assert mp["float_layers"] == ranked[:len(mp["float_layers"])]               # most sensitive first
    assert 0 < len(mp["float_layers"]) < len(ranked)


@pytest.mark.parametrize("target", ["onnx", "tensorrt", "openvino"])
def test_float_layers_carry_no_qdq_and_are_recorded(budget_outcomes, target):
    o = budget_outcomes[target]
    mp = o.artifact.manifest["export"]["mixed_precision"]
    section = {"onnx": "int8", "tensorrt": "qdq", "openvino": "qdq"}[target]
    q = o.artifact.manifest["export"][section]
    assert sorted(q["float_layers"]) == sorted(mp["float_layers"])
    assert q["quantized_layers"] == q["quantizable_layers"] - len(mp["float_layers"])


@pytest.mark.parametrize("target", ["onnx", "openvino"])
def test_latency_cost_of_float_layers_is_measured(budget_outcomes, target):
    lat = budget_outcomes[target].artifact.manifest["export"]["mixed_precision"]["latency"]
    assert lat["all_int8_ms"] > 0 and lat["mixed_ms"] > 0
    assert set(lat["per_layer_ms"]) == set(budget_outcomes[target].artifact.manifest["export"]["mixed_precision"]
                                           ["float_layers"])
    assert sum(lat["per_layer_ms"].values()) == pytest.approx(lat["cost_ms"], abs=1e-3)


def test_tensorrt_latency_cost_says_why_not_measured(budget_outcomes):
    lat = budget_outcomes["tensorrt"].artifact.manifest["export"]["mixed_precision"]["latency"]
    assert "not measured here" in lat["skipped"]


def test_budget_that_cannot_be_met_says_what_was_achieved(hard, calib, tmp_path, monkeypatch):
    """With no layer left to keep in float (the ranking emptied), the hard case cannot meet the
    budget: the export fails, says so with the drop it reached, and records every step."""
    monkeypatch.setattr(budget, "sensitivity", lambda *a, **k: [])
    c, v = hard
    o = export_one(c, "onnx", ExportSpec("int8", smooth=None, max_drop=BUDGET), calib, tmp_path, validation=v,
                       keep_invalid=True)
    mp = o.artifact.manifest["export"]["mixed_precision"]
    assert not o.passed and mp["met"] is False and mp["float_layers"] == []
    assert any(p.startswith(f"--max-drop {BUDGET} not met: top-1 drop ") and "with 0 of 0 layers in float" in p
               for p in o.problems), o.problems
    assert o.artifact.manifest["validation"]["passed"] is False
    with pytest.raises(Exception):   # without --keep-invalid nothing is kept
        raise_for([export_one(c, "onnx", ExportSpec("int8", smooth=None, max_drop=BUDGET), calib,
                                      tmp_path / "discard", validation=v)])
    assert not (tmp_path / "discard" / "onnx-int8").exists()


def test_keep_float_and_bad_layer_names(ck, calib, val, tmp_path):
    o = export_one(ck, "onnx", ExportSpec("int8", float_layers=("head", "blocks.0.mlp_tokens.fc2")), calib,
                       tmp_path, validation=val)
    q = o.artifact.manifest["export"]["int8"]
    assert q["float_layers"] == ["blocks.0.mlp_tokens.fc2", "head"] and q["quantized_layers"] == 16
    with pytest.raises(BadInput, match=r"--keep-float names no layer of this model: blocks\.9\.fc; its layers are "
                                       r"stem\.proj, blocks\.0\.mlp_tokens\.fc1"):
        export_one(ck, "onnx", ExportSpec("int8", float_layers=("blocks.9.fc",)), calib, tmp_path / "x",
                       validation=val)


def test_max_drop_needs_labels_and_a_sane_budget(ck, calib, val, tmp_path):
    with pytest.raises(BadInput, match="needs labelled validation images"):
        export_one(ck, "onnx", ExportSpec("int8", max_drop=0.1), calib, tmp_path,
                       validation=replace(val, labels=None))
    with pytest.raises(BadInput, match=r"--max-drop must be >= 0"):
        export_one(ck, "onnx", ExportSpec("int8", max_drop=-1), calib, tmp_path, validation=val)
    with pytest.raises(BadInput, match=r"--smooth must be between 0 and 1"):
        export_one(ck, "onnx", ExportSpec("int8", smooth=1.5), calib, tmp_path, validation=val)
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]   # no staging folder left


def test_smoothing_recorded_and_exact_in_the_artifact(ck, calib, val, tmp_path):
    """Smoothing is applied before the target: the artifact records it, and its FP32 twin (same
    smoothing, no quantization) would be exact; here, INT8 validation is against the unsmoothed model."""
    o = export_one(ck, "onnx", ExportSpec("int8"), calib, tmp_path, validation=val)
    s = o.artifact.manifest["export"]["smoothing"]
    assert s["alpha"] == 0.5 and [f["linear"] for f in s["folds"]][-1] == "head"
    assert all(f["act_spread_after"] <= f["act_spread_before"] for f in s["folds"])
    np.testing.assert_allclose(o.validation["reference_top1"], (val.reference.argmax(1) == val.labels).mean())


def test_token_mixing_rule_keeps_outlier_rows_float(ck, calib):
    """norm1 outlier channels become rows of the token-mixing inputs: the rule measures them and
    keeps exactly those layers in float; the plain model keeps none."""
    import copy

    import torch


    plain = token_mixing_rule(ck.model, calib.x)
    assert plain["kept_float"] == [] and max(plain["row_spread"].values()) < TOKEN_ROW_SPREAD
    m = copy.deepcopy(ck.model)
    with torch.no_grad():
        m.blocks[1].norm1.weight[[3, 70]] *= 80
        m.blocks[1].norm1.bias[[3, 70]] *= 80
    rule = token_mixing_rule(m, calib.x)
    assert "blocks.1.mlp_tokens.fc1" in rule["kept_float"]
    assert not [n for n in rule["kept_float"] if n.startswith("blocks.0.")]
    assert rule["row_spread"]["blocks.1.mlp_tokens.fc1"] > TOKEN_ROW_SPREAD


def test_quant_inspect_names_the_outlier_channels(ck, tmp_path):
    """The CLI on a checkpoint with injected outliers, without smoothing: the channels it reports
    as outliers are the injected ones, and the worst layers are the ones they feed."""
    import json

    from mixer_edge.cli import main
    from mixer_edge.models.checkpoint import save_checkpoint

    model, where = inject_outliers(ck.model, seed=5)
    save_checkpoint(tmp_path / "ck", model, ck.preprocess, ck.classes, ck.meta)
    assert main(["quant", "inspect", str(tmp_path / "ck"), "--calib-data", "digits", "--calib-size", "100",
                 "--target", "tensorrt", "--no-smooth", "--out", str(tmp_path / "out")]) == 0
    report = json.loads((tmp_path / "out" / "inspect.json").read_text())
    rows = {r["layer"]: r for r in report["layers"]}
    assert len(rows) == 18 and (tmp_path / "out" / "inspect.png").stat().st_size > 10_000
    for w in where:
        layer = "head" if w["norm"] == "norm" else w["norm"].replace("norm2", "mlp_channels.fc1")
        assert set(rows[layer]["outlier_channels"]) == set(w["channels"]), (layer, rows[layer], w)
        assert rows[layer]["spread_reduction"] > 20
    worst = {r["layer"] for r in report["worst"]}
    assert worst <= {"head"} | {f"blocks.{i}.mlp_channels.fc1" for i in range(4)}, worst
    assert report["data"]["measured_on"] == "digits (its held-out eval split, 179 images not trained or calibrated on)"


@pytest.mark.parametrize("target", ["onnx", "tensorrt"])
def test_report_shows_float_layers_and_their_cost(budget_outcomes, target, tmp_path):
    """The artifact's recipe travels into the bench result and the report lists the kept layers
    with the latency measured at export (or why it was not)."""
    from mixer_edge.bench import report

    o = budget_outcomes[target]
    q = quantization_summary(o.artifact.manifest)
    mp = o.artifact.manifest["export"]["mixed_precision"]
    assert q["float_layers"] == mp["float_layers"] and q["max_drop"] == BUDGET
    entry = result_entry(artifact=str(o.dest), name=o.dest.name, target=target, precision="int8",
                            status="not-run", reason="test", quantization=q)
    doc = document([entry], {"name": "dev"}, {}, Settings(), "test", "digits")
    md = report.markdown([doc], report.rows_of([doc]), [], 0.5)
    assert "## INT8 layers kept in float" in md and mp["float_layers"][0] in md
    assert ("ms at export" in md) if target == "onnx" else ("not measured here" in md)


# ---- quantized as the recipe says: the op count ---------------------------------------------------

def hand_count(model) -> int:
    """The matrix multiplies of a Mixer, counted from its module list: the patch-stem Conv2d and every
    Linear (token and channel MLPs, head). T/2: 1 + 4 blocks x 4 + 1 = 18."""
    import torch

    return sum(isinstance(m, (torch.nn.Conv2d, torch.nn.Linear)) for m in model.modules())


PLAIN = [("onnx", False), ("tensorrt", False), ("openvino", False), ("coreml", False),
         ("openvino", True), ("coreml", True)]   # (target, weights only)


@pytest.fixture(scope="module")
def plain_outcomes(ck, calib, val, tmp_path_factory):
    out = {}
    for t, wo in PLAIN:
        pytest.importorskip(NEEDS[t])
        out[t, wo] = export_one(ck, t, ExportSpec("int8", weights_only=wo), None if wo else calib,
                                    tmp_path_factory.mktemp(f"plain-{t}-{wo}"), validation=val)
    return out


@pytest.mark.parametrize("target, weights_only", PLAIN)
def test_int8_exports_quantize_every_matmul_of_the_model(plain_outcomes, ck, target, weights_only):
    o = plain_outcomes[target, weights_only]
    q = o.artifact.manifest["validation"]["quantized_ops"]
    assert hand_count(ck.model) == 18
    assert o.passed and q["status"] == "passed", (o.problems, q)
    ruled = [] if weights_only else list(getattr(get_target(target), "float_by_rule", {}))   # OpenVINO: the head
    assert q["counted"] == q["intended"] == hand_count(ck.model) - len(ruled) and q["float_layers"] == ruled
    assert len(q["float_ops"]) == len(ruled)


@pytest.mark.parametrize("target", ["openvino", "coreml"])
def test_a_weights_only_file_checked_as_w8a8_fails_the_count(plain_outcomes, ck, target):
    """A model file that quantizes fewer ops than W8A8 intends (here none of the activations: the
    weights-only artifact) fails, with both numbers and the reason."""
    from mixer_edge.export import int8

    o = plain_outcomes[target, True]
    q = int8.quantized_ops_check(get_target(target), o.dest, ck.model, ExportSpec("int8"))
    assert q["status"] == "failed" and q["counted"] == 0 and q["intended"] == 18
    assert "quantizes the weights and activations of 0 of its 18 matrix multiplies; the recipe says 18" in q["reason"]


def _leaving_float(monkeypatch, layers):
    """A target that quietly quantizes less than asked: its Q/DQ placement skips `layers` as well."""
    from mixer_edge.export import qdq

    real = qdq.insert_qdq
    monkeypatch.setattr(qdq, "insert_qdq", lambda m, r, f, float_layers=frozenset(): real(
        m, r, f, frozenset(float_layers) | set(layers)))


@pytest.mark.parametrize("target", ["onnx", "tensorrt", "openvino"])
def test_a_graph_that_quantizes_less_than_intended_fails_validation(ck, calib, val, tmp_path, monkeypatch, target):
    """Its figures are within tolerance (less quantization, less error): only the count catches it."""
    pytest.importorskip(NEEDS[target])
    ruled = list(getattr(get_target(target), "float_by_rule", {}))   # OpenVINO keeps its head float by rule
    left = "blocks.3.mlp_channels.fc2" if "head" in ruled else "head"
    _leaving_float(monkeypatch, [left])
    o = export_one(ck, target, ExportSpec("int8"), calib, tmp_path, validation=val, keep_invalid=True)
    v = o.artifact.manifest["validation"]
    q = v["quantized_ops"]
    intended = 18 - len(ruled)
    assert v["passed"] is False and q["status"] == "failed" and (q["counted"], q["intended"]) == (intended - 1, intended)
    assert len(q["float_ops"]) == 1 + len(ruled)
    assert any(left.split(".")[-1] in op.lower() for op in q["float_ops"])
    assert o.problems == (q["reason"],) and f"of {intended - 1} of its 18 matrix multiplies; the recipe says {intended}" \
        in q["reason"]


def test_quantizing_less_never_wins_a_max_drop_step(budget_outcomes, hard, calib, tmp_path, monkeypatch):
    """--max-drop takes the first step that passes. A graph that quietly leaves float the layers the
    honest search ends with meets the budget on accuracy at the all-INT8 step, but its count fails
    it (and every step after whose recipe says fewer float layers); the step chosen is the one whose
    recipe says what the graph does."""
    honest = budget_outcomes["onnx"].artifact.manifest["export"]["mixed_precision"]
    kept = honest["float_layers"]
    monkeypatch.setattr(budget, "sensitivity", lambda *a, **k: honest["sensitivity"]["layers"])
    _leaving_float(monkeypatch, kept)
    c, v = hard
    o = export_one(c, "onnx", ExportSpec("int8", smooth=None, max_drop=BUDGET), calib, tmp_path, validation=v,
                       keep_invalid=True)
    mp = o.artifact.manifest["export"]["mixed_precision"]
    first = mp["steps"][0]
    assert first["drop_points"] <= BUDGET, "on accuracy alone the all-INT8 claim would have won"
    assert first["passed"] is False and first["quantized_ops"] == 18 - len(kept)
    assert [s["passed"] for s in mp["steps"]] == [False] * len(kept) + [True]
    assert o.passed and mp["met"] and mp["float_layers"] == kept
    assert o.artifact.manifest["validation"]["quantized_ops"]["status"] == "passed"


def test_max_drop_steps_record_their_counts(budget_outcomes, ck):
    for target, o in budget_outcomes.items():
        mp = o.artifact.manifest["export"]["mixed_precision"]
        q = o.artifact.manifest["validation"]["quantized_ops"]
        assert q["status"] == "passed" and q["counted"] == hand_count(ck.model) - len(mp["float_layers"]), target
        assert [s["quantized_ops"] for s in mp["steps"]] == [hand_count(ck.model) - s["float_layers"]
                                                            for s in mp["steps"]], target


def test_weights_only_refuses_layer_choices(ck, val, tmp_path):
    for spec in (ExportSpec("int8", weights_only=True, float_layers=("head",)),
                 ExportSpec("int8", weights_only=True, max_drop=0.5)):
        with pytest.raises(BadInput, match="--weights-only quantizes the weights of every layer"):
            export_one(ck, "openvino", spec, None, tmp_path, validation=val)
