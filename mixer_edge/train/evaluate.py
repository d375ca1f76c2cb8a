"""Evaluation: logits from a model on preprocessed images, and top-k accuracy from logits.

Both are reused by export validation and the benchmark, so every accuracy figure in the project
is computed the same way. Raw images go in as the runtime's Batches: decoded (when streamed) and preprocessed
one batch at a time, so evaluating a large folder never holds it whole.
"""
from __future__ import annotations

import numpy as np
import torch

from ..errors import BadInput


def predict_logits(model: torch.nn.Module, x, batch_size: int = 256) -> np.ndarray:
    """x: (N, C, H, W) float32, or raw images as edge_bench.Batches -> logits (N, K) float32, in eval mode, on
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


def topk_accuracy(logits: np.ndarray, labels: np.ndarray, ks=(1, 5)) -> dict[str, float]:
    """Fraction of rows whose label is among the k largest logits, for each k (k capped at K)."""
    if len(logits) != len(labels):
        raise BadInput(f"{len(logits)} predictions for {len(labels)} labels")
    order = np.argsort(-logits, axis=1, kind="stable")
    hits = order == np.asarray(labels)[:, None]
    return {f"top{k}": float(hits[:, :min(k, logits.shape[1])].any(axis=1).mean()) if len(labels) else 0.0
            for k in ks}


def evaluate(checkpoint, data, batch_size: int = 256) -> dict:
    """Top-1 / top-5 of a Checkpoint on an ImageSet, with its own preprocessing. The data's labels
    are matched to the model's classes by name (edge_bench.label_map); refused when they cannot be."""
    from ..runtime.edge_bench import model_labels

    if data.labels is None:
        raise BadInput(f"data {data.spec!r} has no labels; evaluation needs a labelled source")
    if not len(data):
        raise BadInput(f"no images to evaluate in {data.spec!r} (every one was a training image)")
    labels, how = model_labels(checkpoint.identity, data)
    if labels is None:
        raise BadInput(f"cannot compute top-1 on {data.spec!r}: {how}")
    from ..runtime.edge_bench import Batches

    logits = predict_logits(checkpoint.model, Batches(data.images, checkpoint.preprocess), batch_size)
    return {**topk_accuracy(logits, labels), "n": int(len(data)), "labels": how}
