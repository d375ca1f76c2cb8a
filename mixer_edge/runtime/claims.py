"""What manifest.json claims about the artifact's files, checked against the files themselves every
time an artifact is read (artifact.read_manifest: the device scripts, predict, bench, pack, trt
build), and binding.json, which seals the rest of the manifest.

Re-derived from the model file (modelfile.py) and compared: the target (the kind of model file it
lists), the precision, the input and output shapes, the class count (the output's last axis), the
INT8 quantized-op count, and for ONNX the class names and preprocessing in its metadata. Re-derived
from golden.npz: the golden threshold (the rule below, applied to the SQNR its two logit arrays
give). What no file can tell (class names elsewhere, the held-out images, the validation record,
ONNX vs TensorRT for an FP32 ONNX, ...) is bound by binding.json: a sha256 of the manifest as the
export wrote it, less what trt_build.py stamps on the device. A digest anyone can recompute catches
hand edits, not a deliberate forger: that is what a signature is for (signing.py), and the
signature covers binding.json.

This module imports nothing of the runtime but errors.py and modelfile.py: artifact.py calls it.
"""
from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .errors import BadInput
from .modelfile import ModelFacts, read_ir, read_mlprogram, read_onnx

BINDING = "binding.json"
BINDING_KIND = "mixer-edge-binding"
FIX = "re-export the artifact, or restore its manifest.json"


# ---- the golden threshold rule (golden.py applies it on the device) --------------------------------

# The check: logit SQNR against FP32 PyTorch on the golden images of at least
# min(floor, SQNR the artifact reached at export - margin). The floor is what any correct artifact
# of the precision reaches (fp32: arithmetic order only; fp16: half rounding; int8, int4: quantization);
# the margin allows another runtime's kernels (TensorRT on a GPU, Core ML on the Neural Engine).
GOLDEN_FLOOR_DB = {"fp32": 60.0, "fp16": 35.0, "int8": 20.0, "int4": 15.0}
GOLDEN_MARGIN_DB = 6.0
DB_TOLERANCE = 0.011   # figures are recorded to 0.01 dB: one rounding step apart is the same figure


def golden_threshold(precision: str, built_sqnr_db: float | None) -> float:
    floor = GOLDEN_FLOOR_DB[precision]
    return floor if built_sqnr_db is None else min(floor, built_sqnr_db - GOLDEN_MARGIN_DB)


def sqnr_db(reference: np.ndarray, logits: np.ndarray) -> float:
    ref, out = reference.astype(np.float64), logits.astype(np.float64)
    if not np.all(np.isfinite(out)):
        return float("-inf")
    return float(10 * np.log10(max((ref ** 2).sum(), 1e-30) / max(((out - ref) ** 2).sum(), 1e-30)))


# ---- the model file ---------------------------------------------------------------------------------

@dataclass(frozen=True)
class ModelKind:
    what: str        # for messages, with its article
    suffix: str      # how its file is found among the listed ones
    read: object     # modelfile reader: (path, name) -> ModelFacts


ONNX = ModelKind("an ONNX model", ".onnx", read_onnx)
IR = ModelKind("an OpenVINO IR", ".xml", read_ir)
MLPROGRAM = ModelKind("a Core ML program", ".mlpackage/Data/com.apple.CoreML/model.mlmodel", read_mlprogram)
KINDS = {"onnx": ONNX, "tensorrt": ONNX, "openvino": IR, "coreml": MLPROGRAM}   # target -> its model file


def _listed(manifest: dict) -> list[str]:
    return [e["path"] for e in manifest["files"]]


def _model_path(manifest: dict, kind: ModelKind) -> str | None:
    """The listed file of `kind`: the one export.file names, model<suffix>, or the only one."""
    names = [p for p in _listed(manifest) if p.endswith(kind.suffix)]
    preferred = [(manifest.get("export") or {}).get("file"), f"model{kind.suffix}"]
    return next((p for p in preferred if p in names), names[0] if len(names) == 1 else None)


def model_facts(folder, manifest: dict) -> ModelFacts | None:
    """The facts of the model file the target names, or None where there is none to read (a target
    this runtime has no reader for, or no listed file of its kind: the backend's load says so)."""
    kind = KINDS.get(manifest["target"])
    name = None if kind is None else _model_path(manifest, kind)
    # read_manifest checked that every listed path stays inside the folder and its sha256 first
    return None if name is None else kind.read(Path(folder) / name, name)


def _target_problem(manifest: dict) -> list[str]:
    """A target whose model file is not there while another target's is: the target was edited."""
    kind = KINDS.get(manifest["target"])
    if kind is None or _model_path(manifest, kind) is not None:
        return []
    for other in (ONNX, IR, MLPROGRAM):
        found = _model_path(manifest, other)
        if found is not None:
            return [f"target: manifest.json says {manifest['target']!r}, but its model file {found} is "
                    f"{other.what}, not {kind.what}"]
    return []


def _shape(shape) -> str:
    return "[" + ", ".join("?" if d is None else str(d) for d in shape) + "]"


def _short(values: list) -> str:
    return repr(values) if len(repr(values)) <= 60 else repr(values)[:57] + "...]"


def fact_problems(manifest: dict, facts: ModelFacts) -> list[str]:
    """Each claim of the manifest the model file contradicts: 'FIELD: manifest.json says X, FILE says Y'."""
    f, out = facts.file, []
    if facts.precision != manifest["precision"]:
        out.append(f"precision: manifest.json says {manifest['precision']!r}, {f} says {facts.precision!r} "
                   f"({facts.evidence})")
    claimed = (manifest.get("input") or {}).get("shape")
    if claimed and facts.input_shape and (len(claimed) != len(facts.input_shape)
                                          or list(claimed[1:]) != list(facts.input_shape[1:])):
        out.append(f"input.shape: manifest.json says {_shape(claimed)}, {f} takes {_shape(facts.input_shape)}")
    claimed = (manifest.get("output") or {}).get("shape")
    if claimed and facts.output_shape and (len(claimed) != len(facts.output_shape)
                                           or list(claimed[1:]) != list(facts.output_shape[1:])):
        out.append(f"output.shape: manifest.json says {_shape(claimed)}, {f} gives {_shape(facts.output_shape)}")
    classes = manifest["classes"]
    scores = facts.output_shape[-1] if facts.output_shape else None
    if scores is not None and len(classes) != scores:
        out.append(f"classes: manifest.json names {len(classes)} classes, {f} gives {scores} scores")
    elif facts.classes is not None and list(classes) != list(facts.classes):
        out.append(f"classes: manifest.json says {_short(classes)}, {f}'s metadata says {_short(list(facts.classes))}")
    for key, value in (facts.preprocess or {}).items():
        if key in manifest["preprocess"] and manifest["preprocess"][key] != value:
            out.append(f"preprocess.{key}: manifest.json says {manifest['preprocess'][key]!r}, {f}'s metadata says "
                       f"{value!r}")
    ops = (manifest.get("validation") or {}).get("quantized_ops")
    counted = ops.get("counted") if isinstance(ops, dict) else None
    if isinstance(counted, int) and not isinstance(counted, bool):
        found = facts.quantized(ops.get("quantized") == "weights")
        if found != counted:
            out.append(f"validation.quantized_ops.counted: manifest.json says {counted}, {f} quantizes {found} of "
                       f"its {len(facts.matmuls)} matrix multiplies")
    return out


def golden_problems(folder, manifest: dict, precision: str) -> list[str]:
    """golden.threshold_sqnr_db (and built_sqnr_db) against what golden.npz implies: the SQNR of
    the artifact's own export logits against the reference, through the threshold rule."""
    section = manifest.get("golden")
    if not isinstance(section, dict) or section["file"] not in _listed(manifest) or precision not in GOLDEN_FLOOR_DB:
        return []   # no golden set (device_check says skipped), or one it will refuse as not listed
    try:
        with np.load(Path(folder) / section["file"], allow_pickle=False) as z:
            reference, built_with = z["reference"], (z["artifact"] if "artifact" in z.files else None)
    except (OSError, ValueError, KeyError) as e:
        raise BadInput(f"{section['file']} is not a readable golden set: {e}") from None
    built = None if built_with is None else round(sqnr_db(reference, built_with), 2)
    threshold = round(golden_threshold(precision, built), 2)
    out = []
    claimed = section.get("built_sqnr_db")
    if built is not None and isinstance(claimed, (int, float)) and abs(claimed - built) > DB_TOLERANCE:
        out.append(f"golden.built_sqnr_db: manifest.json says {claimed} dB, {section['file']} gives {built} dB")
    if abs(section["threshold_sqnr_db"] - threshold) > DB_TOLERANCE:
        how = f"{precision} floor {GOLDEN_FLOOR_DB[precision]:g} dB" + (
            "" if built is None else f", export SQNR {built} dB less {GOLDEN_MARGIN_DB:g} dB")
        out.append(f"golden.threshold_sqnr_db: manifest.json says {section['threshold_sqnr_db']} dB, "
                   f"{section['file']} implies {threshold} dB ({how})")
    return out


# ---- the binding: the rest of the manifest, sealed at export -----------------------------------------

def bound(manifest: dict) -> dict:
    """The manifest as the export wrote it: less what trt_build.py stamps on the device (the engine
    section, the engine's file entry, the TensorRT / CUDA versions) and less versions as a whole
    (informational, restamped)."""
    m = json.loads(json.dumps(manifest))
    m.pop("versions", None)
    export = m.get("export")
    engine = export.pop("engine", None) if isinstance(export, dict) else None
    engine_file = engine.get("file") if isinstance(engine, dict) else None
    if isinstance(m.get("files"), list):
        m["files"] = [e for e in m["files"] if not (isinstance(e, dict) and e.get("path") == engine_file)]
    return m


def _digest(value) -> str:
    text = json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=True)
    return hashlib.sha256(text.encode()).hexdigest()


def binding_of(manifest: dict) -> dict:
    """binding.json's content: the sha256 of the bound manifest, and of each of its top-level keys
    (so that a refusal can name the part that changed)."""
    b = bound(manifest)
    return {"kind": BINDING_KIND, "schema": 1, "sha256": _digest(b), "keys": {k: _digest(v) for k, v in b.items()},
            "covers": "manifest.json as exported, less export.engine, the engine's file entry and versions "
                      "(stamped on the device by trt_build.py)"}


def check_binding(folder, manifest: dict) -> None:
    """Refuse a manifest that differs from what binding.json sealed at export, naming the top-level
    keys that changed. An artifact without binding.json (exported before it existed) is checked by
    the re-derived claims alone."""
    path = Path(folder) / BINDING
    if not path.exists():
        return
    try:
        record = json.loads(path.read_bytes())
        sealed, keys = record["sha256"], record["keys"]
        if record.get("kind") != BINDING_KIND or not isinstance(keys, dict):
            raise ValueError(f"kind {record.get('kind')!r}")
    except (OSError, ValueError, KeyError, TypeError) as e:
        raise BadInput(f"artifact {folder}: {BINDING} is not a mixer-edge binding ({e}); {FIX}") from None
    now = binding_of(manifest)
    if now["sha256"] == sealed:
        return
    changed = sorted(k for k in {*keys, *now["keys"]} if keys.get(k) != now["keys"].get(k)) or ["its layout"]
    raise BadInput(f"artifact {folder}: manifest.json was changed after export (what differs from what {BINDING} "
                   f"sealed: {', '.join(changed)}); {FIX}")


# ---- the one call ---------------------------------------------------------------------------------------

def check_claims(folder, manifest: dict) -> None:
    """Every claim of the manifest re-derived from its files, then the binding; one BadInput naming
    each field that disagrees, what manifest.json says and what the file says."""
    problems = _target_problem(manifest)
    facts = None if problems else model_facts(folder, manifest)
    if facts is not None:
        problems += fact_problems(manifest, facts)
    problems += golden_problems(folder, manifest, facts.precision if facts else manifest["precision"])
    if problems:
        raise BadInput(f"artifact {folder}: manifest.json does not match its files (edited after export?): "
                       + "; ".join(problems) + f"; {FIX}")
    check_binding(folder, manifest)
