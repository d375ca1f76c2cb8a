"""runtime/engine_cli.py, trt_build.py's command line (and `mixer-edge trt build`'s options): the
options, the golden check's report after a build, and the exit codes where this machine cannot
build (no tensorrt: 3) or the input is wrong (2). With a GPU: tests/test_export_tensorrt.py."""
from __future__ import annotations

import json
import shutil
import sys


from conftest import reseal
from mixer_edge.runtime.engine_cli import build_parser, main, report_check
from mixer_edge.runtime.errors import EXIT_BAD_INPUT, EXIT_NOT_RUN


def test_options_and_defaults():
    args = build_parser().parse_args(["art", "--max-batch", "64", "--data", "digits", "--json", "r.json"])
    assert (args.max_batch, args.min_batch, args.opt_batch, args.iters, args.images) == (64, None, None, 100, "held-out")
    assert args.no_build is False and args.batch_sizes == "1,8,32"


def test_report_check(capsys):
    assert report_check({"status": "failed", "reason": "SQNR 3 dB"}) is False
    assert capsys.readouterr().err == "error: device check failed: SQNR 3 dB\n"
    assert report_check({"status": "passed", "sqnr_db": 41.0, "n": 32, "threshold_sqnr_db": 20.0}) is True
    assert capsys.readouterr().out == ("device check passed: logit SQNR 41.0 dB against FP32 PyTorch on 32 golden "
                                       "images (threshold 20.0 dB)\n")


def test_exit_codes_here(digits_onnx_artifact, tmp_path, capsys, monkeypatch):
    assert main([str(tmp_path), "--no-build"]) == EXIT_BAD_INPUT
    assert "--no-build only makes sense with --data" in capsys.readouterr().err
    assert main([str(tmp_path)]) == EXIT_BAD_INPUT
    assert "is not a mixer-edge artifact" in capsys.readouterr().err
    folder = tmp_path / "tensorrt-fp32"
    shutil.copytree(digits_onnx_artifact, folder)
    m = json.loads((folder / "manifest.json").read_text())
    (folder / "manifest.json").write_text(json.dumps({**m, "target": "tensorrt"}))
    reseal(folder)   # the same ONNX file, so only binding.json knew the target
    monkeypatch.setitem(sys.modules, "tensorrt", None)   # as on a Jetson without JetPack's bindings
    assert main([str(folder)]) == EXIT_NOT_RUN
    err = capsys.readouterr().err
    assert err.startswith("error: cannot run here: tensorrt is not installed here") and err.count("\n") == 1
    assert json.loads((folder / "manifest.json").read_text()) == {**m, "target": "tensorrt"}   # untouched


def test_interrupt_says_the_manifest_was_kept(monkeypatch, capsys, tmp_path):
    from mixer_edge.runtime import engine_cli

    def interrupted(argv):
        raise KeyboardInterrupt
    monkeypatch.setattr(engine_cli, "run", interrupted)
    assert main([str(tmp_path)]) == 130
    assert capsys.readouterr().err == "error: interrupted; the manifest was not changed unless the build finished\n"


def test_a_read_only_artifact_folder_is_one_line_before_the_build(digits_onnx_artifact, tmp_path, capsys,
                                                                  monkeypatch):
    """A copy on a read-only mount: trt_build.py writes the engine there. Before: "model.engine is
    missing" after trying to build, or an OSError; now one line naming the folder, exit 2."""
    from mixer_edge.runtime import artifact

    folder = tmp_path / "tensorrt-fp32"
    shutil.copytree(digits_onnx_artifact, folder)
    monkeypatch.setattr(artifact.os, "access", lambda p, mode: False)
    assert main([str(folder)]) == EXIT_BAD_INPUT
    err = capsys.readouterr().err
    assert err.count("error: ") == 1 and f"{folder} is not writable (trt_build.py writes the engine" in err
