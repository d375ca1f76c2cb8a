"""export(): checkpoint -> validated artifacts, and the plan behind `mixer-edge export`: every
(target, precision) checked before any work starts, the calibration set and the validation images
prepared once for all of them, then one artifact each (build.export_one).

    artifact = mixer_edge.export("runs/mnist", target="openvino", precision="int8",
                                 calib="mnist:data/mnist", out_dir="artifacts")
"""
from __future__ import annotations

from dataclasses import dataclass, replace
from functools import lru_cache, partial
from pathlib import Path

from ..calibration.policy import learned_ranges
from ..calibration.sets import draw_calibration, load_calibration
from ..data.dataset import take_split, warn_small
from ..data.sources import ReadOptions, load_data
from ..errors import BadInput
from ..models.checkpoint import Checkpoint
from ..models.weights import load_pretrained
from ..runtime.labels import model_labels
from ..runtime.signing import signer
from ..runtime.streaming import model_inputs
from .artifact import check_output_folder
from .auto import candidate_targets, export_auto
from .base import ExportSpec
from .build import check_request, export_one, raise_for
from .manifest import reserved_keys
from .reference import validation_data
from .registry import get_target


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
    read: ReadOptions = ReadOptions()   # --skip-bad, --class-map for the calibration and validation images
    sign_key: str | None = None       # an EC private key (PEM): each artifact signed before it is moved into place


def load_model(checkpoint_or_model):
    """A Checkpoint as it is, or a path to any weights load_pretrained reads."""
    return checkpoint_or_model if isinstance(checkpoint_or_model, Checkpoint) else load_pretrained(checkpoint_or_model)


def prepare_data(ck, plan: ExportPlan) -> tuple:
    """(calibration set, validation data) for a plan; a source both use is read once."""
    load = lru_cache(maxsize=None)(partial(load_data, options=plan.read))
    # FP32 / FP16 need no ranges; a quantization-aware checkpoint brings its own
    needed = ("int8" in plan.precisions and learned_ranges(ck) is None) or "int4" in plan.precisions
    calib = prepare_calibration(ck, plan, load) if needed else None
    return calib, prepare_validation(ck, plan, calib, load)


def prepare_calibration(ck, plan: ExportPlan, load):
    """The calibration set: drawn from --calib-data, never from an image the model was trained on
    nor from the eval split that validation may take; all of it when it shares no image with the
    training data and --eval-data gives validation its own (calibration/sets.calibration_pool)."""
    spec = plan.calib_data
    if spec is None or not isinstance(spec, str):
        return spec  # None, or a CalibrationSet made by the caller
    if spec.endswith(".npz"):
        return load_calibration(spec, ck.preprocess)
    return draw_calibration(load(spec), ck.preprocess, size=plan.calib_size, seed=plan.calib_seed,
                            trained=ck.trained_keys, split=ck.split, validation_apart=plan.eval_data is not None)


def prepare_validation(ck, plan: ExportPlan, calib, load):
    """Validation images, disjoint by content from the training and the calibration images: all of
    --eval-data less those; else the held-out eval split of the calibration data (one source: a part
    is set aside); else that of the data the checkpoint was trained on. Held preprocessed once for
    every target up to the streaming threshold, above it made a batch at a time from the raw images
    each time a target runs (runtime/streaming.model_inputs; docs/data.md). Raw images stay lazy
    either way (golden.npz takes 32)."""
    data = _validation_source(ck, plan, load)
    if plan.eval_data is None:
        data = take_split(data, "eval", ck.split)
    reserved = reserved_keys(ck, calib)
    part = data.without(reserved)
    if not len(part):
        raise BadInput(f"every one of the {len(data)} validation images of {data.spec!r} was used in training "
                       f"or calibration; give --eval-data with other images")
    warn_small(part, ck.preprocess.size)
    labels, how = model_labels(ck.identity, part)
    selection = "all of it" if plan.eval_data else "its held-out eval split"
    about = part.describe(selection=selection, excluded=len(data) - len(part), labels=how,
                          calibration_excluded=calib is None or calib.keys is not None)
    return validation_data(ck, model_inputs(part.images, ck.preprocess), labels,
                           f"{data.spec} ({selection}, {len(part)} images not trained or calibrated on)",
                           raw=part.images, about=about)


def _validation_source(ck, plan: ExportPlan, load):
    if plan.eval_data is not None:
        return load(plan.eval_data)
    if isinstance(plan.calib_data, str) and not plan.calib_data.endswith(".npz"):
        return load(plan.calib_data)
    spec = ck.meta.get("data")
    if spec is None:
        raise BadInput("validation needs images the model was not trained on: give --eval-data SPEC")
    try:
        return load(spec)
    except BadInput as e:
        raise BadInput(f"validation needs held-out images: give --eval-data SPEC (the model's training data "
                       f"cannot be read here: {e})") from None


def check_plan(plan: ExportPlan, ck=None) -> None:
    """Every (target, precision) request is checked before any work starts."""
    check_output_folder(Path(plan.out_dir), plan.force,
                        {f"{get_target(t).name}-{p}" for t in plan.targets for p in plan.precisions})
    learned = ck is not None and learned_ranges(ck) is not None
    for t in plan.targets:
        target = get_target(t)
        for p in plan.precisions:
            check_request(target, replace(plan.spec, precision=p), plan.calib_data, learned)
    if plan.sign_key is not None:
        signer(plan.sign_key)   # model-signing installed, the key readable: refused now, not after the exports


def run_plan(checkpoint_or_model, plan: ExportPlan, on_done=None) -> list:
    """Export every target x precision; returns the Outcomes (failed ones included)."""
    ck = load_model(checkpoint_or_model)
    check_plan(plan, ck)
    calib, val = prepare_data(ck, plan)
    outcomes = []
    for t in plan.targets:
        for p in plan.precisions:
            o = export_one(ck, t, replace(plan.spec, precision=p), calib, Path(plan.out_dir), validation=val,
                           force=plan.force, keep_invalid=plan.keep_invalid, sign_key=plan.sign_key)
            outcomes.append(o)
            if on_done:
                on_done(o)
    return outcomes


def run_auto(checkpoint_or_model, plan: ExportPlan, on_done=None):
    """--target auto (export/auto.py): (the kept artifact's Outcome, every candidate's figures)."""
    ck = load_model(checkpoint_or_model)
    check_plan(replace(plan, targets=tuple(candidate_targets())), ck)
    return export_auto(ck, plan, prepare_data, on_done)


def export(checkpoint_or_model, *, target: str, precision: str = "fp32", calib=None, out_dir=".",
           eval_data: str | None = None, calib_size: int = 300, force: bool = False,
           keep_invalid: bool = False, **spec_options):
    """One artifact; raises ValidationError when it fails validation (unless keep_invalid)."""
    plan = ExportPlan(targets=(target,), precisions=(precision,), out_dir=str(out_dir), calib_data=calib,
                      calib_size=calib_size, eval_data=eval_data, force=force, keep_invalid=keep_invalid,
                      spec=ExportSpec(**spec_options))
    (outcome,) = run_plan(checkpoint_or_model, plan)
    if not keep_invalid:
        raise_for([outcome])
    return outcome.artifact
