"""Inference for people and applications: the top classes of images, from an artifact (through
the device runtime's Predictor, the very code the artifact carries) or from a checkpoint (PyTorch,
with the checkpoint's own preprocessing). Both return the runtime's predictions document."""
from __future__ import annotations

from pathlib import Path

import numpy as np

from .errors import BadInput
from .export.registry import backends
from .models.weights import load_pretrained
from .runtime.artifact import MANIFEST
from .runtime.backends import Options
from .runtime.images import image_files
from .runtime.predict import Predictor, predictions_document, ranked
from .runtime.streaming import ImageFiles, model_inputs
from .train.evaluate import predict_logits


def predict(model: str, images, top_k: int = 5) -> dict:
    """{"kind": "mixer-edge-predictions", "predictions": [{"image", "top": [...]}, ...]}."""
    if not Path(model).exists():
        raise BadInput(f"model not found: {model}; give an artifact folder (with {MANIFEST}) or a checkpoint")
    files = image_files(images)
    if (Path(model) / MANIFEST).is_file():
        tops = Predictor(model, Options(), backends()).predict(files, top_k)
    else:
        tops = _checkpoint_tops(model, files, top_k)
    return predictions_document(files, tops, str(model))


def _checkpoint_tops(path: str, files, top_k: int) -> list:
    ck = load_pretrained(path)
    x = model_inputs(ImageFiles(files), ck.preprocess)   # many files: made a batch at a time
    logits: np.ndarray = predict_logits(ck.model, x)
    return ranked(logits, ck.classes, top_k)
