"""runtime/predict.py: the top classes by softmax against a hand computation, the predictions
document and its text, and Predictor on a real artifact against plain ONNX Runtime (its golden check
first; another registry's backend when the host passes one)."""
from __future__ import annotations

import math
from types import SimpleNamespace

import numpy as np
import pytest

from mixer_edge.runtime.backends import BACKENDS, Options
from mixer_edge.runtime.errors import BadInput, DeviceCheckFailed, NotRunnable
from mixer_edge.runtime.predict import Predictor, format_predictions, load, predictions_document, ranked
from mixer_edge.runtime.preprocess import preprocess


def test_ranked_by_hand():
    logits = np.array([[1.0, 3.0, 2.0]])
    z = [math.exp(v) for v in (1.0, 3.0, 2.0)]
    top = ranked(logits, ["a", "b", "c"], k=2)[0]
    assert [t["class"] for t in top] == ["b", "c"] and [t["index"] for t in top] == [1, 2]
    assert top[0]["score"] == pytest.approx(z[1] / sum(z), abs=1e-6)
    assert ranked(np.array([[5.0, 5.0]]), ["x", "y"], k=5)[0][0]["class"] == "x"   # ties: the first, k capped
    with pytest.raises(BadInput, match="--top-k must be at least 1"):
        ranked(logits, ["a", "b", "c"], 0)
    with pytest.raises(BadInput, match="3 scores but its manifest names 2 classes"):
        ranked(logits, ["a", "b"])


def test_predictions_document_and_text():
    doc = predictions_document(["a.png"], [[{"class": "7", "index": 7, "score": 0.93}]], "art")
    assert doc == {"kind": "mixer-edge-predictions", "schema": 1, "model": "art",
                   "predictions": [{"image": "a.png", "top": [{"class": "7", "index": 7, "score": 0.93}]}],
                   "errors": []}
    assert format_predictions(doc) == "a.png: 7 0.930"


def test_predictor_on_a_real_artifact_is_plain_onnxruntime(digits_onnx_artifact):
    ort = pytest.importorskip("onnxruntime")
    from mixer_edge import load_data

    images = load_data("digits").images[:20]
    model = load(digits_onnx_artifact, threads=1)
    assert model.device_check["status"] == "passed" and model.backend.config["threads"] == 1
    sess = ort.InferenceSession(str(digits_onnx_artifact / "model.onnx"), providers=["CPUExecutionProvider"])
    want = sess.run(None, {"input": preprocess(images, model.manifest["preprocess"])})[0]
    np.testing.assert_allclose(model.logits(list(images)), want, rtol=1e-5, atol=1e-5)
    assert [t[0]["index"] for t in model.predict(images, top_k=1)] == want.argmax(1).tolist()


def test_predictor_takes_the_callers_backends_and_checks_the_device_first(digits_onnx_artifact):
    real = BACKENDS["onnx"]

    def off_by_one(folder, manifest, opt):
        b = real.load(folder, manifest, opt)
        return b._replace(run=lambda x: b.run(x) + 1.0)   # not what was validated

    with pytest.raises(DeviceCheckFailed, match="logit SQNR"):
        Predictor(digits_onnx_artifact, Options(), {"onnx": SimpleNamespace(load=off_by_one)})
    with pytest.raises(NotRunnable, match="no runner for target 'onnx'"):
        Predictor(digits_onnx_artifact, Options(), {})


# ---- per file (issue 20) ---------------------------------------------------------------------------------

def _digit_png(path, index=0):
    from PIL import Image

    from mixer_edge import load_data

    Image.fromarray(load_data("digits").images[index][..., 0]).save(path)
    return path


def test_predict_files_answers_each_file(digits_onnx_artifact, tmp_path):
    """A zero-byte .jpg, a missing file and a link loop each get their reason; the good files their
    predictions, in order; the model runs once on the good ones."""
    import os

    from mixer_edge.runtime.predict import predict_files

    good = [_digit_png(tmp_path / "a.png", 0), _digit_png(tmp_path / "c.png", 5)]
    (tmp_path / "b.jpg").write_bytes(b"")
    os.symlink("d.png", tmp_path / "d.png")
    model = load(digits_onnx_artifact)
    calls = []
    doc = predict_files([good[0], tmp_path / "b.jpg", tmp_path / "nope.png", good[1], tmp_path / "d.png"],
                        lambda files: calls.append(len(files)) or model.logits(files), model.classes, 3, "art")
    assert [p["image"] for p in doc["predictions"]] == [str(g) for g in good] and calls == [2]
    assert [e["image"] for e in doc["errors"]] == [str(tmp_path / n) for n in ("b.jpg", "nope.png", "d.png")]
    assert "cannot identify image file" in doc["errors"][0]["error"] and "not found" in doc["errors"][1]["error"]
    want = model.predict([good[0], good[1]], top_k=3)
    assert [p["top"] for p in doc["predictions"]] == want
    with pytest.raises(BadInput, match="--top-k must be at least 1"):
        predict_files([tmp_path / "b.jpg"], model.logits, model.classes, 0, "art")


def test_device_script_predicts_the_good_files_and_names_the_bad(digits_onnx_artifact, tmp_path, capsys):
    from mixer_edge.runtime.cli import main

    good = _digit_png(tmp_path / "good.png")
    (tmp_path / "bad.png").write_bytes(b"\x89PNG\r\n\x1a\nnot a png")
    code = main([str(digits_onnx_artifact), "--predict", str(good), str(tmp_path / "bad.png")])
    out, err = capsys.readouterr()
    assert code == 2 and out.splitlines()[-1].startswith(f"{good}: ")
    errors = [line for line in err.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and f"cannot read image {tmp_path / 'bad.png'}" in errors[0]
