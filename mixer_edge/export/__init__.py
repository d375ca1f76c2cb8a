"""Export: checkpoint -> validated artifact per target and precision.

    artifact = mixer_edge.export("runs/mnist", target="openvino", precision="int8",
                                 calib="mnist:data/mnist", out_dir="artifacts")
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from .base import ExportSpec


@dataclass(frozen=True)
class ExportPlan:
    """Everything one `mixer-edge export` run needs, after the CLI has parsed it."""
    targets: tuple[str, ...]
    precisions: tuple[str, ...]
    out_dir: str
    calib_data: object = None         # a data spec, a saved .npz path, or a CalibrationSet
    calib_size: int = 300
    calib_seed: int = 0
    eval_data: str | None = None
    force: bool = False
    keep_invalid: bool = False
    spec: ExportSpec = ExportSpec()   # precision is filled per artifact


def load_model(checkpoint_or_model):
    """A Checkpoint as it is, or a path to any weights load_pretrained reads."""
    from ..models.checkpoint import Checkpoint
    from ..models.weights import load_pretrained

    return checkpoint_or_model if isinstance(checkpoint_or_model, Checkpoint) else load_pretrained(checkpoint_or_model)


def prepare_calibration(ck, plan: ExportPlan):
    from ..calibration import make_calibration

    if plan.calib_data is None or not isinstance(plan.calib_data, str):
        return plan.calib_data  # None, or a CalibrationSet made by the caller
    return make_calibration(plan.calib_data, ck.preprocess, size=plan.calib_size, seed=plan.calib_seed,
                            training_data=ck.meta.get("data"), split=ck.split)


def prepare_validation(ck, plan: ExportPlan, calib):
    """Validation images: --eval-data (its eval split when it is the training data), else the
    calibration set, else the eval split of the data the checkpoint was trained on."""
    from ..data.dataset import take_split
    from ..data.sources import load_data
    from ..errors import BadInput
    from ..train.evaluate import check_class_count
    from .api import validation_data

    spec = plan.eval_data
    if spec is None and calib is not None:
        return validation_data(ck, calib.x, calib.labels, f"calibration set {calib.source}")
    spec = spec or ck.meta.get("data")
    if spec is None:
        raise BadInput("validation needs real images: give --eval-data SPEC or --calib-data SPEC")
    data = load_data(spec)
    if data.labels is not None:
        check_class_count(ck.config.num_classes, data.num_classes, spec)
    split = "eval" if spec == ck.meta.get("data") else "all"
    part = take_split(data, split, ck.split)
    return validation_data(ck, ck.preprocess(part.images), part.labels, f"{spec} ({split} split)", raw=part.images)


def check_plan(plan: ExportPlan) -> None:
    """Every (target, precision) request is checked before any work starts."""
    from dataclasses import replace

    from .api import check_request
    from .registry import get_target

    for t in plan.targets:
        target = get_target(t)
        for p in plan.precisions:
            check_request(target, replace(plan.spec, precision=p), plan.calib_data)


def run_plan(checkpoint_or_model, plan: ExportPlan, on_done=None) -> list:
    """Export every target x precision; returns the Outcomes (failed ones included)."""
    from dataclasses import replace

    from .api import export_one

    check_plan(plan)
    ck = load_model(checkpoint_or_model)
    calib = prepare_calibration(ck, plan)
    val = prepare_validation(ck, plan, calib)
    outcomes = []
    for t in plan.targets:
        for p in plan.precisions:
            o = export_one(ck, t, replace(plan.spec, precision=p), calib, Path(plan.out_dir), validation=val,
                           force=plan.force, keep_invalid=plan.keep_invalid)
            outcomes.append(o)
            if on_done:
                on_done(o)
    return outcomes


def export(checkpoint_or_model, *, target: str, precision: str = "fp32", calib=None, out_dir=".",
           eval_data: str | None = None, calib_size: int = 300, force: bool = False,
           keep_invalid: bool = False, **spec_options):
    """One artifact; raises ValidationError when it fails validation (unless keep_invalid)."""
    from .api import raise_for

    plan = ExportPlan(targets=(target,), precisions=(precision,), out_dir=str(out_dir), calib_data=calib,
                      calib_size=calib_size, eval_data=eval_data, force=force, keep_invalid=keep_invalid,
                      spec=ExportSpec(**spec_options))
    (outcome,) = run_plan(checkpoint_or_model, plan)
    if not keep_invalid:
        raise_for([outcome])
    return outcome.artifact
