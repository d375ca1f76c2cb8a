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
                   "predictions": [{"image": "a.png", "top": [{"class": "7", "index": 7, "score": 0.93}]}]}
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
