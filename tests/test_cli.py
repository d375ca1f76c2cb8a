"""The CLI's error boundary: each bad input gives one 'error:' line, exit code 2, no traceback."""
from __future__ import annotations

import argparse
import subprocess
import sys

import numpy as np
import pytest
from PIL import Image

from mixer_edge.cli import COMMANDS, build_parser, main


def _run(capsys, *argv):
    code = main(list(argv))
    return code, _errors(capsys.readouterr().err)


def _errors(err: str) -> list[str]:
    """stderr without the status line of the thread count (runtime/threads.py) a computing command starts with."""
    return [line for line in err.strip().splitlines() if not line.startswith("threads: ")]


def _image_folder(root, classes=("a", "b"), per_class=3, size=(28, 28)):
    rng = np.random.default_rng(0)
    for c in classes:
        (root / c).mkdir(parents=True)
        for i in range(per_class):
            Image.fromarray(rng.integers(0, 255, size, dtype=np.uint8)).save(root / c / f"{i}.png")
    return root


@pytest.fixture
def out(tmp_path):
    return str(tmp_path / "out")


def test_missing_data_folder(capsys, out, tmp_path):
    code, err = _run(capsys, "train", "--data", f"mnist:{tmp_path / 'nope'}", "--out", out)
    assert code == 2 and err == [f"error: data folder not found: {tmp_path / 'nope'} (from spec 'mnist:{tmp_path / 'nope'}')"]


def test_empty_class_folder(capsys, out, tmp_path):
    root = _image_folder(tmp_path / "imgs")
    (root / "c").mkdir()
    code, err = _run(capsys, "train", "--data", f"imagefolder:{root}", "--out", out)
    assert code == 2 and len(err) == 1 and "class folder" in err[0] and "has no images" in err[0]


def test_corrupt_image(capsys, out, tmp_path):
    root = _image_folder(tmp_path / "imgs")
    (root / "a" / "bad.png").write_bytes(b"\x89PNG\r\n\x1a\nthis is not a png")
    code, err = _run(capsys, "train", "--data", f"imagefolder:{root}", "--out", out)
    assert code == 2 and len(err) == 1 and "cannot read image" in err[0] and "bad.png" in err[0]


def test_truncated_checkpoint(capsys, digits_checkpoint, tmp_path):
    blob = (digits_checkpoint / "model.safetensors").read_bytes()
    bad = tmp_path / "cut.safetensors"
    bad.write_bytes(blob[: len(blob) // 2])
    code, err = _run(capsys, "eval", str(bad), "--data", "digits")
    assert code == 2 and len(err) == 1 and str(bad) in err[0]


def test_foreign_checkpoint(capsys, tmp_path):
    import torch
    from safetensors.torch import save_file
    foreign = tmp_path / "resnet.safetensors"
    save_file({"conv1.weight": torch.zeros(4, 3, 3, 3)}, str(foreign))
    code, err = _run(capsys, "eval", str(foreign), "--data", "digits")
    assert code == 2 and len(err) == 1 and "not a mixer-edge checkpoint" in err[0]


def test_unknown_variant(capsys, out):
    code, err = _run(capsys, "train", "--data", "digits", "--model", "Z/9", "--out", out)
    assert code == 2 and err[0].startswith("error: unknown model variant 'Z/9'; accepted: ") and "B/16" in err[0]


def test_image_size_not_divisible_by_patch(capsys, out):
    code, err = _run(capsys, "train", "--data", "digits", "--model", "T/4", "--img-size", "30", "--out", out)
    assert code == 2 and err == ["error: image size 30x30 is not divisible by the patch size 4 of variant "
                                 "'T/4'; use a multiple of 4"]


def test_num_classes_disagrees_with_data(capsys, out):
    code, err = _run(capsys, "train", "--data", "digits", "--num-classes", "5", "--out", out)
    assert code == 2 and len(err) == 1 and "--num-classes 5 disagrees" in err[0] and "10 classes" in err[0]


def test_eval_class_count_mismatch(capsys, digits_checkpoint, tmp_path):
    root = _image_folder(tmp_path / "imgs", size=(8, 8))
    code, err = _run(capsys, "eval", str(digits_checkpoint), "--data", f"imagefolder:{root}")
    assert code == 2 and err == [f"error: cannot compute top-1 on 'imagefolder:{root}': the data's classes [a, b] "
                                 f"are not the model's classes [0, 1, 2, 3, 4, 5, 6, 7, 8, 9]"]


def test_user_error_in_a_real_process_prints_no_traceback(tmp_path):
    proc = subprocess.run([sys.executable, "-m", "mixer_edge.cli", "train", "--data", "digits", "--model",
                           "Q/1", "--out", str(tmp_path)], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2
    assert "Traceback" not in proc.stderr and len(_errors(proc.stderr)) == 1


def test_eval_reports_accuracy_and_writes_json(capsys, digits_checkpoint, tmp_path):
    import json
    code = main(["eval", str(digits_checkpoint), "--data", "digits", "--json", str(tmp_path / "r.json")])
    assert code == 0
    result = json.loads((tmp_path / "r.json").read_text())
    # held-out by content: on its own training data, exactly the eval split (179 of 1,797 digits)
    assert result["images"]["selection"] == "held-out" and result["n"] == 179
    assert result["images"]["excluded"] == 1797 - 179 and result["labels"] == "by name"
    from mixer_edge import load_checkpoint
    assert result["top1"] == pytest.approx(load_checkpoint(digits_checkpoint).meta["metrics"]["eval_top1"])
    assert f"top-1 {result['top1']:.4f}" in capsys.readouterr().out


def test_every_option_of_every_command_has_help():
    parser = build_parser()
    sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    assert set(sub.choices) == {c.name for c in COMMANDS}
    for name, p in sub.choices.items():
        for action in p._actions:
            if not isinstance(action, argparse._HelpAction):
                assert action.help, f"`mixer-edge {name}` option {action.option_strings or action.dest} has no help"


def test_names_in_any_case_with_aliases_and_suggestions(capsys):
    """ONNX, INT8, trt and t/4 are the registry's onnx, int8, tensorrt and T/4; a near miss names
    the closest accepted name."""
    from mixer_edge.errors import UnknownName, resolve
    from mixer_edge.export.registry import ALIASES, TARGETS, expand
    from mixer_edge.models.variants import VARIANTS, variant_config

    assert expand(["ONNX", "trt", "OpenVINO"]) == ["onnx", "tensorrt", "openvino"]
    assert resolve("precision", "INT8", ("fp32", "fp16", "int8")) == "int8"
    assert variant_config("t/4", num_classes=10).variant == "T/4"
    with pytest.raises(UnknownName, match=r"unknown target 'onxx'; accepted: .*; did you mean 'onnx'\?"):
        resolve("target", "onxx", TARGETS, ALIASES)
    with pytest.raises(UnknownName, match=r"unknown model variant 'Q/7'; accepted: B/16, .*Ti/4$"):
        variant_config("Q/7")   # nothing close: no suggestion
    assert set(VARIANTS) >= {"T/4", "B/16"}


def test_version_and_help_start_without_torch():
    import subprocess
    import sys

    code = ("import sys; from mixer_edge.cli import build_parser; build_parser(); "
            "assert 'torch' not in sys.modules, 'torch was imported'")
    subprocess.run([sys.executable, "-c", code], check=True)


def test_third_party_noise_goes_to_the_log_unless_verbose(tmp_path, monkeypatch):
    import sys
    import warnings

    from mixer_edge import noise

    monkeypatch.setattr(noise, "LOG", tmp_path / "third-party.log")
    monkeypatch.setattr(noise, "VERBOSE", False)
    with noise.third_party():
        print("Converting PyTorch Frontend ==> MIL Ops: 100%", file=sys.stderr)
        print("Failed to load _MLModelProxy")
    assert "MIL Ops" in noise.LOG.read_text() and "_MLModelProxy" in noise.LOG.read_text()
    with warnings.catch_warnings(record=True) as seen:
        noise.configure(False)
        warnings.warn("from elsewhere", FutureWarning)          # this test module is not mixer_edge
    assert not seen
    import logging
    logging.disable(logging.NOTSET)                              # undo configure() for other tests


@pytest.mark.parametrize("argv,message", [
    (["train", "--data", "digits", "--lr", "-1", "--weight-decay", "-0.1", "--drop-path", "1.5", "--out", "{OUT}"],
     "--lr must be > 0, got -1.0; --weight-decay must be >= 0, got -0.1; --drop-path must be in [0, 1), got 1.5"),
    (["bench", "{CKPT}", "--data", "digits", "--json", "{DIR}"], "--json {DIR} is a folder; give a file path"),
    (["bench", "{CKPT}", "--data", "digits", "--json", "{FILE}/result.json"], "{FILE} is a file, not a folder"),
    (["report", "{FILE}", "--out", "{FILE}"], "--out {FILE}: {FILE} is a file; give a folder"),
    (["export", "{CKPT}", "--out", "{FILE}/below"], "{FILE} is a file; give a folder"),
    (["eval", "{CKPT}", "--data", "digits", "--json", "{DIR}"], "--json {DIR} is a folder; give a file path"),
])
def test_output_and_option_mistakes_are_refused_before_any_work(capsys, tmp_path, digits_checkpoint, argv, message):
    """Issue 10's tracebacks: each is now one `error:` line naming what arrived, exit 2, before the
    work starts (a benchmark does not run first and then lose its results)."""
    (tmp_path / "dir").mkdir()
    (tmp_path / "file").write_text("x")
    names = {"OUT": tmp_path / "o", "DIR": tmp_path / "dir", "CKPT": digits_checkpoint, "FILE": tmp_path / "file"}
    code = main([a.format(**names) for a in argv])
    err = [line for line in _errors(capsys.readouterr().err) if line.strip()]
    assert code == 2 and len(err) == 1 and err[0].startswith("error: "), err
    assert message.format(**names) in err[0], err


def test_eval_json_into_a_new_folder_is_written(capsys, tmp_path, digits_checkpoint):
    import json

    out = tmp_path / "new" / "deeper" / "eval.json"
    assert main(["eval", str(digits_checkpoint), "--data", "digits", "--json", str(out)]) == 0
    assert "top1" in json.dumps(json.loads(out.read_text()))
