"""One attempt at an artifact: build its files in a fresh staging folder (the target's export, the
device runtime beside them), write the manifest, check the artifact against its reference on the
validation images, count its quantized matrix multiplies, write the golden set; the staging folder
and the verdict go back to the caller (build.py keeps or discards it)."""
from __future__ import annotations

import shutil
from dataclasses import replace
from pathlib import Path

from ..runtime.artifact import ARTIFACT_SCHEMA
from . import artifact as art
from . import golden
from .base import Exported
from .int8 import quantized_ops_check
from .manifest import manifest_for
from .reference import check_artifact, reference


def attempt(checkpoint, prepared, target, spec, calib, validation, dest, recipe) -> tuple[Path, dict, list]:
    """Build one artifact in a fresh staging folder and validate it: (staging, figures, problems).
    `prepared` is what the target exports (smoothed for INT8); validation compares with the
    original checkpoint's reference logits. A failure removes the staging folder."""
    staging = art.staging_dir(dest)
    try:
        exported = _with_runtime(target.export(prepared, spec, calib, staging), staging, target)
        manifest = manifest_for(checkpoint, target, spec, calib, exported, staging)
        manifest["export"].update(recipe)   # smoothing, token-mixing rule
        art.write_manifest(staging, manifest)
        figures, problems, logits = check_artifact(target, art.Artifact(staging, {"schema": ARTIFACT_SCHEMA, **manifest}),
                                                   spec, validation, exported.stand_in)
        figures, problems = _count_quantized(target, staging, prepared.model, spec, figures, problems)
        manifest["validation"] = figures
        manifest["golden"] = golden.write(staging, validation, logits, spec.precision, figures.get("runner"),
                                          reference=reference(validation, spec))
        manifest["files"] = art.file_entries(staging, (*exported.files, manifest["golden"]["file"]))
        art.write_manifest(staging, manifest)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return staging, figures, problems


def _with_runtime(exported: Exported, folder: Path, target) -> Exported:
    """Every artifact carries the device runtime and its launchers (artifact.ship_runtime)."""
    shipped = art.ship_runtime(folder, getattr(target, "launchers", (art.EDGE_BENCH,)))
    return replace(exported, files=(*exported.files, *(f for f in shipped if f not in exported.files)))


def _count_quantized(target, folder: Path, model, spec, figures: dict, problems: list) -> tuple[dict, list]:
    """INT8: the count of quantized matrix multiplies joins validation (int8.quantized_ops_check);
    a count that differs from the recipe's fails it, whether or not the runtime ran here."""
    check = quantized_ops_check(target, folder, model, spec)
    if check is None:
        return figures, problems
    if check["status"] == "failed":
        problems = [*problems, check["reason"]]
    return {**figures, "quantized_ops": check, "passed": False if problems else figures["passed"]}, problems
