"""`mixer-edge predict` and the runtime's Predictor: the host and the artifact's own script give
the same top-5 for the same images, a checkpoint and its FP32 artifacts the same top-1, and bad
input gets one error line."""
from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest
from PIL import Image

from mixer_edge.cli import main
from mixer_edge.export.base import ExportSpec
from mixer_edge import predict as host_predict
from mixer_edge.runtime import predict as runtime_predict
from mixer_edge.runtime import streaming

from conftest import block_imports  # noqa: E402
from mixer_edge.export.build import export_one
from mixer_edge.runtime.predict import load
from mixer_edge.runtime.streaming import Batches, model_inputs

N_IMAGES = 12


@pytest.fixture(scope="module")
def images(tmp_path_factory):
    """Digits eval images as PNG files, the way a user hands them over."""
    from mixer_edge import load_data
    from mixer_edge.data.dataset import take_split

    part = take_split(load_data("digits"), "eval")
    folder = tmp_path_factory.mktemp("photos")
    for i in range(N_IMAGES):
        Image.fromarray(np.asarray(part.images[i])[..., 0]).save(folder / f"digit-{i:02d}.png")
    return folder


@pytest.fixture(scope="module")
def exported(ck, calib, val, tmp_path_factory):
    pytest.importorskip("onnxruntime")
    pytest.importorskip("openvino")
    out = {}
    for t, p in (("onnx", "int8"), ("onnx", "fp32"), ("openvino", "fp32")):
        o = export_one(ck, t, ExportSpec(p), calib if p == "int8" else None, tmp_path_factory.mktemp(f"p-{t}{p}"),
                           validation=val)
        out[(t, p)] = o.artifact.path
    return out


def host(capsys, *args):
    code = main(["predict", *map(str, args)])
    out, err = capsys.readouterr()
    return code, out, err


@pytest.mark.parametrize("key", [("onnx", "int8"), ("openvino", "fp32")])
def test_host_and_device_script_agree_on_top5(exported, images, key, tmp_path, capsys):
    folder = exported[key]
    code, _, _ = host(capsys, folder, images, "--json", tmp_path / "host.json")
    assert code == 0
    done = subprocess.run([sys.executable, str(folder / "edge_bench.py"), str(folder), "--predict", str(images),
                           "--json", str(tmp_path / "device.json")], capture_output=True, text=True,
                          env=block_imports(tmp_path, "torch", "mixer_edge"))
    assert done.returncode == 0, done.stderr
    a, b = (json.loads((tmp_path / f"{n}.json").read_text())["predictions"] for n in ("host", "device"))
    assert len(a) == len(b) == N_IMAGES
    for p, q in zip(a, b):
        assert p["image"] == q["image"]
        assert [t["class"] for t in p["top"]] == [t["class"] for t in q["top"]]
        np.testing.assert_allclose([t["score"] for t in p["top"]], [t["score"] for t in q["top"]], atol=1e-6)


def test_checkpoint_and_its_fp32_artifacts_give_the_same_top1(exported, images, digits_checkpoint, tmp_path, capsys):
    tops = {}
    for name, model in (("ckpt", digits_checkpoint), ("onnx", exported[("onnx", "fp32")]),
                        ("openvino", exported[("openvino", "fp32")])):
        assert host(capsys, model, images, "--top-k", "1", "--json", tmp_path / f"{name}.json")[0] == 0
        tops[name] = [p["top"][0]["class"] for p in json.loads((tmp_path / f"{name}.json").read_text())["predictions"]]
    assert tops["ckpt"] == tops["onnx"] == tops["openvino"]


def test_many_images_are_predicted_a_batch_at_a_time(exported, images, digits_checkpoint, tmp_path, capsys,
                                                     monkeypatch):
    """Above the streaming threshold (forced to 0 here) an artifact's and a checkpoint's inputs are
    made a batch at a time from the files (runtime/streaming.Batches), never held, and the predictions are
    the held run's exactly: the same classes and scores."""
    models = {"ckpt": digits_checkpoint, "onnx": exported[("onnx", "fp32")]}

    def run(tag):
        for name, model in models.items():
            assert host(capsys, model, images, "--json", tmp_path / f"{name}-{tag}.json")[0] == 0
        return {name: json.loads((tmp_path / f"{name}-{tag}.json").read_text())["predictions"] for name in models}

    made = []
    real = model_inputs
    for module in (host_predict, runtime_predict):   # a checkpoint's inputs, then an artifact's
        monkeypatch.setattr(module, "model_inputs", lambda images, prepare: made.append(real(images, prepare)) or made[-1])
    held = run("held")
    assert [type(x) for x in made] == [np.ndarray, np.ndarray]
    monkeypatch.setattr(streaming, "STREAM_ABOVE_MB", 0)
    assert run("made") == held and len(held["onnx"]) == N_IMAGES
    assert [type(x) for x in made[2:]] == [Batches, Batches]


def test_python_api_for_applications(exported, images, ck, val):
    model = load(exported[("onnx", "fp32")])
    raw = [np.asarray(Image.open(f)) for f in sorted(images.iterdir())]      # (H, W) uint8 arrays
    tops = model.predict(raw, top_k=3)
    assert len(tops) == N_IMAGES and all(len(t) == 3 for t in tops)
    for t in tops:
        scores = [c["score"] for c in t]
        assert scores == sorted(scores, reverse=True) and 0 < sum(scores) <= 1 + 1e-6
        assert all(c["class"] == ck.classes[c["index"]] for c in t)
    assert [t[0]["index"] for t in tops] == list(val.reference[:N_IMAGES].argmax(1))   # as FP32 PyTorch


@pytest.mark.parametrize("args,message", [
    (["MODEL", "missing.png"], "image not found: missing.png"),
    (["MODEL", "EMPTY"], "has no images"),
    (["MODEL", "IMAGES", "--top-k", "0"], "--top-k must be at least 1, got 0"),
    (["nowhere", "IMAGES"], "model not found: nowhere"),
])
def test_bad_input_one_error_line(exported, images, tmp_path, capsys, args, message):
    (tmp_path / "empty").mkdir()
    subst = {"MODEL": exported[("onnx", "fp32")], "EMPTY": tmp_path / "empty", "IMAGES": images}
    code, _, err = host(capsys, *[subst.get(a, a) for a in args])
    # the status lines of the thread count and the signature aside, stderr is the one error line
    lines = [line for line in err.splitlines() if line.strip() and not line.startswith(("threads: ", "signature: "))]
    assert code == 2 and len(lines) == 1 and lines[0].startswith("error: ") and message in lines[0], err


# ---- issue 20: photos as a user hands them over ------------------------------------------------------

def answers(out: str) -> list:
    """The prediction lines of stdout (one per image, each starting with its path), other notes aside."""
    return [line for line in out.splitlines() if line.startswith("/")]


def _turned(src, dest, orientation=6):
    """A camera's copy of an upright picture: stored turned, tagged with how to turn it back."""
    exif = Image.Exif()
    exif[0x0112] = orientation
    turn = {6: Image.Transpose.ROTATE_90, 8: Image.Transpose.ROTATE_270}[orientation]
    Image.open(src).transpose(turn).save(dest, exif=exif)
    return dest


@pytest.mark.parametrize("which", ["artifact", "checkpoint"])
def test_exif_rotated_photo_is_predicted_as_its_upright_copy(digits_onnx_artifact, digits_checkpoint, images,
                                                             tmp_path, capsys, which):
    """A seven photographed sideways (EXIF orientation 6 or 8) gets the prediction of its upright
    copy, and the very same model input."""
    from mixer_edge.runtime.images import read_image
    from mixer_edge.runtime.preprocess import preprocess

    model = digits_onnx_artifact if which == "artifact" else digits_checkpoint
    upright = sorted(images.iterdir())[:4]
    turned = [_turned(p, tmp_path / f"turned-{i}.png", (6, 8)[i % 2]) for i, p in enumerate(upright)]
    spec = json.loads((digits_onnx_artifact / "manifest.json").read_text())["preprocess"]
    for a, b in zip(upright, turned):
        assert np.array_equal(preprocess([read_image(a)], spec), preprocess([read_image(b)], spec))
    for name, files in (("up", upright), ("turned", turned)):
        assert host(capsys, model, *files, "--json", tmp_path / f"{name}.json")[0] == 0
    up, tu = (json.loads((tmp_path / f"{n}.json").read_text())["predictions"] for n in ("up", "turned"))
    assert [p["top"] for p in up] == [p["top"] for p in tu]


@pytest.mark.parametrize("which", ["artifact", "checkpoint"])
def test_good_and_bad_files_each_get_their_answer(digits_onnx_artifact, digits_checkpoint, images, tmp_path,
                                                  capsys, which):
    """`predict good.png empty.jpg`: the good file's prediction, one error line for the other, exit 2;
    with --skip-bad a warning list and exit 0."""
    model = digits_onnx_artifact if which == "artifact" else digits_checkpoint
    good = sorted(images.iterdir())[0]
    (tmp_path / "empty.jpg").write_bytes(b"")
    code, out, err = host(capsys, model, good, tmp_path / "empty.jpg", "--json", tmp_path / "p.json")
    assert code == 2 and [a.split(": ")[0] for a in answers(out)] == [str(good)]
    errors = [line for line in err.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and f"cannot read image {tmp_path / 'empty.jpg'}" in errors[0]
    doc = json.loads((tmp_path / "p.json").read_text())
    assert len(doc["predictions"]) == 1 and doc["errors"][0]["image"] == str(tmp_path / "empty.jpg")
    code, out, err = host(capsys, model, good, tmp_path / "empty.jpg", "--skip-bad")
    assert code == 0 and [a.split(": ")[0] for a in answers(out)] == [str(good)] and "error:" not in err
    assert "warning: skipped: cannot read image" in err and "--skip-bad left out 1 of 2 images" in err


def test_a_link_loop_in_a_folder_is_one_file_that_cannot_be_read(digits_onnx_artifact, images, tmp_path, capsys):
    """As `eval` lists it (runtime/images.images_below): the loop gets its error line, the rest are predicted."""
    import os
    import shutil

    folder = tmp_path / "photos"
    shutil.copytree(images, folder)
    os.symlink("loop.png", folder / "loop.png")
    code, out, err = host(capsys, digits_onnx_artifact, folder)
    errors = [line for line in err.splitlines() if line.startswith("error:")]
    assert code == 2 and len(answers(out)) == N_IMAGES
    assert len(errors) == 1 and "loop.png" in errors[0] and "symbolic links" in errors[0]


def test_a_folder_that_is_no_model_is_said_to_be_neither(images, capsys):
    """`predict photos/ x.png`: images given where the model goes, not 'a folder without model.safetensors'."""
    code, _, err = host(capsys, images, sorted(images.iterdir())[0])
    assert code == 2 and err.count("error:") == 1
    assert "is neither an artifact folder (no manifest.json) nor a checkpoint (no model.safetensors)" in err
    assert "IMAGE_OR_FOLDER" in err


def test_json_names_files_that_are_not_utf8_without_lone_surrogates(digits_onnx_artifact, images, tmp_path, capsys):
    """A Latin-1 file name: shown with its byte as \\xe9 on stdout and in the JSON, which any strict
    UTF-8 JSON reader takes."""
    import os
    import shutil

    name = os.fsdecode(b"caf\xe9.png")
    shutil.copy(sorted(images.iterdir())[0], tmp_path / name)
    code, out, _ = host(capsys, digits_onnx_artifact, tmp_path / name, "--json", tmp_path / "p.json")
    assert code == 0 and answers(out)[0].startswith(f"{tmp_path}/caf\\xe9.png: ")
    raw = (tmp_path / "p.json").read_bytes()
    doc = json.loads(raw.decode("utf-8", errors="strict"))
    assert doc["predictions"][0]["image"] == f"{tmp_path}/caf\\xe9.png"
    json.dumps(doc, ensure_ascii=False).encode("utf-8")   # no lone surrogate anywhere
