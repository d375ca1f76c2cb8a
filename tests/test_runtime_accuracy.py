"""runtime/accuracy.py against hand counts: top-k (k capped at the class count), and agreement
with a reference's logits (top-1 agreement, mean per-image cosine, max |diff|)."""
from __future__ import annotations

import numpy as np
import pytest

from mixer_edge.runtime.accuracy import accuracy, agreement, topk_accuracy
from mixer_edge.runtime.errors import BadInput

LOGITS = np.array([[0.1, 0.9, 0.0], [0.8, 0.1, 0.1], [0.2, 0.3, 0.5], [0.4, 0.35, 0.25]], np.float32)


def test_topk_by_hand():
    labels = np.array([1, 2, 2, 1])        # right, 3rd choice, right, 2nd choice
    assert topk_accuracy(LOGITS, labels, ks=(1, 2, 5)) == {"top1": 0.5, "top2": 0.75, "top5": 1.0}
    assert accuracy(LOGITS, labels) == {"top1": 0.5, "top5": 1.0, "n": 4} and accuracy(LOGITS, None) is None
    assert topk_accuracy(LOGITS[:0], labels[:0]) == {"top1": 0.0, "top5": 0.0}
    with pytest.raises(BadInput, match="4 predictions for 3 labels"):
        topk_accuracy(LOGITS, labels[:3])


def test_agreement_by_hand():
    other = LOGITS.copy()
    other[3] = [0.0, 1.0, 0.0]             # one image's arg-max moves
    a = agreement(LOGITS, other, "ref")
    r, o = LOGITS[3].astype(np.float64), other[3].astype(np.float64)
    cos3 = r @ o / (np.linalg.norm(r) * np.linalg.norm(o))
    assert a["top1_agreement"] == 0.75 and a["reference"] == "ref"
    assert a["cosine"] == pytest.approx((3 + cos3) / 4, abs=1e-12) and a["max_abs_diff"] == pytest.approx(0.65)
    with pytest.raises(BadInput, match=r"reference ref gives logits \(4, 3\), the artifact \(4, 2\)"):
        agreement(LOGITS, LOGITS[:, :2], "ref")
