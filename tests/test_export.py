"""export(): the request checks, the atomic artifact directory, validation on every export, and
artifacts that stand on their own (a script that knows only manifest.json reproduces accuracy)."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from conftest import block_imports
from mixer_edge.cli import main
from mixer_edge.errors import BadInput, CalibrationError
from mixer_edge.export.artifact import runtime_files
from mixer_edge.export.plan import ExportPlan, run_plan
from mixer_edge.runtime.schema import PRECISIONS
from mixer_edge.export.registry import TARGETS, get_target
from mixer_edge.export.build import export_one, raise_for
from mixer_edge.export.reference import validation_data

pytest.importorskip("onnxruntime")
ROOT = Path(__file__).resolve().parents[1]


def _run(capsys, *argv):
    code = main([str(a) for a in argv])
    # stderr without the thread count's status line (runtime/threads.py) a computing command starts with
    return code, [ln for ln in capsys.readouterr().err.strip().splitlines() if not ln.startswith("threads: ")]


def test_every_registered_target_is_exported_by_a_test():
    """Each registry entry has its own test module that exports every precision it supports."""
    for name in TARGETS:
        assert (ROOT / "tests" / f"test_export_{name}.py").is_file(), f"no tests for target {name!r}"
        assert get_target(name).capabilities.precisions <= set(PRECISIONS)


def test_unknown_target_and_precision(capsys, digits_checkpoint, tmp_path):
    code, err = _run(capsys, "export", digits_checkpoint, "--target", "tflite", "--out", tmp_path)
    assert code == 2 and err[0].startswith("error: unknown target 'tflite'; accepted: ") and "onnx" in err[0]
    code, err = _run(capsys, "export", digits_checkpoint, "--precision", "int9", "--out", tmp_path)
    assert code == 2 and len(err) == 1 and err[0].startswith("error: unknown precision 'int9'; accepted: fp16, fp32, "
                                                             "int4, int8")


@pytest.mark.parametrize("target", sorted(TARGETS))
def test_int8_without_calibration_data(capsys, digits_checkpoint, tmp_path, target):
    if not get_target(target).status().installed:
        pytest.skip(f"{target}: {get_target(target).status().reason}")
    code, err = _run(capsys, "export", digits_checkpoint, "--target", target, "--int8", "--out", tmp_path)
    assert code == 2 and len(err) == 1 and "--int8 needs calibration data" in err[0]
    assert not any(tmp_path.iterdir())


def test_calibration_shape_mismatch(capsys, digits_checkpoint, tmp_path):
    np.savez(tmp_path / "other.npz", x=np.zeros((120, 1, 28, 28), np.float32))  # made for a 28x28 model
    code, err = _run(capsys, "export", digits_checkpoint, "--int8", "--calib-data", tmp_path / "other.npz",
                     "--out", tmp_path / "out")
    assert code == 2 and len(err) == 1
    assert "holds images of shape [1, 28, 28] but the model takes [1, 8, 8]" in err[0]


def test_calibration_images_with_unconvertible_channels(digits_checkpoint, tmp_path):
    from mixer_edge import load_checkpoint
    from mixer_edge.calibration import make_calibration
    from mixer_edge.data.dataset import ImageSet
    import mixer_edge.data.sources as sources

    ck = load_checkpoint(digits_checkpoint)
    four = ImageSet(np.zeros((150, 8, 8, 4), np.uint8), None, (), "rgba")
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(sources, "load_data", lambda spec, options=None: four)
        with pytest.raises(BadInput, match="images with 4 channels cannot be converted to the model's 1"):
            make_calibration("rgba", ck.preprocess, size=120)


def test_calibration_folder_without_readable_images(capsys, digits_checkpoint, tmp_path):
    (tmp_path / "imgs").mkdir()
    (tmp_path / "imgs" / "notes.txt").write_text("no images here")
    code, err = _run(capsys, "export", digits_checkpoint, "--int8", "--calib-data", f"folder:{tmp_path / 'imgs'}",
                     "--out", tmp_path / "out")
    assert code == 2 and len(err) == 1 and "imgs" in err[0]


def test_too_few_calibration_images(digits_checkpoint):
    from mixer_edge import load_checkpoint
    from mixer_edge.calibration import make_calibration

    ck = load_checkpoint(digits_checkpoint)
    # The digits' train split (1,438) is the model's, the eval split (179) validation's: 180 remain.
    with pytest.raises(CalibrationError, match="asked for 500 images but digits .180 of 1797 images: not "
                                               "trained on, not held out for validation. has only 180"):
        make_calibration("digits", ck.preprocess, size=500, trained=ck.trained_keys, split=ck.split)
    small = make_calibration("digits", ck.preprocess, size=50, trained=ck.trained_keys, split=ck.split)
    assert small.warnings and "small" in small.warnings[0]


def test_output_folder_that_is_not_an_artifact(capsys, digits_checkpoint, tmp_path):
    dest = tmp_path / "out" / "onnx-fp32"
    dest.mkdir(parents=True)
    (dest / "precious.txt").write_text("user data")
    code, err = _run(capsys, "export", digits_checkpoint, "--out", tmp_path / "out")
    assert code == 2 and "exists and is not a mixer-edge artifact" in err[0] and "--force" in err[0]
    assert (dest / "precious.txt").read_text() == "user data"
    assert _run(capsys, "export", digits_checkpoint, "--out", tmp_path / "out", "--force")[0] == 0
    assert (dest / "manifest.json").is_file() and not (dest / "precious.txt").exists()
    # an existing artifact is replaced without --force
    assert _run(capsys, "export", digits_checkpoint, "--out", tmp_path / "out")[0] == 0


def test_missing_optional_backend_names_the_extra(capsys, digits_checkpoint, tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "openvino", None)  # `import openvino` now raises ImportError
    code, err = _run(capsys, "export", digits_checkpoint, "--target", "openvino", "--out", tmp_path)
    assert code == 2 and len(err) == 1 and "pip install 'mixer-edge[openvino]'" in err[0]


def test_interrupted_export_leaves_nothing_that_looks_complete(digits_checkpoint, tmp_path, monkeypatch):
    from mixer_edge.export import onnx as onnx_target

    def interrupted(*a, **k):
        raise KeyboardInterrupt

    monkeypatch.setattr(onnx_target.OnnxTarget, "validation_runner", interrupted)
    plan = ExportPlan(targets=("onnx",), precisions=("fp32",), out_dir=str(tmp_path), eval_data="digits")
    with pytest.raises(KeyboardInterrupt):
        run_plan(str(digits_checkpoint), plan)
    assert list(tmp_path.iterdir()) == []  # no artifact folder and no staging folder left


def test_broken_artifact_fails_validation_and_is_not_kept(capsys, digits_checkpoint, tmp_path, monkeypatch):
    from mixer_edge.export import onnx as onnx_target
    from mixer_edge.export.base import LoadedRunner

    real = onnx_target.OnnxTarget.validation_runner

    def broken(self, artifact):  # a deliberately wrong artifact: logits off by noise
        r = real(self, artifact)
        rng = np.random.default_rng(0)
        return LoadedRunner(lambda x: r(x) + rng.normal(0, 0.5, (len(x), 10)).astype(np.float32), r.config, r.what)

    monkeypatch.setattr(onnx_target.OnnxTarget, "validation_runner", broken)
    code, err = _run(capsys, "export", digits_checkpoint, "--eval-data", "digits", "--out", tmp_path / "a")
    assert code == 1 and "failed validation" in err[-1]
    assert not (tmp_path / "a" / "onnx-fp32").exists()
    code, _ = _run(capsys, "export", digits_checkpoint, "--eval-data", "digits", "--out", tmp_path / "b",
                   "--keep-invalid")
    manifest = json.loads((tmp_path / "b" / "onnx-fp32" / "manifest.json").read_text())
    assert code == 1 and manifest["validation"]["passed"] is False
    assert manifest["validation"]["max_abs_diff"] > 1e-4


def test_manifest_has_the_design_keys(capsys, digits_checkpoint, tmp_path):
    assert _run(capsys, "export", digits_checkpoint, "--eval-data", "digits", "--out", tmp_path)[0] == 0
    m = json.loads((tmp_path / "onnx-fp32" / "manifest.json").read_text())
    for key in ("schema", "target", "precision", "files", "input", "output", "preprocess", "classes", "model",
                "calibration", "validation", "versions"):
        assert key in m, key
    assert m["input"] == {"name": "input", "shape": ["batch", 1, 8, 8], "dtype": "float32"}
    assert m["validation"]["samples"] == 179 and m["validation"]["passed"] is True
    runtime = {f"mixer_edge_runtime/{f}" for f in runtime_files()}
    assert {f["path"] for f in m["files"]} == {"model.onnx", "edge_bench.py", "golden.npz", *runtime}
    assert "mixer_edge_runtime/backends/onnxruntime.py" in runtime and "mixer_edge_runtime/edge_bench.py" not in runtime
    assert m["versions"]["onnxruntime"] and m["versions"]["torch"]


def test_calibration_is_reproducible_and_int8_onnx_is_byte_identical(capsys, digits_checkpoint, tmp_path):
    for name in ("a", "b"):
        assert _run(capsys, "calib", "make", digits_checkpoint, "--data", "digits", "--size", "120",
                    "--out", tmp_path / f"{name}.npz")[0] == 0
    sha = [json.loads((tmp_path / f"{n}.json").read_text())["sha256"] for n in "ab"]
    assert sha[0] == sha[1]
    other = main(["calib", "make", str(digits_checkpoint), "--data", "digits", "--size", "120", "--seed", "1",
                  "--out", str(tmp_path / "c.npz")])
    assert other == 0 and json.loads((tmp_path / "c.json").read_text())["sha256"] != sha[0]
    for name in ("a", "b"):
        assert _run(capsys, "export", digits_checkpoint, "--int8", "--calib-data", tmp_path / f"{name}.npz",
                    "--eval-data", "digits", "--out", tmp_path / f"out-{name}")[0] == 0
    blobs = [(tmp_path / f"out-{n}" / "onnx-int8" / "model.onnx").read_bytes() for n in "ab"]
    assert blobs[0] == blobs[1]


def test_artifact_reproduces_recorded_accuracy_without_mixer_edge(mnist_checkpoint, tmp_path):
    """benchmarks/artifact_accuracy.py, with torch and mixer_edge unimportable, gets the exact
    top-1 recorded in each manifest from the raw MNIST files."""
    pytest.importorskip("openvino")
    folder, spec = mnist_checkpoint
    mnist = spec.split(":", 1)[1]
    plan = ExportPlan(targets=("onnx", "openvino"), precisions=("fp32", "int8"), out_dir=str(tmp_path / "a"),
                      calib_data=spec, calib_size=200, eval_data=spec)
    outcomes = run_plan(str(folder), plan)
    assert all(o.passed for o in outcomes), [o.problems for o in outcomes]
    env = block_imports(tmp_path, "torch", "mixer_edge")
    for o in outcomes:
        proc = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "artifact_accuracy.py"), str(o.dest),
                               "--mnist", mnist], env=env, capture_output=True, text=True, timeout=120,
                              cwd=tmp_path)
        assert proc.returncode == 0, proc.stdout + proc.stderr
        result = json.loads(proc.stdout)
        assert result["images"] == 1000 and result["top1"] == o.validation["top1"] > 0.5


def test_non_finite_logits_fail_validation():
    """NaN compares False with every tolerance: an all-NaN artifact must fail, not pass."""
    from mixer_edge.export.validate import compare, failures

    ref = np.random.default_rng(0).normal(size=(8, 10)).astype(np.float32)
    for bad in (np.full_like(ref, np.nan), np.where(np.arange(10) == 3, np.inf, ref).astype(np.float32)):
        f = compare(ref, bad)
        assert f["finite"] is False
        for precision in ("fp32", "fp16", "int8"):
            assert "the artifact's logits contain NaN or infinity" in failures(precision, f)
    assert failures("fp32", compare(ref, ref.copy())) == []
    assert any("no validation images" in p for p in failures("int8", compare(ref[:0], ref[:0])))


def test_export_summary_never_counts_skipped_as_validated(capsys, digits_checkpoint, tmp_path):
    """Core ML FP32 cannot be run off macOS: its check is skipped, and the summary says so apart."""
    import platform

    pytest.importorskip("coremltools")
    if platform.system() == "Darwin":
        pytest.skip("on macOS Core ML validates in its runtime")
    code = main(["export", str(digits_checkpoint), "--target", "onnx,coreml", "--eval-data", "digits",
                 "--out", str(tmp_path)])
    last = capsys.readouterr().out.strip().splitlines()[-1]
    assert code == 0
    assert last.startswith("1 artifact(s) validated against PyTorch FP32, 1 written with validation skipped "
                           "(runtime not available here: coreml-fp32)"), last


def _failing_fp32(monkeypatch):
    """Every fp32 artifact now fails validation: no logit difference is small enough."""
    from mixer_edge.export import validate

    monkeypatch.setitem(validate.TOLERANCES, "fp32", validate.Tolerance(max_abs_diff=-1.0))


def test_failed_reexport_leaves_nothing_that_looks_current(capsys, digits_checkpoint, tmp_path, monkeypatch):
    """The same model exported twice into one folder, the second time failing validation: the
    previous artifact is removed (not moved aside) and the error says so; nothing hidden is left."""
    dest = tmp_path / "onnx-fp32"
    assert _run(capsys, "export", digits_checkpoint, "--eval-data", "digits", "--out", tmp_path, "--force")[0] == 0
    assert json.loads((dest / "manifest.json").read_text())["validation"]["passed"] is True
    _failing_fp32(monkeypatch)
    code = main(["export", str(digits_checkpoint), "--eval-data", "digits", "--out", str(tmp_path), "--force"])
    out = capsys.readouterr().out
    assert code == 1 and not dest.exists() and list(tmp_path.iterdir()) == []
    assert f"(discarded; the previous artifact at {dest} was removed, so that nothing there looks current)" in out


def test_failed_reexport_with_keep_invalid_replaces_it_marked(capsys, digits_checkpoint, tmp_path, monkeypatch):
    dest = tmp_path / "onnx-fp32"
    assert _run(capsys, "export", digits_checkpoint, "--eval-data", "digits", "--out", tmp_path)[0] == 0
    _failing_fp32(monkeypatch)
    assert _run(capsys, "export", digits_checkpoint, "--eval-data", "digits", "--out", tmp_path,
                "--keep-invalid")[0] == 1
    manifest = json.loads((dest / "manifest.json").read_text())
    assert manifest["validation"]["passed"] is False and [p.name for p in tmp_path.iterdir()] == ["onnx-fp32"]


def test_reexport_refused_by_a_structural_check_removes_the_old_one(digits_checkpoint, tmp_path, monkeypatch):
    from mixer_edge import load_checkpoint
    from mixer_edge.errors import ValidationError
    from mixer_edge.export import onnx as onnx_target
    from mixer_edge.export.base import ExportSpec

    ck = load_checkpoint(digits_checkpoint)
    val = validation_data(ck, np.zeros((4, 1, 8, 8), np.float32), None, "zeros")
    assert export_one(ck, "onnx", ExportSpec(), None, tmp_path, validation=val).passed

    def refused(*a, **k):
        raise ValidationError("the program is not what was asked for")

    monkeypatch.setattr(onnx_target.OnnxTarget, "export", refused)
    o = export_one(ck, "onnx", ExportSpec(), None, tmp_path, validation=val)
    assert not o.passed and o.retired and not (tmp_path / "onnx-fp32").exists() and list(tmp_path.iterdir()) == []
    with pytest.raises(ValidationError, match="was removed, so that nothing there looks current"):
        raise_for([o])


def test_degenerate_figures_are_defined():
    """All-zero logits (an untrained zero head) on both sides agree exactly; SQNR is undefined (None),
    not -inf or a crash; one zero row against a non-zero row has cosine 0; one sample works."""
    from mixer_edge.export.validate import compare, db_text, failures

    zero = np.zeros((3, 5), np.float32)
    f = compare(zero, zero)
    assert f["cosine"] == 1.0 and f["sqnr_db"] is None and failures("int8", f) == []
    assert db_text(f["sqnr_db"]).startswith("n/a")
    ref = np.eye(1, 5, dtype=np.float32)                 # one sample
    f = compare(ref, np.zeros_like(ref))
    assert f["samples"] == 1 and f["cosine"] == 0.0 and f["sqnr_db"] == pytest.approx(0.0)
    assert "logit cosine 0.0000 < 0.99" in failures("int8", f)


def test_out_holding_other_files_is_refused_and_left_readable(capsys, digits_checkpoint, tmp_path):
    """Before: `export --out data/heldout` wrote an artifact folder into an image folder, which then
    broke `eval` on it. Now refused before any work; a folder of earlier exports is still fine."""
    from PIL import Image

    images = tmp_path / "heldout" / "7"
    images.mkdir(parents=True)
    Image.new("L", (8, 8), 128).save(images / "a.png")
    code, err = _run(capsys, "export", digits_checkpoint, "--target", "onnx", "--out", tmp_path / "heldout")
    assert code == 2 and "holds files that are not mixer-edge artifacts (7)" in err[0] and "--force" in err[0]
    assert sorted(p.name for p in (tmp_path / "heldout").iterdir()) == ["7"]
    out = tmp_path / "exports"
    assert _run(capsys, "export", digits_checkpoint, "--target", "onnx", "--out", out)[0] == 0
    assert _run(capsys, "export", digits_checkpoint, "--target", "openvino", "--out", out)[0] == 0   # earlier exports
