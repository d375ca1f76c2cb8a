"""A benchmark's result document: one entry per artifact with every key of the schema present,
the versioned document around them, reading one back (its kind, schema and shape checked), and
the fixed-width table printed for a terminal. edge_bench.py and `mixer-edge bench` write it;
`mixer-edge report` reads it."""
from __future__ import annotations

import time
from dataclasses import asdict

from .artifact import read_json
from .conditions import summary, warnings
from .errors import BadInput
from .schema import RESULT_SHAPE, check_document

SCHEMA = 1                      # of the result JSON; `mixer-edge report` refuses any other
KIND = "mixer-edge-bench"
RESULT_KEYS = ("artifact", "name", "target", "precision", "sha256", "status", "reason", "runtime", "load_s",
               "first_inference_ms", "latency_batch", "latency_ms", "throughput", "batch_dynamic", "batch_range",
               "size_bytes",
               "model_rss_mb", "process_peak_rss_mb", "rss_before_load_mb", "process_peak_rss_scope", "accuracy",
               "agreement", "data", "quantization", "validation", "device_check", "load", "profile")


def result_entry(**fields) -> dict:
    """One result with every key of the schema present (None where it did not apply or run)."""
    unknown = set(fields) - set(RESULT_KEYS)
    if unknown:
        raise ValueError(f"not result keys: {sorted(unknown)}")
    return {k: fields.get(k) for k in RESULT_KEYS}


def document(results: list, device: dict, versions: dict, settings, tool: str, data: str,
             conditions: dict | None = None) -> dict:
    """settings: the timing.Settings every entry was measured with; conditions: what
    conditions.Watch read around the run (power mode, clocks, load, temperatures)."""
    return {"schema": SCHEMA, "kind": KIND, "tool": tool,
            "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), "data": data,
            "settings": {**asdict(settings), "batch_sizes": list(settings.batch_sizes)},
            "device": device, "conditions": conditions, "versions": versions, "results": results}


def read_result(path) -> dict:
    """A result document of edge_bench.py or `mixer-edge bench`: its kind, schema and shape checked."""
    doc = read_json(path, "result file")
    if not isinstance(doc, dict) or doc.get("kind") != KIND:
        raise BadInput(f"{path} is not a mixer-edge bench result (kind "
                       f"{doc.get('kind') if isinstance(doc, dict) else None!r}, expected {KIND!r})")
    if doc.get("schema") != SCHEMA:
        raise BadInput(f"{path} has bench result schema {doc.get('schema')!r}; this mixer-edge reads schema "
                       f"{SCHEMA} (re-run the benchmark with this version)")
    check_document(doc, path, RESULT_SHAPE)
    return doc


# ---- what a result says of the artifact's manifest ------------------------------------------------

def quantization_summary(manifest: dict) -> dict | None:
    """An INT8 artifact's recipe in brief: method, smoothing, the layers kept in float and, when the
    export measured it, their latency cost (`mixer-edge export --max-drop`)."""
    export = manifest.get("export") or {}
    if manifest.get("precision") != "int8" or not isinstance(export, dict):
        return None
    spec, mixed = export.get("spec") or {}, export.get("mixed_precision") or {}
    return {"calib_method": spec.get("calib_method"), "smooth": spec.get("smooth"),
            "float_layers": list(spec.get("float_layers") or []), "max_drop": spec.get("max_drop"),
            "float_layers_latency": mixed.get("latency")}


def validation_summary(manifest: dict) -> dict | None:
    """The export's check against PyTorch FP32 as the manifest records it, never rounded up: status
    passed / undecided (kept; too few images to decide a check) / failed / skipped and what ran it: the artifact's own runtime, a stand-in (Core ML W8A8
    off macOS: the quantized PyTorch model) or nothing. None: the manifest has no check at all."""
    v = manifest.get("validation")
    if not isinstance(v, dict):
        return None
    status = "skipped" if v.get("passed") is None else "passed" if v["passed"] else "failed"
    if status == "passed" and v.get("status") == "undecided":   # kept: the images were too few to decide a check
        status = "undecided"
    by = v.get("checked_by") or (None if status == "skipped" else "not recorded")  # older manifests
    return {"status": status, "checked_by": by, "runner": v.get("runner"), "reason": v.get("skipped")}


# ---- text for people ------------------------------------------------------------------------------

def validation_text(v: dict | None, target: str) -> str:
    """One table cell: the export's check and, unless the artifact's own runtime ran it, by what."""
    if v is None:
        return "checkpoint" if target.startswith("pytorch") else "not recorded"
    status = {"failed": "FAILED", "skipped": "skipped: unchecked",
              "undecided": "undecided: too few images"}.get(v["status"], v["status"])
    return status + {"stand-in": " (stand-in)", "not recorded": " (checker not recorded)"}.get(v["checked_by"], "")


def _f(value, fmt: str) -> str:
    return "-" if value is None else format(value, fmt)


def interval_text(value, ci, fmt: str) -> str:
    """'0.129 [0.127, 0.131]': a figure and its 95% interval; the figure alone where none was
    recorded (results of older versions)."""
    if value is None:
        return "-"
    if not ci or None in ci:
        return format(value, fmt)
    return f"{value:{fmt}} [{ci[0]:{fmt}}, {ci[1]:{fmt}}]"


def spread_text(low, high, fmt: str) -> str:
    return "-" if low is None or high is None else f"{low:{fmt}}-{high:{fmt}}"


def best_throughput(entries) -> dict | None:
    return max(entries or (), key=lambda t: t["images_per_s"] or 0, default=None)


def throughput_text(t: dict | None) -> str:
    return "-" if t is None else f"{interval_text(t['images_per_s'], t.get('images_per_s_ci'), '.0f')} ({t['batch']})"


def check_line(check: dict) -> str:
    """The golden check in one line: 'device check passed: logit SQNR ...' or why it was skipped."""
    return f"device check {check['status']}: " + (check.get("reason") or (
        f"logit SQNR {check['sqnr_db']} dB against FP32 PyTorch on {check['n']} golden images "
        f"(threshold {check['threshold_sqnr_db']} dB)"))


def format_table(doc: dict) -> str:
    """The results as a fixed-width text table for a terminal. Model MB is the memory loading the
    model and its first inference added; the process peak is everything (torch included)."""
    head = ("artifact", "target", "prec", "validation", "size MB", "load s", "first ms", "p50 ms [95% CI]",
            "p10-p90 ms", "img/s [95% CI] (b)", "top-1", "agree", "cosine", "model MB", "process peak RSS MB")
    rows = []
    for r in doc["results"]:
        who = (r["name"], r["target"], r["precision"], validation_text(r.get("validation"), r["target"]))
        if r["status"] != "ok":
            rows.append((*who, f"not run: {r['reason']}"))
            continue
        acc, agr, lat = r["accuracy"] or {}, r["agreement"] or {}, r["latency_ms"]
        rows.append((*who, _f(r["size_bytes"] and r["size_bytes"] / 1e6, ".2f"),
                     _f(r["load_s"], ".2f"), _f(r["first_inference_ms"], ".1f"),
                     interval_text(lat["p50"], lat.get("p50_ci"), ".3f"), spread_text(lat.get("p10"), lat["p90"], ".3f"),
                     throughput_text(best_throughput(r["throughput"])),
                     _f(acc.get("top1"), ".4f"), _f(agr.get("top1_agreement"), ".4f"), _f(agr.get("cosine"), ".5f"),
                     _f(r["model_rss_mb"], ".1f"), _f(r["process_peak_rss_mb"], ".0f")))
    # A not-run row's reason runs past the columns and must not widen them; its first cells count.
    widths = [max(len(str(row[i])) for row in [head, *rows] if i < len(row) - (len(row) < len(head)))
              for i in range(len(head))]
    lines = ["  ".join(str(c).ljust(w) for c, w in zip(head, widths))]
    for row in rows:
        if len(row) < len(head):  # a not-run row: its reason runs on past the columns
            lines.append("  ".join(str(c).ljust(w) for c, w in zip(row[:-1], widths)) + "  " + row[-1])
        else:
            lines.append("  ".join(str(c).ljust(w) for c, w in zip(row, widths)))
    lines += [f"{r['name']}: {check_line(r['device_check'])}" for r in doc["results"]
              if r["status"] == "ok" and r.get("device_check")]
    d = doc["device"]
    lines.append(f"device: {d['name']}: {d['cpu']}, {d['cores_usable']} cores, {' '.join(d['isa']) or 'no ISA flags'}; "
                 f"{d['os']}")
    if doc.get("conditions"):
        lines.append(f"conditions: {summary(doc['conditions'])}")
        lines += [f"warning: {w}" for w in warnings(doc["conditions"])]
    return "\n".join(lines)
