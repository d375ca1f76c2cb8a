"""One artifact, for one target and precision, kept only when it passes validation.

The flow: check the request -> prepare the model (INT8: the recipe, int8.prepare; INT4: GPTQ's
weights, int4.prepare) -> build and
validate in a staging folder (attempt.py; with --max-drop, budget.py) -> keep it (one rename) or
throw it away, removing an artifact it was to replace so that nothing there looks current.
"""
from __future__ import annotations

import shutil
from dataclasses import dataclass
from pathlib import Path

from ..calibration.int4 import check_block
from ..calibration.policy import learned_ranges
from ..errors import BadInput, CalibrationError, ValidationError, require
from . import artifact as art
from . import int4, int8
from .attempt import attempt
from ..runtime.schema import PRECISIONS
from ..runtime.signing import sign
from .base import ExportSpec
from .budget import within_budget
from .reference import ValidationData
from .registry import get_target


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
    if spec.precision == "int4":
        check_block(spec.int4_block)
        formats = getattr(target, "int4_formats", ("blocks",))
        if spec.int4_format not in formats:
            raise BadInput(f"--int4-format {spec.int4_format} is not a format target {target.name!r} stores; it takes "
                           f"{', '.join(formats)} (palette: Core ML only)")
        if calib is None:
            raise CalibrationError("--precision int4 needs calibration data (--calib-data SPEC or a saved .npz): "
                                   "GPTQ rounds each layer's 4-bit weights against its inputs on those images")


def export_one(checkpoint, target_name: str, spec: ExportSpec, calib, out_dir, *,
               validation: ValidationData, force: bool = False, keep_invalid: bool = False,
               sign_key: str | None = None) -> Outcome:
    target = get_target(target_name)
    check_request(target, spec, calib, learned=learned_ranges(checkpoint) is not None)
    dest = Path(out_dir) / f"{target.name}-{spec.precision}"
    art.check_destination(dest, force)
    int8.check_request(checkpoint, spec, calib)
    prepared, spec, recipe = int8.prepare(checkpoint, spec, calib)
    prepared, weights4 = int4.prepare(prepared, spec, calib)
    recipe = {**recipe, **weights4}
    spec, recipe = int8.target_rule(target, spec, recipe)
    staging = None   # attempt removes its own folder when it fails; this one is ours once it returns
    try:
        staging, figures, problems = attempt(checkpoint, prepared, target, spec, calib, validation, dest, recipe)
        if spec.max_drop is not None and int8.applies(spec):
            staging, figures, problems = within_budget(checkpoint, prepared, target, spec, calib, validation,
                                                       dest, recipe, (staging, figures, problems))
        if problems and not keep_invalid:
            _discard(staging)
            return Outcome(None, dest, figures, tuple(problems), retired=art.retire(dest))
        if sign_key is not None:    # signed in staging, after its last write: the artifact appears signed or not at all
            sign(staging, sign_key)
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


def raise_for(outcomes: list[Outcome]) -> None:
    """One error listing every artifact that failed validation."""
    bad = [o for o in outcomes if not o.passed]
    if bad:
        raise ValidationError("; ".join(f"{o.dest.name}: " + ", ".join(o.problems) + o.fate for o in bad))
