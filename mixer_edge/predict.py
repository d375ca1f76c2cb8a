"""Inference for people and applications: the top classes of images, from an artifact (through
the device runtime's Predictor, the very code the artifact carries) or from a checkpoint (PyTorch,
with the checkpoint's own preprocessing). Both return the runtime's predictions document."""
from __future__ import annotations

from pathlib import Path

import numpy as np

from .errors import BadInput, DeviceCheckFailed
from .runtime import edge_bench as eb


def predict(model: str, images, top_k: int = 5) -> dict:
    """{"kind": "mixer-edge-predictions", "predictions": [{"image", "top": [...]}, ...]}."""
    if not Path(model).exists():
        raise BadInput(f"model not found: {model}; give an artifact folder (with {eb.MANIFEST}) or a checkpoint")
    files = _runtime(eb.image_files, images)
    if (Path(model) / eb.MANIFEST).is_file():
        predictor = _runtime(eb.load, model)
        tops = _runtime(predictor.predict, files, top_k)
    else:
        tops = _checkpoint_tops(model, files, top_k)
    return eb.predictions_document(files, tops, str(model))


def _checkpoint_tops(path: str, files, top_k: int) -> list:
    from .data.files import ImageFiles
    from .models.weights import load_pretrained
    from .train.evaluate import predict_logits

    ck = load_pretrained(path)
    x = _runtime(eb.model_inputs, ImageFiles(files), ck.preprocess)   # many files: made a batch at a time
    logits: np.ndarray = predict_logits(ck.model, x)
    return _runtime(eb.ranked, logits, ck.classes, top_k)


def _runtime(fn, *args):
    """The runtime's errors (BenchError, NotRunnable) as mixer-edge's one error type."""
    try:
        return fn(*args)
    except (eb.BenchError, eb.NotRunnable) as e:
        raise BadInput(str(e)) from None
    except eb.DeviceCheckFailed as e:
        raise DeviceCheckFailed(f"device check failed: {e}") from None
