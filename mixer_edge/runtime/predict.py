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
from .images import UnreadableImage, image_files, read_image, shown, small_images, warn
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
        if not isinstance(images, ImageFiles) and len(images) and isinstance(images[0], (str, Path)):
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


def predict_files(paths, logits_of, classes, top_k: int, source: str, size=None) -> dict:
    """The predictions document of image files and folders, file by file: each readable file its top
    classes, each that is not (missing, empty, cut short, not an image, a link loop, a decompression
    bomb) its reason under "errors", in the order given. logits_of(ImageFiles) runs the model once on
    the readable files (a batch at a time: model_inputs). size: the model's input (H, W), to warn
    about images much smaller than it. Every file is decoded once here to find out, and again for the
    model: predicting is per file, so a folder is never held for it."""
    if top_k < 1:
        raise BadInput(f"--top-k must be at least 1, got {top_k}")
    entries = []   # (path, None) or (path, error message), in the order given
    for p in paths:
        bad = []
        entries += [(str(f), None) for f in image_files([p], bad)] + bad
    errors, kept, sizes = [], [], []
    for path, problem in entries:
        try:
            if problem is None:
                sizes.append(read_image(path).shape[:2])
                kept.append(path)
                continue
        except UnreadableImage as e:
            problem = str(e)
        errors.append({"image": shown(path), "error": problem})
    note = small_images(sizes, size, kept) if size is not None and kept else None
    if note:
        warn(note)
    tops = ranked(logits_of(ImageFiles(kept)), classes, top_k) if kept else []
    return predictions_document(kept, tops, source, errors)


def predictions_document(names, tops, source: str, errors=()) -> dict:
    """File names as shown(): a name that is not UTF-8 keeps its bytes visible (\\xNN), so the JSON
    holds no lone surrogates."""
    return {"kind": PREDICTIONS, "schema": 1, "model": shown(source),
            "predictions": [{"image": shown(n), "top": t} for n, t in zip(names, tops)], "errors": list(errors)}


def format_predictions(doc: dict) -> str:
    return "\n".join(f"{p['image']}: " + ", ".join(f"{t['class']} {t['score']:.3f}" for t in p["top"])
                     for p in doc["predictions"])


def format_errors(doc: dict, skipped: bool = False) -> list:
    """The lines that say which files got no prediction: one `error:` line each, or, when the user
    asked to skip them (--skip-bad), `warning:` lines and a count."""
    errors = doc["errors"]
    if not skipped:
        return [f"error: {e['error']}" for e in errors]
    lines = [f"warning: skipped: {e['error']}" for e in errors]
    return lines + ([f"warning: --skip-bad left out {len(errors)} of {len(errors) + len(doc['predictions'])} "
                     f"images (listed above)"] if errors else [])
