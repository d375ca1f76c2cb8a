"""--max-drop: mixed precision within an accuracy budget. The most sensitive layers are kept in
float, one more at a time in order of measured sensitivity, until top-1 on the validation images is
within the budget of the reference and the artifact passes validation; every step is recorded, with
the latency the float layers cost where the runtime runs here."""
from __future__ import annotations

import shutil
from dataclasses import replace
from pathlib import Path

import numpy as np

from ..errors import BadInput, NotRunnable
from ..runtime.timing import paired_median_ms
from . import artifact as art
from .attempt import attempt
from .int8 import sensitivity
from .validate import decide_drop


def within_budget(checkpoint, prepared, target, spec, calib, val, dest, recipe, first):
    """(staging, figures, problems) of the first step whose artifact meets the budget and passes
    validation, never the best SQNR; passing includes the quantized-op count: a step whose artifact
    quantizes fewer ops than its recipe says fails, so quantizing less can never buy the budget.
    When the budget cannot be met, the artifact says so, with what it reached, and fails.
    first: the all-INT8 attempt (staging, figures, problems)."""
    if val.labels is None:
        raise BadInput(f"--max-drop {spec.max_drop} needs labelled validation images to measure top-1; "
                       f"{val.source} has no labels")
    budget = round(spec.max_drop / 100, 9)
    staging, figures, problems = first
    steps = [_step(spec.float_layers, figures)]
    ranking = sensitivity(prepared.model, calib.x, target.simulation, spec.calib_method)
    order = [r["layer"] for r in ranking if r["layer"] not in spec.float_layers]
    kept = list(spec.float_layers)
    all_int8 = staging
    while (_drop(figures) > budget or problems) and order:
        kept.append(order.pop(0))
        if staging is not all_int8:
            shutil.rmtree(staging, ignore_errors=True)
        staging, figures, problems = attempt(checkpoint, prepared, target, replace(spec, float_layers=tuple(kept)),
                                             calib, val, dest, recipe)
        steps.append(_step(kept, figures))
    # The verdict on the evidence (validate.decide_drop), not the point estimate: the search above
    # follows the point estimate; whether the budget is met is decided on the interval of the drop.
    decision = decide_drop(figures.get("only_reference_right", 0), figures.get("only_artifact_right", 0),
                           figures["samples"], budget)
    met = _drop(figures) <= budget and not problems   # on these images; `decision` says what they show
    record = {"max_drop_points": spec.max_drop, "measured_on": f"{val.source}, {len(val.x)} images",
              "met": met, "decision": decision, "float_layers": kept, "steps": steps,
              "sensitivity": {"what": "logit SQNR with only this layer quantized (calibration images)",
                              "layers": ranking},
              "latency": _latency_cost(target, all_int8, staging, kept, ranking, dest)}
    if staging is not all_int8:
        shutil.rmtree(all_int8, ignore_errors=True)
    lo, hi = (100 * b for b in decision["interval"])
    said = (f"top-1 drop {100 * _drop(figures):.2f} points ({decision['level']:.0%} interval [{lo:.2f}, {hi:.2f}]) "
            f"with {len(kept)} of {len(ranking)} layers in float")
    open_ = list(figures.get("undecided") or [])
    if decision["decision"] == "failed":
        problems = [*problems, f"--max-drop {spec.max_drop} not met: {said}"]
    elif decision["decision"] == "undecided":
        open_.append(f"undecided: too few images: --max-drop {spec.max_drop}: {said}")
        if spec.strict:
            problems = [*problems, open_[-1]]
    status = "failed" if problems else "undecided" if open_ else "passed"
    figures = {**figures, "undecided": open_, "status": status}
    _amend(staging, {"mixed_precision": record}, figures, problems)
    return staging, {**figures, "passed": not problems}, problems


def _drop(figures) -> float:
    """Top-1 lost against the reference; rounded so a drop of exactly the budget meets it."""
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
    except NotRunnable as why:
        return {"skipped": f"not measured here: {str(why).replace(str(mixed), str(dest))}"}
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
