"""Evaluation: logits from a model on preprocessed images, and a checkpoint's top-1 / top-5 on a
data set (top-k counted by the runtime's accuracy.topk_accuracy, as every accuracy figure is).
Raw images go in as the runtime's Batches: decoded (when streamed) and preprocessed one batch at a
time, so evaluating a large folder never holds it whole.
"""
from __future__ import annotations

import numpy as np
import torch

from ..errors import BadInput
from ..runtime.accuracy import topk_accuracy
from ..runtime.labels import model_labels
from ..runtime.streaming import Batches


def predict_logits(model: torch.nn.Module, x, batch_size: int = 256) -> np.ndarray:
    """x: (N, C, H, W) float32, or raw images as runtime/streaming.Batches -> logits (N, K) float32, in eval mode, on
    the model's device. Either way x is taken batch_size images at a time."""
    return predict_logits_of([model], x, batch_size)[0]


@torch.inference_mode()
def predict_logits_of(models: list, x, batch_size: int = 256) -> list[np.ndarray]:
    """predict_logits of several models (a model and its EMA), each batch of x made once for all."""
    for m in models:
        m.eval()
    outs: list[list] = [[] for _ in models]
    for i in range(0, len(x), batch_size):
        batch = torch.from_numpy(x[i:i + batch_size])                 # (b, C, H, W), decoded once
        for m, out in zip(models, outs):
            out.append(m(batch.to(next(m.parameters()).device)).float().cpu().numpy())
    return [np.concatenate(out) if out else np.zeros((0, m.config.num_classes), np.float32)
            for m, out in zip(models, outs)]


def evaluate(checkpoint, data, batch_size: int = 256) -> dict:
    """Top-1 / top-5 of a Checkpoint on an ImageSet, with its own preprocessing. The data's labels
    are matched to the model's classes by name (runtime/labels.label_map); refused when they cannot be."""
    if data.labels is None:
        raise BadInput(f"data {data.spec!r} has no labels; evaluation needs a labelled source")
    if not len(data):
        raise BadInput(f"no images to evaluate in {data.spec!r} (every one was a training image)")
    labels, how = model_labels(checkpoint.identity, data)
    if labels is None:
        raise BadInput(f"cannot compute top-1 on {data.spec!r}: {how}")
    logits = predict_logits(checkpoint.model, Batches(data.images, checkpoint.preprocess), batch_size)
    return {**topk_accuracy(logits, labels), "n": int(len(data)), "labels": how}
