"""The manifest an export writes (docs/manifest.md): what the artifact is, its files, input and
output, preprocessing, classes, the images no evaluation of it may use, the model, the calibration,
the export recipe and the versions. Validation and the golden set are added once they ran."""
from __future__ import annotations

import numpy as np

from ..models.checkpoint import Checkpoint, versions
from ..models.mixer import count_params
from ..runtime.identity import pack_keys
from . import artifact as art


def manifest_for(ck: Checkpoint, target, spec, calib, exported, folder) -> dict:
    cfg = ck.config
    return {
        "target": target.name, "precision": spec.precision,
        "files": art.file_entries(folder, exported.files),
        "input": {"name": "input", "shape": ["batch", cfg.in_chans, *cfg.img_size], "dtype": "float32"},
        "output": {"name": "logits", "shape": ["batch", cfg.num_classes]},
        "preprocess": ck.preprocess.to_dict(),
        "classes": list(ck.classes), "classes_named": ck.classes_named,
        "images": reserved_images(ck, calib),
        "model": {"variant": cfg.variant, "params": count_params(ck.model), "config": cfg.to_dict(),
                  "checkpoint_sha256": ck.sha256, "data": ck.meta.get("data"), "split": ck.split.to_dict()},
        "calibration": None if calib is None else calib.manifest(),
        "export": {"spec": dict(vars(spec)), **{k: v for k, v in exported.details.items() if k != "versions"}},
        "versions": {**versions(), **exported.details.get("versions", {})},
    }


def reserved_keys(ck: Checkpoint, calib) -> np.ndarray:
    """Content keys no evaluation may use: the training images, the training data's calib split, and
    the calibration images."""
    calibrated = calib.keys if calib is not None and calib.keys is not None else np.zeros(0, np.uint64)
    return np.union1d(ck.reserved_keys, calibrated)


def reserved_images(ck: Checkpoint, calib) -> dict:
    """The images no evaluation of this artifact may use, by content key: those the model was
    trained on and those it was calibrated on. The device runtime holds them out (identity.select)."""
    trained = (ck.meta.get("images") or {})
    return {"reserved": pack_keys(reserved_keys(ck, calib)), "trained_n": trained.get("n_trained"),
            "training_data": trained.get("data"),
            "calibrated_n": None if calib is None or calib.keys is None else len(calib.keys),
            "note": None if trained else "the training images are unknown (weights trained elsewhere)"}
