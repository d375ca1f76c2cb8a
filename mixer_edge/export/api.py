"""export(): checkpoint -> validated artifact directory, for one target and precision.

The flow of one export: check the request -> build files in a staging folder -> write the manifest
-> run the artifact against FP32 PyTorch on real images -> keep it (one rename) or throw it away.
"""
from __future__ import annotations

import shutil
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np

from ..errors import BadInput, CalibrationError, ValidationError, require
from ..models.checkpoint import Checkpoint, versions
from ..models.mixer import count_params
from ..runtime import edge_bench as eb
from . import artifact as art
from . import golden, int8
from .base import PRECISIONS, Exported, ExportSpec, NotRunnableHere
from .registry import get_target
from .validate import compare, failures, tolerance_dict


@dataclass(frozen=True)
class ValidationData:
    x: object                     # (N, C, H, W) float32, preprocessed: an array, or made by slices
                                  # (edge_bench.Batches) when too large to hold; read in batches
    labels: np.ndarray | None
    source: str
    reference: np.ndarray         # FP32 PyTorch logits on x, (N, K)
    raw: object = None            # the same images before preprocessing (uint8 (N, H, W, C)), when known
    about: dict | None = None     # the image set: spec, content fingerprint, n, what was held out, labels
    quantized: np.ndarray | None = None   # a QAT checkpoint's logits with its learned fake quantization, (N, K)


@dataclass(frozen=True)
class Outcome:
    artifact: art.Artifact | None  # None when a failing artifact was discarded
    dest: Path
    validation: dict
    problems: tuple[str, ...]
    retired: bool = False          # a failed re-export removed the artifact that was at dest before

    @property
    def passed(self) -> bool:
        return not self.problems

    @property
    def fate(self) -> str:
        """What became of a failed artifact and of the one it was to replace, for messages."""
        if self.passed or self.artifact is not None:
            return ""
        return " (discarded" + (f"; {retired_note(self.dest)})" if self.retired else ")")


def retired_note(dest: Path) -> str:
    return f"the previous artifact at {dest} was removed, so that nothing there looks current"


def validation_data(checkpoint: Checkpoint, x: np.ndarray, labels, source: str, raw=None,
                    about: dict | None = None) -> ValidationData:
    from ..train.evaluate import predict_logits

    learned = int8.learned_ranges(checkpoint)
    quantized = None
    if learned is not None:
        from ..train import qat

        quantized = predict_logits(qat.simulation(checkpoint.model, learned), x)
    return ValidationData(x=x, labels=labels, source=source, reference=predict_logits(checkpoint.model, x),
                          raw=raw, about=about, quantized=quantized)


def reference(val: ValidationData, spec: ExportSpec) -> tuple[np.ndarray, str]:
    """What an artifact is compared with: PyTorch FP32, or for a W8A8 export of a quantization-aware
    checkpoint, PyTorch with the fake quantization it learned (what training simulated and export
    reproduces; its float weights alone are not the function it was trained to compute)."""
    if val.quantized is not None and int8.applies(spec):
        return val.quantized, "pytorch-qat-int8"
    return val.reference, "pytorch-fp32"


def check_request(target, spec: ExportSpec, calib, learned: bool = False) -> None:
    """Fail before any work: unknown precision, missing SDK, INT8 without calibration data (unless
    the checkpoint learned its ranges: `learned`, quantization-aware training)."""
    caps = target.capabilities
    if spec.precision not in PRECISIONS:
        raise BadInput(f"unknown precision {spec.precision!r}; accepted: {', '.join(PRECISIONS)}")
    if spec.precision not in caps.precisions:
        raise BadInput(f"target {target.name!r} does not support {spec.precision}; it supports "
                       f"{', '.join(p for p in PRECISIONS if p in caps.precisions)}")
    for module in caps.requires:
        require(module, caps.extra)
    if spec.smooth is not None and not 0.0 <= spec.smooth <= 1.0:
        raise BadInput(f"--smooth must be between 0 and 1 (SmoothQuant's alpha), got {spec.smooth}")
    if spec.max_drop is not None and spec.max_drop < 0:
        raise BadInput(f"--max-drop must be >= 0 (top-1 percentage points, e.g. 0.1), got {spec.max_drop}")
    if spec.precision == "int8" and calib is None and not spec.weights_only and not learned:
        raise CalibrationError(f"--int8 needs calibration data (--calib-data SPEC or a saved .npz); "
                               f"target {target.name!r} quantizes activations from it")


def export_one(checkpoint: Checkpoint, target_name: str, spec: ExportSpec, calib, out_dir, *,
               validation: ValidationData, force: bool = False, keep_invalid: bool = False) -> Outcome:
    target = get_target(target_name)
    check_request(target, spec, calib, learned=int8.learned_ranges(checkpoint) is not None)
    dest = Path(out_dir) / f"{target_name}-{spec.precision}"
    art.check_destination(dest, force)
    int8.check_request(checkpoint, spec, calib)
    prepared, spec, recipe = int8.prepare(checkpoint, spec, calib)
    staging = None   # _attempt removes its own folder when it fails; this one is ours once it returns
    try:
        staging, figures, problems = _attempt(checkpoint, prepared, target, spec, calib, validation, dest, recipe)
        if spec.max_drop is not None and int8.applies(spec):
            staging, figures, problems = _within_budget(checkpoint, prepared, target, spec, calib, validation,
                                                        dest, recipe, (staging, figures, problems))
        if problems and not keep_invalid:
            _discard(staging)
            return Outcome(None, dest, figures, tuple(problems), retired=art.retire(dest))
        art.commit(staging, dest)   # a failed artifact kept (--keep-invalid) says so: validation.passed false
    except ValidationError as e:    # a structural check refused the new artifact: the old one is not current;
        _discard(staging)           # this artifact fails, the rest of the plan goes on
        return Outcome(None, dest, {"passed": False, "refused": str(e)}, (str(e),), retired=art.retire(dest))
    except BaseException:           # interrupted or broken: nothing was decided, what was at dest stays
        _discard(staging)
        raise
    return Outcome(art.load_artifact(dest), dest, figures, tuple(problems))


def _discard(staging) -> None:
    if staging is not None:
        shutil.rmtree(staging, ignore_errors=True)


def _attempt(checkpoint, prepared, target, spec, calib, validation, dest, recipe):
    """Build one artifact in a fresh staging folder and validate it: (staging, figures, problems).
    `prepared` is what the target exports (smoothed for INT8); validation compares with the
    original checkpoint's FP32 logits."""
    staging = art.staging_dir(dest)
    try:
        exported = _with_runtime_script(target.export(prepared, spec, calib, staging), staging)
        manifest = _manifest(checkpoint, target, spec, calib, exported, staging)
        manifest["export"].update(recipe)   # smoothing, token-mixing rule
        art.write_manifest(staging, manifest)
        figures, problems, logits = _validate(target, art.Artifact(staging, {"schema": art.SCHEMA, **manifest}),
                                              spec, validation, exported.stand_in)
        figures, problems = _count_quantized(target, staging, checkpoint.model, spec, figures, problems)
        manifest["validation"] = figures
        manifest["golden"] = golden.write(staging, validation, logits, spec.precision, figures.get("runner"),
                                          reference=reference(validation, spec))
        manifest["files"] = art.file_entries(staging, (*exported.files, manifest["golden"]["file"]))
        art.write_manifest(staging, manifest)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return staging, figures, problems


def _count_quantized(target, folder: Path, model, spec, figures: dict, problems: list) -> tuple[dict, list]:
    """INT8: the count of quantized matrix multiplies joins validation (int8.quantized_ops_check);
    a count that differs from the recipe's fails it, whether or not the runtime ran here."""
    check = int8.quantized_ops_check(target.name, folder, model, spec)
    if check is None:
        return figures, problems
    if check["status"] == "failed":
        problems = [*problems, check["reason"]]
    return {**figures, "quantized_ops": check, "passed": False if problems else figures["passed"]}, problems


def _within_budget(checkpoint, prepared, target, spec, calib, val, dest, recipe, first):
    """--max-drop: keep the most sensitive layers in float, one more at a time in order of measured
    sensitivity, until top-1 on the validation images is within the budget of FP32 PyTorch and the
    artifact passes validation. Every step is recorded; when the budget cannot be met, the artifact
    says so, with what it reached, and fails. The first step that passes wins, never the best SQNR,
    and passing includes the quantized-op count: a step whose artifact quantizes fewer ops than its
    recipe says fails, so quantizing less can never buy the budget."""
    if val.labels is None:
        raise BadInput(f"--max-drop {spec.max_drop} needs labelled validation images to measure top-1; "
                       f"{val.source} has no labels")
    budget = round(spec.max_drop / 100, 9)
    staging, figures, problems = first
    steps = [_step(spec.float_layers, figures)]
    ranking = int8.sensitivity(prepared.model, calib.x, target.name, spec.calib_method)
    order = [r["layer"] for r in ranking if r["layer"] not in spec.float_layers]
    kept = list(spec.float_layers)
    all_int8 = staging
    while (_drop(figures) > budget or problems) and order:
        kept.append(order.pop(0))
        if staging is not all_int8:
            shutil.rmtree(staging, ignore_errors=True)
        staging, figures, problems = _attempt(checkpoint, prepared, target, replace(spec, float_layers=tuple(kept)),
                                              calib, val, dest, recipe)
        steps.append(_step(kept, figures))
    met = _drop(figures) <= budget and not problems
    record = {"max_drop_points": spec.max_drop, "measured_on": f"{val.source}, {len(val.x)} images",
              "met": met, "float_layers": kept, "steps": steps,
              "sensitivity": {"what": "logit SQNR with only this layer quantized (calibration images)",
                              "layers": ranking},
              "latency": _latency_cost(target, all_int8, staging, kept, ranking, dest)}
    if staging is not all_int8:
        shutil.rmtree(all_int8, ignore_errors=True)
    if _drop(figures) > budget:
        problems = [*problems, f"--max-drop {spec.max_drop} not met: top-1 drop {100 * _drop(figures):.2f} points "
                               f"with {len(kept)} of {len(ranking)} layers in float"]
    _amend(staging, {"mixed_precision": record}, figures, problems)
    return staging, {**figures, "passed": not problems}, problems


def _drop(figures) -> float:
    """Top-1 lost against FP32 PyTorch; rounded so a drop of exactly the budget meets it."""
    return round(figures["reference_top1"] - figures["top1"], 9)


def _step(kept, figures) -> dict:
    return {"float_layers": len(kept), "top1": round(figures["top1"], 4),
            "drop_points": round(100 * _drop(figures), 2), "sqnr_db": figures["sqnr_db"] and round(figures["sqnr_db"], 2),
            "quantized_ops": (figures.get("quantized_ops") or {}).get("counted"),
            "passed": bool(figures.get("passed"))}


def _latency_cost(target, all_int8: Path, mixed: Path, kept, ranking, dest: Path) -> dict:
    """Batch-1 latency of the all-INT8 and the mixed artifact, measured here when the runtime runs
    here; the difference is shared among the kept layers by their MACs (an attribution, stated)."""
    if all_int8 == mixed:
        return {"skipped": "no layer kept in float"}
    try:
        runners = [target.load_runner(art.load_artifact(p)) for p in (all_int8, mixed)]
    except NotRunnableHere as why:
        return {"skipped": f"not measured here: {str(why).replace(str(mixed), str(dest))}"}
    from ..bench.timing import paired_median_ms

    shape = art.load_artifact(mixed, verify=False).manifest["input"]["shape"][1:]
    base, now = paired_median_ms(runners, np.zeros((1, *shape), np.float32))
    macs = {r["layer"]: r["macs"] or 0 for r in ranking}
    total = sum(macs[k] for k in kept) or 1
    return {"batch": 1, "all_int8_ms": round(base, 4), "mixed_ms": round(now, 4),
            "cost_ms": round(now - base, 4), "cost_ratio": round(now / base, 3),
            "per_layer_ms": {k: round((now - base) * macs[k] / total, 4) for k in kept},
            "per_layer_note": "the measured difference shared by MACs, not timed layer by layer"}


def _amend(staging: Path, export_extra: dict, figures: dict, problems) -> None:
    manifest = art.load_artifact(staging, verify=False).manifest
    manifest["export"].update(export_extra)
    manifest["validation"] = {**figures, "passed": not problems}
    manifest.pop("schema", None)
    art.write_manifest(staging, manifest)


RUNTIME_SCRIPT = Path(__file__).resolve().parents[1] / "runtime" / "edge_bench.py"


def _with_runtime_script(exported: Exported, folder: Path) -> Exported:
    """Every artifact carries edge_bench.py, so a device with only the runtime and numpy can
    check, run and benchmark it from the manifest alone."""
    if not (folder / RUNTIME_SCRIPT.name).exists():
        shutil.copyfile(RUNTIME_SCRIPT, folder / RUNTIME_SCRIPT.name)
    files = exported.files if RUNTIME_SCRIPT.name in exported.files else (*exported.files, RUNTIME_SCRIPT.name)
    return replace(exported, files=files)


def _validate(target, artifact, spec: ExportSpec, val: ValidationData, stand_in=None) -> tuple[dict, list[str]]:
    precision = spec.precision
    expected, name = reference(val, spec)
    base = {"reference": name, "data": val.source, "images": val.about, "tolerance": tolerance_dict(precision)}
    try:
        runner = stand_in or target.validation_runner(artifact)
    except NotRunnableHere as why:
        return {**base, "skipped": str(why), "passed": None, "checked_by": None}, [], None
    # What checked it, beside the verdict: a stand-in (Core ML W8A8's quantized PyTorch model off
    # macOS, ONNX Runtime for an unbuilt TensorRT engine) vouches for the model, not its runtime.
    checked_by = "stand-in" if stand_in is not None or runner.config.get("stands_in_for") else "own runtime"
    logits = eb.predict(runner, val.x, batch=256)   # a batch at a time: val.x may be made by slices
    figures = compare(expected, logits, val.labels)
    problems = failures(precision, figures)
    return ({**base, "runner": runner.what, "runtime": runner.config, "checked_by": checked_by, **figures,
             "passed": not problems}, problems, logits)


def _manifest(ck: Checkpoint, target, spec: ExportSpec, calib, exported, folder: Path) -> dict:
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


def reserved_images(ck: Checkpoint, calib) -> dict:
    """The images no evaluation of this artifact may use, by content key: those the model was
    trained on and those it was calibrated on. The device runtime holds them out (select)."""
    from ..runtime.edge_bench import pack_keys
    from . import reserved_keys

    trained = (ck.meta.get("images") or {})
    return {"reserved": pack_keys(reserved_keys(ck, calib)), "trained_n": trained.get("n_trained"),
            "training_data": trained.get("data"),
            "calibrated_n": None if calib is None or calib.keys is None else len(calib.keys),
            "note": None if trained else "the training images are unknown (weights trained elsewhere)"}


def raise_for(outcomes: list[Outcome]) -> None:
    """One error listing every artifact that failed validation."""
    bad = [o for o in outcomes if not o.passed]
    if bad:
        raise ValidationError("; ".join(f"{o.dest.name}: " + ", ".join(o.problems) + o.fate for o in bad))
