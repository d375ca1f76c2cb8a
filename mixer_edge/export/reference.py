"""What an artifact is checked against before it is kept: the validation images with the reference
logits (FP32 PyTorch; for a W8A8 export of a quantization-aware checkpoint, the fake quantization it
learned), and the check of one artifact on them (validate.py's figures and tolerances)."""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..calibration.policy import learned_grid, learned_model, learned_ranges
from ..errors import NotRunnable
from ..runtime.batching import run_batched
from ..train import qat
from ..train.evaluate import predict_logits
from .base import ExportSpec
from .int8 import applies
from .validate import agreement_decision, compare, failures, tolerance_dict, undecided


@dataclass(frozen=True)
class ValidationData:
    x: object                     # (N, C, H, W) float32, preprocessed: an array, or made by slices
                                  # (runtime/streaming.Batches) when too large to hold; read in batches
    labels: np.ndarray | None
    source: str
    reference: np.ndarray         # FP32 PyTorch logits on x, (N, K)
    raw: object = None            # the same images before preprocessing (uint8 (N, H, W, C)), when known
    about: dict | None = None     # the image set: spec, content fingerprint, n, what was held out, labels
    quantized: np.ndarray | None = None   # a QAT checkpoint's logits with its learned fake quantization, (N, K)


def validation_data(checkpoint, x, labels, source: str, raw=None, about: dict | None = None) -> ValidationData:
    learned = learned_ranges(checkpoint)
    quantized = None if learned is None else predict_logits(
        qat.simulation(learned_model(checkpoint), learned, learned_grid(checkpoint)), x)
    return ValidationData(x=x, labels=labels, source=source, reference=predict_logits(checkpoint.model, x),
                          raw=raw, about=about, quantized=quantized)


def reference(val: ValidationData, spec: ExportSpec) -> tuple[np.ndarray, str]:
    """What an artifact is compared with: PyTorch FP32, or for a W8A8 export of a quantization-aware
    checkpoint, PyTorch with the fake quantization it learned (what training simulated and export
    reproduces; its float weights alone are not the function it was trained to compute)."""
    if val.quantized is not None and applies(spec):
        return val.quantized, "pytorch-qat-int8"
    return val.reference, "pytorch-fp32"


def check_artifact(target, artifact, spec: ExportSpec, val: ValidationData, stand_in=None) -> tuple:
    """(figures, problems, logits) of the artifact on the validation images against its reference;
    figures say "skipped" with the reason (and logits are None) where nothing here can run it."""
    expected, name = reference(val, spec)
    base = {"reference": name, "data": val.source, "images": val.about, "tolerance": tolerance_dict(spec.precision)}
    try:
        runner = stand_in or target.validation_runner(artifact)
    except NotRunnable as why:
        return {**base, "skipped": str(why), "passed": None, "checked_by": None}, [], None
    # What checked it, beside the verdict: a stand-in (Core ML W8A8's quantized PyTorch model off
    # macOS, ONNX Runtime for an unbuilt TensorRT engine) vouches for the model, not its runtime.
    checked_by = "stand-in" if stand_in is not None or runner.config.get("stands_in_for") else "own runtime"
    logits = run_batched(runner, val.x, batch=256)   # a batch at a time: val.x may be made by slices
    figures = compare(expected, logits, val.labels)
    problems, open_ = failures(spec.precision, figures), undecided(spec.precision, figures)
    if spec.strict:   # --strict: what the images cannot decide fails
        problems = [*problems, *open_]
    status = "failed" if problems else "undecided" if open_ else "passed"
    return ({**base, "runner": runner.what, "runtime": runner.config, "checked_by": checked_by, **figures,
             "agreement_decision": agreement_decision(spec.precision, figures), "undecided": open_,
             "strict": spec.strict, "status": status, "passed": not problems}, problems, logits)
