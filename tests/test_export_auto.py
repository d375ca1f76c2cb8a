"""`mixer-edge export --target auto` (export/auto.py) and the INT8-worth-it verdict (bench/rows.py)."""
import json
from pathlib import Path

import pytest

from conftest import CPU_BF16
from mixer_edge.bench.rows import INT8_WORTH, Row, int8_verdicts
from mixer_edge.export.auto import candidate_figures, candidate_targets, default_precisions
from mixer_edge.export.build import Outcome

PASSED = {"status": "passed", "checked_by": "own runtime", "runner": "onnxruntime", "reason": None}


def _row(name, precision, p50, exec_precision=None, ci=None):
    return Row("dev", name, "openvino", precision, exec_precision, "ok", None, 1, 0.95, None, None, None, p50, p50,
               (), None, p50_ci=ci or (0.98 * p50, 1.02 * p50), validation=PASSED)


def test_int8_is_not_worth_it_under_the_line_and_pays_above_it():
    # 11.0 / 10.0 = 1.10x: under 1.15x, the BF16 row is the one to deploy
    (dev, text), = int8_verdicts([_row("ov-int8", "int8", 10.0), _row("ov-fp32", "fp32", 11.0, "bf16"),
                                   _row("ov-fp32-f32", "fp32", 20.0)])
    assert dev == "dev" and text.startswith("INT8 is not worth it here") and "1.10x" in text and "ov-fp32 " in text
    # 12.0 / 10.0 = 1.20x: INT8 pays
    (_, text), = int8_verdicts([_row("ov-int8", "int8", 10.0), _row("ov-fp16", "fp16", 12.0)])
    assert text.startswith("INT8 pays here") and "1.20x" in text
    assert INT8_WORTH == 1.15


def test_no_verdict_without_a_16_bit_row_and_an_int8_row_run_in_bf16_is_not_one():
    assert int8_verdicts([_row("ov-int8", "int8", 10.0), _row("ov-fp32", "fp32", 11.0)]) == []
    # an INT8 artifact run with a bf16 hint is still the INT8 row, not the 16-bit float one
    assert int8_verdicts([_row("ov-int8", "int8", 10.0, "bf16")]) == []


def _outcome(validation, problems=(), artifact=object()):
    return Outcome(artifact, Path("x/onnx-int8"), validation, tuple(problems))


@pytest.mark.parametrize("validation,problems,artifact,eligible,why", [
    ({**PASSED, "top1": 0.980, "reference_top1": 0.982}, (), object(), True, ""),
    ({**PASSED, "top1": 0.970, "reference_top1": 0.982}, (), object(), False, "more than 0.5 points below"),
    ({"status": "undecided", "top1": 0.98, "reference_top1": 0.98}, (), object(), False, "too few validation images"),
    ({"skipped": "no runtime"}, (), object(), False, "not validated here"),
    ({"status": "failed"}, ("agreement 0.9",), None, False, "failed validation: agreement 0.9"),
])
def test_a_candidate_is_eligible_only_when_validated_within_the_budget(validation, problems, artifact, eligible, why):
    f = candidate_figures(_outcome(validation, problems, artifact), None)
    assert f["eligible"] is eligible and why in f["why"]


def test_fp16_is_a_default_candidate_only_on_a_cpu_with_bf16():
    assert default_precisions(True, ["avx2", "amx_bf16"]) == ["int8", "fp16", "fp32"]
    assert default_precisions(True, ["avx2", "avx512_bf16"]) == ["int8", "fp16", "fp32"]
    assert default_precisions(True, ["avx2", "avx512_vnni"]) == ["int8", "fp32"]
    assert default_precisions(False, ["avx2"]) == ["fp32"]
    assert default_precisions(False, ["amx_bf16"]) == ["fp16", "fp32"]


def test_the_budget_is_max_drop_when_given():
    v = {**PASSED, "top1": 0.975, "reference_top1": 0.982}   # 0.7 points below
    assert not candidate_figures(_outcome(v), None)["eligible"]
    assert candidate_figures(_outcome(v), 1.0)["eligible"]


def test_auto_keeps_the_fastest_eligible_candidate_with_every_figure(mnist_checkpoint, tmp_path, capsys):
    from mixer_edge.cli import main
    from mixer_edge.export.artifact import load_artifact

    folder, spec = mnist_checkpoint
    out = tmp_path / "auto"
    assert main(["export", str(folder), "--target", "auto", "--calib-data", spec, "--calib-size", "100",
                 "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    kept = [p for p in out.iterdir()]
    assert len(kept) == 1 and f"kept: {kept[0]}" in printed            # the others and the trial folder are gone
    art = load_artifact(kept[0])                                          # files and binding verified
    sel = art.manifest["selection"]
    names = {f["name"] for f in sel["candidates"]}
    precisions = ("int8", "fp16", "fp32") if CPU_BF16 else ("int8", "fp32")
    assert names == {f"{t}-{p}" for t in candidate_targets() for p in precisions}
    timed = [f for f in sel["candidates"] if f["eligible"]]
    assert all(f["p50_ms"] > 0 for f in timed)
    chosen = min(timed, key=lambda f: f["p50_ms"])
    assert sel["chosen"] == chosen["name"] == kept[0].name and chosen["chosen"]
    assert art.manifest["validation"]["status"] == "passed"
    assert sel["machine"]["isa"] and sel["threads"] >= 1


def test_an_edited_selection_is_refused_like_any_edited_manifest(mnist_checkpoint, tmp_path, capsys):
    from mixer_edge.cli import main

    folder, spec = mnist_checkpoint
    out = tmp_path / "auto"
    assert main(["export", str(folder), "--target", "auto", "--precision", "fp32", "--out", str(out)]) == 0
    (kept,) = out.iterdir()
    m = json.loads((kept / "manifest.json").read_text())
    m["selection"]["candidates"][0]["p50_ms"] = 0.001
    (kept / "manifest.json").write_text(json.dumps(m))
    assert main(["bench", str(kept), "--data", spec, "--iters", "2", "--warmup", "0", "--batch-sizes", "1",
                 "--limit", "8"]) != 0
    assert "changed after export (what differs from what binding.json sealed: selection)" in capsys.readouterr().err


def test_auto_takes_no_other_target(digits_checkpoint, tmp_path, capsys):
    from mixer_edge.cli import main

    assert main(["export", str(digits_checkpoint), "--target", "auto,onnx", "--out", str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err
    assert "--target auto chooses among every target that runs here" in err and "Traceback" not in err
    assert not (tmp_path / "o").exists()
