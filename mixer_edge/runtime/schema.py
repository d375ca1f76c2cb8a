"""Document shapes: what a manifest and a result hold, checked before anything reads them.

A shape is a check(value, where) -> problems, {key: shape} ("key?": may be absent), [shape] (a
list of any length) or (shape, ...) (a list of exactly that many). check_document collects every
problem, then raises one BadInput listing them: what arrived and what is accepted, at each place.
"""
from __future__ import annotations

import math
import re

from .errors import BadInput
from .preprocess import RESIZE_METHODS

PRECISIONS = ("fp32", "fp16", "int8", "int4")   # what an artifact computes in (int4: its weights); the one list
JSON_KINDS = {dict: "an object", list: "a list", str: "a string", bool: "a boolean", int: "an integer",
              float: "a number"}
MAX_SHOWN = 6      # problems listed in the one line; the rest are counted
MAX_SIDE = 4096    # the largest image side or fixed batch a manifest may ask for


def shape_problems(value, shape, where: str = "the document") -> list:
    """Every place where value does not have shape, as "PLACE is WHAT, expected WHAT" lines."""
    if callable(shape):
        return shape(value, where)
    if isinstance(shape, dict) and isinstance(value, dict):
        out = []
        for key, sub in shape.items():
            name = key.rstrip("?")
            at = name if where == "the document" else f"{where}.{name}"
            if name in value:
                out += shape_problems(value[name], sub, at)
            elif not key.endswith("?"):
                out.append(f"{at} is missing")
        return out
    if isinstance(shape, dict) or not isinstance(value, list) or \
            (isinstance(shape, tuple) and len(value) != len(shape)):
        return [f"{where} is {_shown(value)}, expected {_expected(shape)}"]
    subs = shape if isinstance(shape, tuple) else shape * len(value)
    return [p for i, (v, s) in enumerate(zip(value, subs)) for p in shape_problems(v, s, f"{where}[{i}]")]


def check_document(doc, path, shape, relations=None) -> None:
    """Raise one BadInput listing every problem of doc's shape (then of relations(doc), what its
    parts must agree on), or return."""
    problems = shape_problems(doc, shape)
    if not problems and relations is not None:
        problems = relations(doc)
    if problems:
        more = f"; and {len(problems) - MAX_SHOWN} more" if len(problems) > MAX_SHOWN else ""
        raise BadInput(f"{path}: " + "; ".join(problems[:MAX_SHOWN]) + more)


def _shown(value) -> str:
    if value is None:
        return "null"
    text = repr(value)
    return f"{JSON_KINDS.get(type(value), type(value).__name__)} {text if len(text) <= 40 else text[:37] + '...'}"


def _expected(shape) -> str:
    if isinstance(shape, dict):
        return "an object with " + ", ".join(k for k in shape if not k.endswith("?"))
    if isinstance(shape, tuple):
        return f"a list of {len(shape)}"
    return "a list of objects with " + _expected(shape[0])[15:] if isinstance(shape[0], dict) else "a list"


# ---- the building blocks ------------------------------------------------------------------------

def leaf(test, expected: str):
    """A shape that holds where test(value) is true; `expected` says what is accepted."""
    def check(value, where: str) -> list:
        try:
            ok = bool(test(value))
        except (TypeError, ValueError, OverflowError):
            ok = False
        return [] if ok else [f"{where} is {_shown(value)}, expected {expected}"]
    return check


def _number(v) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)


def ints(lo: int, hi: int):
    return leaf(lambda v: _number(v) and isinstance(v, int) and lo <= v <= hi, f"an integer {lo}..{hi}")


def one_of(*values):
    return leaf(lambda v: isinstance(v, (str, int)) and not isinstance(v, bool) and v in values,
                "one of " + ", ".join(map(str, values)))


def maybe(shape):
    """shape, or null."""
    return lambda v, where: [] if v is None else shape_problems(v, shape, where)


def when(test, then, otherwise):
    """An object whose keys depend on one of its own: then where test(value), else otherwise."""
    return lambda v, where: shape_problems(v, then if isinstance(v, dict) and test(v) else otherwise, where)


def each(shape):
    """An object of any keys, every value of shape (a table such as layer -> milliseconds)."""
    def check(v, where: str) -> list:
        if not isinstance(v, dict):
            return [f"{where} is {_shown(v)}, expected an object"]
        return [p for k, x in v.items() for p in shape_problems(x, shape, f"{where}.{k}")]
    return check


TEXT = leaf(lambda v: isinstance(v, str), "a string")
NAME = leaf(lambda v: isinstance(v, str) and v != "", "a non-empty string")
OBJECT = leaf(lambda v: isinstance(v, dict), "an object")
BOOL = leaf(lambda v: isinstance(v, bool), "true or false")
NUMBER = leaf(_number, "a finite number")
NON_NEGATIVE = leaf(lambda v: _number(v) and v >= 0, "a number >= 0")
FRACTION = leaf(lambda v: _number(v) and 0 <= v <= 1, "a number 0..1")
SHA256 = leaf(lambda v: isinstance(v, str) and re.fullmatch(r"[0-9a-f]{64}", v), "a sha256 (64 hex digits)")
DIM = leaf(lambda v: isinstance(v, str) or (_number(v) and isinstance(v, int) and 1 <= v <= MAX_SIDE),
           f"an axis name or a size 1..{MAX_SIDE}")


# ---- manifest.json ------------------------------------------------------------------------------

MANIFEST_SHAPE = {
    "target": NAME, "precision": one_of(*PRECISIONS),
    "files": [{"path": TEXT, "sha256": SHA256, "bytes?": ints(0, 2 ** 53)}],   # artifact.confined checks each path
    "preprocess": {"size": (ints(1, MAX_SIDE), ints(1, MAX_SIDE)), "channels": one_of(1, 3),
                   "mean": [NUMBER], "std": [leaf(lambda v: _number(v) and v != 0, "a non-zero number")],
                   "resize?": one_of(*RESIZE_METHODS)},
    "classes": [TEXT], "classes_named?": BOOL,
    "input?": {"shape": [DIM], "name?": TEXT}, "output?": {"shape": [DIM]},
    "golden?": maybe({"file": NAME, "threshold_sqnr_db": NUMBER}),
    "model?": maybe({"data?": maybe(TEXT), "split?": maybe(OBJECT)}),
    "export?": maybe({"spec?": {"float_layers?": maybe([TEXT]), "coreml_input?": maybe(TEXT)},
                      "mixed_precision?": maybe({"latency?": maybe(OBJECT)}), "engine?": maybe(OBJECT),
                      "coreml?": maybe({"specification_version?": maybe(ints(0, 2 ** 31))}),
                      "file?": NAME, "onnx_kind?": maybe(TEXT)}),
    "validation?": {"passed?": maybe(BOOL), **{f"{k}?": maybe(TEXT) for k in ("checked_by", "runner", "skipped")}},
    "calibration?": maybe(OBJECT), "images?": maybe(OBJECT), "versions?": OBJECT,
}


def manifest_problems(m: dict) -> list:
    """What the parts of a manifest must agree on: channels, sizes, class counts."""
    pre, out = m["preprocess"], []
    counts = " or ".join(map(str, sorted({1, pre["channels"]})))
    for key in ("mean", "std"):
        if len(pre[key]) not in (1, pre["channels"]):
            out.append(f"preprocess.{key} has {len(pre[key])} values, expected {counts} (one for all or one a channel)")
    if not m["classes"]:
        out.append("classes is empty, expected the class names in output order")
    shape = (m.get("input") or {}).get("shape")
    if shape is not None and shape[1:] != [pre["channels"], *pre["size"]]:
        out.append(f"input.shape {shape} does not match preprocess channels {pre['channels']} and size {pre['size']}")
    shape = (m.get("output") or {}).get("shape")
    if shape and shape[-1] != len(m["classes"]):
        out.append(f"output.shape {shape} has {shape[-1]} classes but classes lists {len(m['classes'])} names")
    return out


# ---- a benchmark result -------------------------------------------------------------------------

LATENCY_COST = {"cost_ms": NUMBER, "all_int8_ms": NUMBER, "mixed_ms": NUMBER, "cost_ratio": NUMBER,
                "per_layer_ms": each(NUMBER)}
MHZ = maybe(NON_NEGATIVE)
SNAPSHOT = {   # runtime/conditions.snapshot(): what the report reads of it
    "load_avg?": maybe((NON_NEGATIVE, NON_NEGATIVE, NON_NEGATIVE)), "cpu_governor?": maybe(TEXT),
    "temperatures_c?": maybe(each(NUMBER)),
    "jetson?": maybe({"power_mode?": maybe({"name": TEXT, "id?": maybe(ints(0, 2 ** 20))}),
                      "clocks_locked?": maybe(BOOL), "clocks_source?": maybe(TEXT), "gpu_mhz?": MHZ,
                      "gpu_max_mhz?": MHZ, "emc_mhz?": MHZ, "emc_max_mhz?": MHZ, "cpu_mhz?": MHZ}),
    "nvidia_gpus?": maybe([{"name": TEXT, "sm_mhz?": MHZ, "sm_max_mhz?": MHZ, "mem_mhz?": MHZ, "mem_max_mhz?": MHZ,
                            "temperature_c?": maybe(NUMBER), "pstate?": maybe(TEXT)}]),
    "macos?": maybe({"version?": maybe(TEXT), "chip?": maybe(TEXT)}),
}
PROFILE = {   # runtime/profile.summarize(), what the report reads of it
    "status": TEXT, "source": TEXT, "calls": ints(1, 2 ** 31), "batch": ints(1, 2 ** 31), "node_ms": NON_NEGATIVE,
    "by_kind": [{"kind": TEXT, "ms": NON_NEGATIVE, "share": maybe(FRACTION), "nodes": ints(0, 2 ** 31)}],
    "matmul": {"int8_macs_share": maybe(FRACTION), "int8_time_share": maybe(FRACTION)},
}
RESULT_SHAPE = {
    "device": {"name": NAME, "cpu?": TEXT, "os?": TEXT, "isa?": maybe([TEXT]),
               "cores_usable?": maybe(ints(0, 2 ** 31)), "machine?": maybe(TEXT), "gpus?": maybe([TEXT])},
    "versions?": OBJECT,
    "conditions?": maybe({"before": SNAPSHOT, "after": SNAPSHOT, "cores_usable?": maybe(ints(1, 2 ** 20)),
                          "others_cores?": maybe(NON_NEGATIVE), "clocks_locked?": maybe(BOOL),
                          "compute_units?": maybe(TEXT), "warnings?": [TEXT]}),
    "results": [{
        "name": TEXT, "target": TEXT, "precision": TEXT, "status": TEXT, "reason?": maybe(TEXT),
        "size_bytes?": maybe(NON_NEGATIVE),
        "accuracy?": maybe({"top1?": maybe(FRACTION), "top5?": maybe(FRACTION)}),
        "agreement?": maybe({"top1_agreement?": maybe(FRACTION), "cosine?": maybe(NUMBER)}),
        "latency_ms?": maybe({**{f"{p}?": maybe(NON_NEGATIVE) for p in ("p10", "p50", "p90", "p99")},
                              "p50_ci?": maybe((NON_NEGATIVE, NON_NEGATIVE))}),
        "throughput?": maybe([{"batch": ints(1, 2 ** 31), "images_per_s": maybe(NON_NEGATIVE),
                               "images_per_s_ci?": maybe((maybe(NON_NEGATIVE), maybe(NON_NEGATIVE)))}]),
        "model_rss_mb?": maybe(NUMBER),
        "validation?": maybe({"status": TEXT, "checked_by": maybe(TEXT)}),
        "runtime?": maybe({"applied_precision?": maybe(TEXT), "precision_hint?": maybe(TEXT)}),
        "quantization?": maybe({"float_layers?": maybe([TEXT]), "max_drop?": maybe(NUMBER),
                                "float_layers_latency?": maybe(when(lambda s: "cost_ms" in s, LATENCY_COST,
                                                                    {"skipped?": TEXT}))}),
        "device_check?": maybe(when(lambda c: c.get("status") == "skipped", {"status": TEXT},
                                    {"status": one_of("passed", "failed", "skipped"), "sqnr_db": NUMBER,
                                     "threshold_sqnr_db": NUMBER})),
        "load?": maybe({"others_cores?": maybe(NON_NEGATIVE), "busy?": BOOL}),
        "data?": maybe(OBJECT),
        "profile?": maybe(when(lambda p: p.get("status") != "ok", {"status": TEXT, "reason?": maybe(TEXT)}, PROFILE)),
    }],
}
