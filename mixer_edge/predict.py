"""Inference for people and applications: the top classes of images, from an artifact (through
the device runtime's Predictor, the very code the artifact carries) or from a checkpoint (PyTorch,
with the checkpoint's own preprocessing). Both return the runtime's predictions document, file by
file: a file that cannot be read gets its reason, the others their predictions."""
from __future__ import annotations

from pathlib import Path

import numpy as np

from .errors import BadInput
from .export.registry import backends
from .models.checkpoint import WEIGHTS_NAME
from .models.weights import load_pretrained
from .runtime.artifact import MANIFEST
from .runtime.backends import Options
from .runtime.images import shown
from .runtime.predict import Predictor, predict_files
from .runtime.streaming import model_inputs
from .train.evaluate import predict_logits


def predict(model: str, images, top_k: int = 5) -> dict:
    """{"kind": "mixer-edge-predictions", "predictions": [{"image", "top": [...]}, ...], "errors": [...]}."""
    check_model(model)
    if (Path(model) / MANIFEST).is_file():
        p = Predictor(model, Options(), backends())
        return predict_files(images, p.logits, p.classes, top_k, str(model), p.manifest["preprocess"]["size"])
    ck = load_pretrained(model)

    def logits(files) -> np.ndarray:
        return predict_logits(ck.model, model_inputs(files, ck.preprocess))   # many files: a batch at a time
    return predict_files(images, logits, ck.classes, top_k, str(model), ck.preprocess.size)


def check_model(model: str) -> None:
    """The model argument is an artifact folder, a checkpoint folder or a weights file. A folder that
    is neither is most likely images given first: say so, not that it lacks a checkpoint."""
    p = Path(model)
    if not p.exists():
        raise BadInput(f"model not found: {shown(model)}; give an artifact folder (with {MANIFEST}) or a checkpoint")
    if p.is_dir() and not (p / MANIFEST).is_file() and not (p / WEIGHTS_NAME).is_file():
        raise BadInput(f"{shown(model)} is neither an artifact folder (no {MANIFEST}) nor a checkpoint (no "
                       f"{WEIGHTS_NAME}); the model comes first: mixer-edge predict MODEL IMAGE_OR_FOLDER..., "
                       f"images (files or folders of them) after it")
