"""export(): checkpoint -> validated artifact directory, for one target and precision.

The flow of one export: check the request -> build files in a staging folder -> write the manifest
-> run the artifact against FP32 PyTorch on real images -> keep it (one rename) or throw it away.
"""
from __future__ import annotations

import shutil
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..errors import BadInput, CalibrationError, ValidationError, require
from ..models.checkpoint import Checkpoint, versions
from ..models.mixer import count_params
from . import artifact as art
from .base import PRECISIONS, Exported, ExportSpec, NotRunnableHere
from .registry import get_target
from .validate import compare, failures, tolerance_dict


@dataclass(frozen=True)
class ValidationData:
    x: np.ndarray                 # (N, C, H, W) float32, preprocessed
    labels: np.ndarray | None
    source: str
    reference: np.ndarray         # FP32 PyTorch logits on x, (N, K)


@dataclass(frozen=True)
class Outcome:
    artifact: art.Artifact | None  # None when a failing artifact was discarded
    dest: Path
    validation: dict
    problems: tuple[str, ...]

    @property
    def passed(self) -> bool:
        return not self.problems


def validation_data(checkpoint: Checkpoint, x: np.ndarray, labels, source: str) -> ValidationData:
    from ..train.evaluate import predict_logits

    return ValidationData(x=x, labels=labels, source=source, reference=predict_logits(checkpoint.model, x))


def check_request(target, spec: ExportSpec, calib) -> None:
    """Fail before any work: unknown precision, missing SDK, INT8 without calibration data."""
    caps = target.capabilities
    if spec.precision not in PRECISIONS:
        raise BadInput(f"unknown precision {spec.precision!r}; accepted: {', '.join(PRECISIONS)}")
    if spec.precision not in caps.precisions:
        raise BadInput(f"target {target.name!r} does not support {spec.precision}; it supports "
                       f"{', '.join(p for p in PRECISIONS if p in caps.precisions)}")
    for module in caps.requires:
        require(module, caps.extra)
    if spec.precision == "int8" and calib is None and not spec.weights_only:
        raise CalibrationError(f"--int8 needs calibration data (--calib-data SPEC or a saved .npz); "
                               f"target {target.name!r} quantizes activations from it")


def export_one(checkpoint: Checkpoint, target_name: str, spec: ExportSpec, calib, out_dir, *,
               validation: ValidationData, force: bool = False, keep_invalid: bool = False) -> Outcome:
    target = get_target(target_name)
    check_request(target, spec, calib)
    dest = Path(out_dir) / f"{target_name}-{spec.precision}"
    art.check_destination(dest, force)
    staging = art.staging_dir(dest)
    try:
        exported = _with_runtime_script(target.export(checkpoint, spec, calib, staging), staging)
        manifest = _manifest(checkpoint, target, spec, calib, exported, staging)
        art.write_manifest(staging, manifest)
        figures, problems = _validate(target, art.Artifact(staging, {"schema": art.SCHEMA, **manifest}),
                                      spec.precision, validation)
        manifest["validation"] = figures
        art.write_manifest(staging, manifest)
        if problems and not keep_invalid:
            shutil.rmtree(staging, ignore_errors=True)
            return Outcome(None, dest, figures, tuple(problems))
        art.commit(staging, dest)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return Outcome(art.load_artifact(dest), dest, figures, tuple(problems))


RUNTIME_SCRIPT = Path(__file__).resolve().parents[1] / "runtime" / "edge_bench.py"


def _with_runtime_script(exported: Exported, folder: Path) -> Exported:
    """Every artifact carries edge_bench.py, so a device with only the runtime and numpy can
    check, run and benchmark it from the manifest alone."""
    if not (folder / RUNTIME_SCRIPT.name).exists():
        shutil.copyfile(RUNTIME_SCRIPT, folder / RUNTIME_SCRIPT.name)
    files = exported.files if RUNTIME_SCRIPT.name in exported.files else (*exported.files, RUNTIME_SCRIPT.name)
    return Exported(files=files, details=exported.details)


def _validate(target, artifact, precision: str, val: ValidationData) -> tuple[dict, list[str]]:
    base = {"reference": "pytorch-fp32", "data": val.source, "tolerance": tolerance_dict(precision)}
    try:
        runner = target.validation_runner(artifact)
    except NotRunnableHere as why:
        return {**base, "skipped": str(why), "passed": None}, []
    figures = compare(val.reference, runner(val.x), val.labels)
    problems = failures(precision, figures)
    return {**base, "runner": runner.what, "runtime": runner.config, **figures, "passed": not problems}, problems


def _manifest(ck: Checkpoint, target, spec: ExportSpec, calib, exported, folder: Path) -> dict:
    cfg = ck.config
    return {
        "target": target.name, "precision": spec.precision,
        "files": art.file_entries(folder, exported.files),
        "input": {"name": "input", "shape": ["batch", cfg.in_chans, *cfg.img_size], "dtype": "float32"},
        "output": {"name": "logits", "shape": ["batch", cfg.num_classes]},
        "preprocess": ck.preprocess.to_dict(),
        "classes": list(ck.classes),
        "model": {"variant": cfg.variant, "params": count_params(ck.model), "config": cfg.to_dict(),
                  "checkpoint_sha256": ck.sha256, "data": ck.meta.get("data"), "split": ck.split.to_dict()},
        "calibration": None if calib is None else calib.manifest(),
        "export": {"spec": dict(vars(spec)), **{k: v for k, v in exported.details.items() if k != "versions"}},
        "versions": {**versions(), **exported.details.get("versions", {})},
    }


def raise_for(outcomes: list[Outcome]) -> None:
    """One error listing every artifact that failed validation."""
    bad = [o for o in outcomes if not o.passed]
    if bad:
        raise ValidationError("; ".join(f"{o.dest.name}: " + ", ".join(o.problems) for o in bad))
