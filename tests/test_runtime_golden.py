"""runtime/golden.py: SQNR by hand, the threshold rule, and the device check on a hand-made artifact
(a golden.npz of raw images and reference logits, listed and hashed in its manifest): passed for a
runner computing the reference, failed for one that does not, skipped without a golden set.
Whole-flow golden checks of real exports: tests/test_golden.py."""
from __future__ import annotations

import hashlib
import json

import numpy as np
import pytest

from mixer_edge.runtime.artifact import read_manifest
from mixer_edge.runtime.errors import BadInput
from mixer_edge.runtime.golden import GOLDEN, device_check, golden_threshold, sqnr_db
from mixer_edge.runtime.preprocess import preprocess

PRE = {"size": [2, 2], "channels": 1, "mean": [0.5], "std": [0.5]}
W = np.random.default_rng(0).normal(size=(4, 3)).astype(np.float32)


def model(x):                     # (N, 1, 2, 2) -> (N, 3): a linear "classifier"
    return x.reshape(len(x), -1) @ W


def test_sqnr_by_hand():
    ref = np.array([[3.0, 4.0]])                # signal power 25
    assert sqnr_db(ref, ref + [[0.5, 0.0]]) == pytest.approx(10 * np.log10(25 / 0.25))
    assert sqnr_db(ref, ref) == pytest.approx(10 * np.log10(25 / 1e-30))
    assert sqnr_db(ref, np.array([[np.nan, 0.0]])) == float("-inf")


@pytest.mark.parametrize("precision, built, want", [("fp32", None, 60.0), ("fp32", 140.0, 60.0),
                                                    ("int8", 30.0, 20.0), ("int8", 24.0, 18.0), ("fp16", 38.5, 32.5)])
def test_threshold_is_the_floor_or_export_less_the_margin(precision, built, want):
    assert golden_threshold(precision, built) == want


def artifact(folder, raw, reference, threshold=60.0):   # fp32, and "artifact" logits exact: the floor
    folder.mkdir()
    np.savez(folder / GOLDEN, raw=raw, reference=reference, artifact=reference)
    data = (folder / GOLDEN).read_bytes()
    manifest = {"schema": 1, "target": "onnx", "precision": "fp32", "preprocess": PRE, "classes": ["a", "b", "c"],
                "files": [{"path": GOLDEN, "sha256": hashlib.sha256(data).hexdigest()}],
                "golden": {"file": GOLDEN, "threshold_sqnr_db": threshold}}
    (folder / "manifest.json").write_text(json.dumps(manifest))
    return read_manifest(folder)


def test_device_check_passes_fails_and_skips(tmp_path):
    raw = np.random.default_rng(1).integers(0, 256, (5, 2, 2, 1), dtype=np.uint8)
    reference = model(preprocess(raw, PRE))
    manifest = artifact(tmp_path / "a", raw, reference)
    ok = device_check(tmp_path / "a", manifest, model)
    assert ok["status"] == "passed" and ok["n"] == 5 and ok["input"] == "raw images" and ok["top1_agreement"] == 1.0
    assert ok["sqnr_db"] > 100 and ok["threshold_sqnr_db"] == 60.0 and ok["sqnr_db_vs_export"] > 100
    bad = device_check(tmp_path / "a", manifest, lambda x: model(x) + 0.5)
    assert bad["status"] == "failed" and bad["sqnr_db"] < 60 and "does not compute what was validated" in bad["reason"]
    fixed = device_check(tmp_path / "a", manifest, lambda x: model(x) if len(x) == 4 else 1 / 0, fixed_batch=4)
    assert fixed["status"] == "passed"    # 5 images in two fixed batches of 4
    assert device_check(tmp_path / "a", {**manifest, "golden": None}, model)["status"] == "skipped"


def test_the_golden_file_must_be_listed(tmp_path):
    raw = np.zeros((2, 2, 2, 1), np.uint8)
    manifest = artifact(tmp_path / "a", raw, model(preprocess(raw, PRE)))
    manifest["golden"]["file"] = "other.npz"
    with pytest.raises(BadInput, match="'other.npz' is not among the files"):
        device_check(tmp_path / "a", manifest, model)
