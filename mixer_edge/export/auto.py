"""`mixer-edge export --target auto`: the artifact this machine runs fastest within the accuracy
budget, chosen by measuring, not by rule.

Why measure: which runtime and precision win depends on the CPU (AMX, VNNI or AVX2 only), the
model size and the runtime versions; on an AMX machine OpenVINO's INT8 may win, on an AVX2-only one
ONNX Runtime's, and where BF16 runs in AMX tiles INT8 may not pay at all. A rule would be wrong
somewhere; a measurement on the machine is not.

    candidates   every target whose runtime runs here (Target.status) x the precisions asked (by
                 default: int8 with calibration images, fp32, and fp16 where the CPU computes bf16 in
                 hardware, which an FP16 OpenVINO artifact runs in there: default_precisions)
    exported     each as `mixer-edge export` exports it, validated against PyTorch (the same gate)
    eligible     validation passed, and top-1 within the budget of the reference (--max-drop, else
                 ACCURACY_BUDGET points)
    timed        batch 1, on a real held-out image, the candidates' calls interleaved round by round
                 (timing.paired_median_ms) with the threads the export runs with
    kept         the fastest as OUT/<target>-<precision>, its manifest's "selection" holding every
                 candidate's figures, the machine's CPU and ISA flags; the others are discarded
"""
from __future__ import annotations

import shutil
import tempfile
from dataclasses import replace
from pathlib import Path

from ..errors import ValidationError
from ..runtime.accuracy import ACCURACY_BUDGET
from ..runtime.artifact import MANIFEST, read_json
from ..runtime.signing import sign
from ..runtime.system import X86_BF16, device_info, isa_flags
from ..runtime.threads import default_threads
from ..runtime.timing import paired_median_ms
from . import artifact as art
from .build import Outcome, export_one
from .registry import get_target, target_names
ROUNDS, CALLS, WARMUP = 10, 5, 5   # 50 timed calls a candidate, interleaved


def default_precisions(calibrated: bool, isa: list | None = None) -> list[str]:
    """The precisions tried when none is asked: int8 (with calibration images) and fp32, and fp16 on a
    CPU with X86_BF16, where it is a 16-bit float artifact that runs at 16-bit speed (OpenVINO's
    default_hint). Elsewhere fp16 runs at fp32's speed with less accuracy, so it is not tried."""
    have = isa_flags() if isa is None else isa
    sixteen = ["fp16"] if any(f in have for f in X86_BF16) else []
    return (["int8"] if calibrated else []) + sixteen + ["fp32"]


def candidate_targets() -> list[str]:
    """The registered targets whose runtime runs on this machine (their exports can be timed here)."""
    return [t for t in target_names() if get_target(t).status().runs_here]


def export_auto(ck, plan, prepare_data, on_done=None) -> tuple[Outcome, list[dict]]:
    """(the kept artifact's Outcome, every candidate's figures). prepare_data(ck, plan) -> (calib,
    validation): the plan's own, so candidates calibrate and validate as any export does."""
    targets = candidate_targets()
    if not targets:
        raise ValidationError("--target auto: no target's runtime runs on this machine (see `mixer-edge targets`)")
    calib, val = prepare_data(ck, replace(plan, targets=tuple(targets)))
    out = Path(plan.out_dir)
    out.mkdir(parents=True, exist_ok=True)
    trial = Path(tempfile.mkdtemp(dir=out, prefix=".auto-candidates-"))
    try:
        outcomes = []
        for t in targets:
            for p in plan.precisions:
                o = export_one(ck, t, replace(plan.spec, precision=p), calib, trial, validation=val,
                               force=True, keep_invalid=False)
                outcomes.append(o)
                if on_done:
                    on_done(o)
        figures = [candidate_figures(o, plan.spec.max_drop) for o in outcomes]
        eligible = [(o, f) for o, f in zip(outcomes, figures) if f["eligible"]]
        if not eligible:
            raise ValidationError("--target auto: no candidate passed validation within the budget: "
                                  + "; ".join(f"{f['name']}: {f['why']}" for f in figures))
        x = val.x[0:1]   # one real held-out image, preprocessed
        times = paired_median_ms([_runner(o) for o, _ in eligible], x, rounds=ROUNDS, calls=CALLS, warmup=WARMUP)
        for (_, f), ms in zip(eligible, times):
            f["p50_ms"] = round(ms, 4)
        chosen, chosen_figures = min(eligible, key=lambda e: e[1]["p50_ms"])
        chosen_figures["chosen"] = True
        kept = keep(chosen, out, selection(figures, chosen_figures), plan)
        return kept, figures
    finally:
        shutil.rmtree(trial, ignore_errors=True)


def candidate_figures(o: Outcome, max_drop: float | None) -> dict:
    """What the choice reads of one candidate: validation, top-1 against its reference, eligibility."""
    v = o.validation
    f = {"name": o.dest.name, "validation": v.get("status") or ("failed" if not o.passed else None),
         "top1": v.get("top1"), "reference_top1": v.get("reference_top1"), "p50_ms": None, "chosen": False}
    budget = ACCURACY_BUDGET if max_drop is None else max_drop
    if not o.passed or o.artifact is None:
        f.update(eligible=False, why="failed validation: " + "; ".join(o.problems))
    elif v.get("skipped"):
        f.update(eligible=False, why=f"not validated here ({v['skipped']})")
    elif v.get("status") != "passed":   # undecided: too few images to tell; not chosen on a guess
        f.update(eligible=False, why=f"validation {v.get('status')}" + (
            " (too few validation images to decide; --eval-data with more decides)" if v.get("status") == "undecided"
            else ""))
    elif f["top1"] is not None and f["reference_top1"] is not None \
            and round((f["reference_top1"] - f["top1"]) * 100, 9) > budget:
        f.update(eligible=False, why=f"top-1 {100 * f['top1']:.2f}% is more than {budget:g} points below "
                                     f"{100 * f['reference_top1']:.2f}%")
    else:
        f.update(eligible=True, why="")
    return f


def _runner(o: Outcome):
    return get_target(o.artifact.target).load_runner(o.artifact, threads=default_threads()).run


def selection(figures: list[dict], chosen: dict) -> dict:
    d = device_info()
    return {"how": "fastest at batch 1 (median of interleaved calls) among candidates that passed validation "
                   "within the accuracy budget", "rounds": ROUNDS, "calls": CALLS, "threads": default_threads(),
            "chosen": chosen["name"], "candidates": figures,
            "machine": {"cpu": d.get("cpu"), "isa": d.get("isa"), "cores_usable": d.get("cores_usable")}}


def keep(o: Outcome, out: Path, chosen: dict, plan) -> Outcome:
    """The chosen candidate, its manifest holding the selection, moved into OUT atomically (and
    signed in staging when a key is given): it appears complete or not at all."""
    dest = out / o.dest.name
    art.check_destination(dest, plan.force)
    staging = art.staging_dir(dest)
    try:
        shutil.copytree(o.dest, staging, dirs_exist_ok=True)
        manifest = read_json(staging / MANIFEST, "artifact manifest")
        manifest.pop("schema", None)   # write_manifest stamps it
        art.write_manifest(staging, {**manifest, "selection": chosen})
        if plan.sign_key is not None:
            sign(staging, plan.sign_key)
        art.commit(staging, dest)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return Outcome(art.load_artifact(dest), dest, o.validation, o.problems)
