"""A backend run over many images: logits for all of a model input (held, or streaming.Batches), in
batches, a fixed-batch model given exactly its batch."""
from __future__ import annotations

import numpy as np


def tile(x, n: int) -> np.ndarray:
    """n images: the first n, repeated when there are fewer. x: an array or Batches (sliced only)."""
    head = np.asarray(x[0:min(n, len(x))])
    return np.ascontiguousarray(head[np.arange(n) % len(head)])


def run_batched(run, x, batch: int, fixed_batch: int | None = None) -> np.ndarray:
    """Logits (N, K) float32 for all of x; a fixed-batch model gets its batch, the last one padded."""
    b = fixed_batch or batch
    out = []
    for i in range(0, len(x), b):
        chunk = x[i:i + b]
        if fixed_batch and len(chunk) < b:
            out.append(np.asarray(run(tile(np.concatenate([chunk, x[:b]]), b)))[:len(chunk)])
        else:
            out.append(np.asarray(run(chunk)))
    return np.concatenate(out).astype(np.float32)
