"""An artifact ready to answer "what is in this image?", with the manifest's preprocessing, after
its golden check on this device:

    import edge_bench                       # the artifact's launcher; or: from mixer_edge.runtime import edge_bench
    model = edge_bench.load("artifacts/onnx-int8")
    model.predict(["cat.png"], top_k=3)     # -> [[{"class": "cat", "index": 3, "score": 0.91}, ...]]
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from .artifact import batch_axis, read_manifest
from .backends import BACKENDS, Options, load_backend
from .batching import run_batched
from .errors import BadInput, DeviceCheckFailed
from .golden import device_check
from .images import image_files
from .preprocess import preprocess
from .streaming import ImageFiles, model_inputs

PREDICTIONS = "mixer-edge-predictions"


class Predictor:
    """An artifact loaded on this device's runtime; `backends` (target -> backend module) is the
    host's registry when mixer-edge runs it, this package's otherwise."""

    def __init__(self, folder, options: Options | None = None, backends: dict = BACKENDS):
        self.folder = Path(folder)
        self.manifest = read_manifest(self.folder)
        self.backend = load_backend(self.folder, self.manifest, options or Options(), backends)
        self.classes = self.manifest["classes"]
        # Before the first answer: does this device compute what was validated? (on a Mac, the
        # first Core ML prediction is this check)
        self.device_check = device_check(self.folder, self.manifest, self.backend.run, batch_axis(self.manifest))
        if self.device_check["status"] == "failed":
            raise DeviceCheckFailed(self.device_check["reason"])

    def logits(self, images) -> np.ndarray:
        """images: raw uint8 arrays (H, W[, C]) or a list of image file paths; many files are decoded
        and preprocessed a batch at a time (model_inputs), so a large folder is never held."""
        if len(images) and isinstance(images[0], (str, Path)):
            images = ImageFiles(image_files(images))
        x = model_inputs(images, lambda part: preprocess(part, self.manifest["preprocess"]))
        return run_batched(self.backend.run, x, 32, batch_axis(self.manifest))

    def predict(self, images, top_k: int = 5) -> list:
        return ranked(self.logits(images), self.classes, top_k)


def load(folder, **options) -> Predictor:
    """Load an artifact for prediction (options: threads, precision_hint, provider)."""
    return Predictor(folder, Options(**options))


def ranked(logits: np.ndarray, classes, k: int = 5) -> list:
    """Per image, the k best classes by softmax score: [[{"class", "index", "score"}, ...], ...]."""
    if k < 1:
        raise BadInput(f"--top-k must be at least 1, got {k}")
    if logits.shape[1] != len(classes):
        raise BadInput(f"the model gives {logits.shape[1]} scores but its manifest names {len(classes)} classes")
    z = logits.astype(np.float64) - logits.max(axis=1, keepdims=True)
    p = np.exp(z) / np.exp(z).sum(axis=1, keepdims=True)
    order = np.argsort(-p, axis=1, kind="stable")[:, :k]
    return [[{"class": str(classes[i]), "index": int(i), "score": round(float(row[i]), 6)} for i in idx]
            for row, idx in zip(p, order)]


def predictions_document(names, tops, source: str) -> dict:
    return {"kind": PREDICTIONS, "schema": 1, "model": source,
            "predictions": [{"image": str(n), "top": t} for n, t in zip(names, tops)]}


def format_predictions(doc: dict) -> str:
    return "\n".join(f"{p['image']}: " + ", ".join(f"{t['class']} {t['score']:.3f}" for t in p["top"])
                     for p in doc["predictions"])
