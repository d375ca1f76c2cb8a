"""`mixer-edge report`: bench result JSON from one or many devices -> report.md + report.html.

The HTML is self-contained (inline CSS, PNGs embedded as base64), so it opens offline; the PNGs are
also saved next to it for the Markdown. Per device: the results table with the speed-up over the
PyTorch FP32 (eager) baseline of that device, the conditions each run measured under (power mode,
clocks, load: runtime/conditions.py) with a warning where they make its figures doubtful, the plots
(plots.py) and the recommended artifact per device (rows.recommend).
"""
from __future__ import annotations

import base64
import html
from dataclasses import dataclass
from pathlib import Path

from ..errors import BadInput
from ..runtime.artifact import atomic_write_bytes
from ..runtime.conditions import summary, warnings
from ..runtime.results import interval_text, spread_text, throughput_text, validation_text
from .plots import PLOTS, plot_accuracy_latency, plot_throughput
from .rows import (DEFAULT_BUDGET, Recommendation, Row, devices, label_devices, load_result, recommend, rows_of,
                   within_noise)

# ---- tables -------------------------------------------------------------------------------------

HEADER = ("device", "artifact", "target", "precision", "size MB", "validation", "top-1 %", "top-5 %", "agreement",
          "cosine", "device check", "p50 ms [95% CI]", "p10-p90 ms", "throughput img/s [95% CI] (batch)",
          "vs recommended", "speed-up vs PyTorch FP32", "model memory MB", "images", "conditions")
METRICS_FROM = 6  # the columns from here on are measurements
VALIDATION = 5    # the column marked when a row's export check is not a pass by its own runtime
CONDITIONS = len(HEADER) - 1  # the column marked when its run's conditions make the figures doubtful
NOTES = ("Validation: the export's check against PyTorch FP32. Marked when it failed, was skipped (unchecked), "
         "ran on a stand-in (not the artifact's runtime) or was not recorded; failed and skipped rows are never "
         "recommended.",
         "Latency: batch 1; p50 with its 95% interval (order statistics of the timed calls) and the p10-p90 of the "
         "calls. Throughput: batch / median call time, with the same interval. \"within noise\": the two median "
         "intervals overlap, so neither row is faster; the interval covers call-to-call noise within one run, "
         "and a shared machine can drift more from run to run.",
         "Model memory: resident memory that loading the model and its first inference added; the process's peak "
         "RSS (the runtime, torch and all) is in the result JSON as process_peak_rss_mb.",
         "Images: how many evaluation images gave top-1 and which (held-out: never trained or calibrated on); rows "
         "on different images compare their accuracy only roughly.",
         "Conditions: read before and after each run: power mode and GPU / memory clocks (Jetson, nvidia-smi), "
         "whether clocks were locked (jetson_clocks; elsewhere the CPU governor 'performance'), the hottest "
         "temperature before -> after, the CPU cores other processes used meanwhile. Marked where clocks were not "
         "locked or the machine was busy; the warnings are listed below the table.")


def _f(v, fmt, scale=1.0) -> str:
    return "-" if v is None else format(v * scale, fmt)


def table_cells(r: Row, best: Row | None = None) -> list[str]:
    """One row of the results table; best: the device's recommended row, which latency is compared with."""
    head = [r.device, r.name, r.target, r.precision_text, _f(r.size_bytes, ".2f", 1e-6),
            validation_text(r.validation, r.target)]
    if not r.ok:
        return head + [not_run_text(r)]
    return head + [_f(r.top1, ".2f", 100), _f(r.top5, ".2f", 100), _f(r.agreement, ".4f"), _f(r.cosine, ".5f"),
                   check_text(r), interval_text(r.p50, r.p50_ci, ".3f"), spread_text(r.p10, r.p90, ".3f"),
                   throughput_text(r.best_throughput), versus_text(r, best),
                   "-" if r.speedup is None else f"{r.speedup:.2f}x" + (" (within noise)" if r.speedup_within_noise else ""),
                   _f(r.model_mb, ".1f"), images_text(r.data), summary(r.conditions)]


def images_text(data: dict | None) -> str:
    if not data or data.get("n") is None:
        return "-"
    return f"{data['n']} {data.get('selection') or ''}".strip()


def condition_lines(docs: list[dict]) -> list[tuple[str, str, list[str]]]:
    """(device, the result file's tool, warnings) of every result file with warnings."""
    return [(d["device"]["name"], d.get("tool", "?"), w) for d in docs if (w := warnings(d.get("conditions")))]


def versus_text(r: Row, best: Row | None) -> str:
    """This row's latency against the recommended row's: 'within noise' where the intervals overlap."""
    if best is None or not r.p50:
        return "-"
    if r is best:
        return "recommended"
    if within_noise(r, best):
        return "within noise"
    ratio = r.p50 / best.p50
    return f"{ratio:.2f}x slower" if ratio >= 1 else f"{1 / ratio:.2f}x faster"


def check_text(r: Row) -> str:
    c = r.device_check
    if not c:
        return "-"
    if c["status"] == "skipped":
        return "skipped"
    return f"{'passed' if c['status'] == 'passed' else 'FAILED'} {c['sqnr_db']:.1f} dB (>= {c['threshold_sqnr_db']:g})"


def not_run_text(r: Row) -> str:
    return f"not run here ({r.reason or 'unknown reason'})"


def _md_escape(s: str) -> str:
    return str(s).replace("|", "\\|").replace("\n", " ")


def markdown(docs: list[dict], rows: list[Row], recs: list[Recommendation], budget: float) -> str:
    out = ["# mixer-edge benchmark report", "",
           f"{len(docs)} result file(s), {len(devices(rows))} device(s). Latency is at batch 1; speed-up is the "
           f"p50 latency of PyTorch eager FP32 on the same device divided by the row's (\"within noise\" where "
           f"their intervals overlap). Budget: {budget:g} top-1 points.",
           "", "## Devices", "", "| device | CPU | cores | ISA | OS | versions |", "|---|---|---|---|---|---|"]
    for doc in docs:
        out.append("| " + " | ".join(_md_escape(c) for c in _device_cells(doc)) + " |")
    out += ["", "## Results", "", "| " + " | ".join(HEADER) + " |", "|" + "---|" * len(HEADER)]
    best = {rec.device: rec.row for rec in recs}
    for r in rows:
        cells = [_md_escape(c) for c in table_cells(r, best.get(r.device))]
        if r.flagged:
            cells[VALIDATION] = f"**{cells[VALIDATION]}**"
        if r.ok and r.warned:
            cells[CONDITIONS] = f"**{cells[CONDITIONS]}**"
        cells += [""] * (len(HEADER) - len(cells))
        out.append("| " + " | ".join(cells) + " |")
    out += [""] + [f"- {note}" for note in NOTES]
    warned = condition_lines(docs)
    if warned:
        out += ["", "## Measurement warnings", ""]
        out += [f"- **{_md_escape(dev)}** ({_md_escape(tool)}): {_md_escape(w)}" for dev, tool, ws in warned for w in ws]
    out += float_layer_lines(rows)
    out += ["", "## Recommended artifact per device", ""]
    out += [f"- **{_md_escape(rec.device)}**: " + recommendation_text(rec) for rec in recs]
    out += ["", "## Plots", "", f"![accuracy vs latency]({PLOTS['accuracy']})", "",
            f"![throughput vs batch size]({PLOTS['throughput']})", ""]
    return "\n".join(out)


def float_layer_text(r: Row) -> str | None:
    """What an INT8 row keeps in float and what that costs, as measured at export; None if nothing."""
    q = r.quantization or {}
    layers = q.get("float_layers") or []
    if not layers:
        return None
    lat = q.get("float_layers_latency") or {}
    if "cost_ms" in lat:
        per = ", ".join(f"{k} {v:+.3f} ms" for k, v in lat["per_layer_ms"].items())
        cost = (f"batch-1 latency {lat['all_int8_ms']:.3f} -> {lat['mixed_ms']:.3f} ms at export "
                f"({lat['cost_ratio']:.2f}x; by layer, shared by MACs: {per})")
    else:
        cost = f"latency cost {lat.get('skipped', 'not measured')}"
    why = f"--max-drop {q['max_drop']}" if q.get("max_drop") is not None else "recipe"
    return f"{len(layers)} layer(s) in float ({why}): {', '.join(layers)}; {cost}"


def float_layer_lines(rows: list[Row]) -> list[str]:
    lines = [f"- {_md_escape(r.device)} / {_md_escape(r.name)}: {_md_escape(t)}" for r in rows
             if (t := float_layer_text(r))]
    return ["", "## INT8 layers kept in float", "", *lines] if lines else []


def _device_cells(doc: dict) -> list[str]:
    d, v = doc["device"], doc.get("versions", {})
    runtimes = ", ".join(f"{k} {v[k]}" for k in ("torch", "onnxruntime", "openvino", "tensorrt", "coremltools") if k in v)
    return [d["name"], d.get("cpu", "?"), str(d.get("cores_usable", "?")), " ".join(d.get("isa") or []) or "-",
            d.get("os", "?"), runtimes or "-"]


def recommendation_text(rec: Recommendation) -> str:
    r = rec.row
    if r is None:
        return rec.why
    tie = (f"; within noise of {', '.join(t.name for t in rec.tied)} (median latency intervals overlap), "
           f"chosen by top-1, then size, then name" if rec.tied else "")
    return (f"{r.name} ({r.label}): p50 {interval_text(r.p50, r.p50_ci, '.3f')} ms, top-1 "
            f"{'-' if r.top1 is None else f'{100 * r.top1:.2f}%'}"
            f"{'' if r.speedup is None else f', {r.speedup:.2f}x PyTorch FP32'}; {rec.why}{tie}")


CSS = """body{font-family:system-ui,sans-serif;margin:2em;color:#222}
table{border-collapse:collapse;margin:1em 0;font-size:0.9em}
th,td{border:1px solid #ccc;padding:4px 8px;text-align:right}
th{background:#f2f2f2}td:nth-child(-n+4){text-align:left}
td.notrun{text-align:left;color:#888;font-style:italic}
td.flag{background:#fff0c2;font-weight:bold}
img{max-width:100%;border:1px solid #ddd;margin:0.5em 0}"""


def html_page(docs: list[dict], rows: list[Row], recs: list[Recommendation], budget: float,
              images: dict[str, bytes]) -> str:
    e = html.escape
    parts = ["<!DOCTYPE html>", '<html lang="en"><head><meta charset="utf-8">',
             "<title>mixer-edge benchmark report</title>", f"<style>{CSS}</style></head><body>",
             "<h1>mixer-edge benchmark report</h1>",
             f"<p>{len(docs)} result file(s), {len(devices(rows))} device(s). Latency at batch 1; speed-up = "
             f"PyTorch eager FP32 p50 on the same device / row p50. Budget: {budget:g} top-1 points.</p>",
             "<h2>Devices</h2><table><tr>" + "".join(f"<th>{h}</th>" for h in
                                                      ("device", "CPU", "cores", "ISA", "OS", "versions")) + "</tr>"]
    parts += ["<tr>" + "".join(f"<td>{e(c)}</td>" for c in _device_cells(doc)) + "</tr>" for doc in docs]
    parts.append("</table><h2>Results</h2><table><tr>" + "".join(f"<th>{e(h)}</th>" for h in HEADER) + "</tr>")
    best = {rec.device: rec.row for rec in recs}
    for r in rows:
        cells = table_cells(r, best.get(r.device))
        flag = {VALIDATION: r.flagged, CONDITIONS: r.warned}
        tds = [f'<td class="flag">{e(c)}</td>' if flag.get(i) else f"<td>{e(c)}</td>"
               for i, c in enumerate(cells[:METRICS_FROM] if not r.ok else cells)]
        if not r.ok:
            tds.append(f'<td class="notrun" colspan="{len(HEADER) - METRICS_FROM}">{e(cells[-1])}</td>')
        parts.append("<tr>" + "".join(tds) + "</tr>")
    parts.append("</table><ul>" + "".join(f"<li>{e(note)}</li>" for note in NOTES) + "</ul>")
    warned = condition_lines(docs)
    if warned:
        parts.append("<h2>Measurement warnings</h2><ul>" + "".join(
            f"<li><b>{e(dev)}</b> ({e(tool)}): {e(w)}</li>" for dev, tool, ws in warned for w in ws) + "</ul>")
    kept = [(r, t) for r in rows if (t := float_layer_text(r))]
    if kept:
        parts.append("<h2>INT8 layers kept in float</h2><ul>" +
                     "".join(f"<li><b>{e(r.name)}</b> ({e(r.device)}): {e(t)}</li>" for r, t in kept) + "</ul>")
    parts.append("<h2>Recommended artifact per device</h2><ul>")
    parts += [f"<li><b>{e(rec.device)}</b>: {e(recommendation_text(rec))}</li>" for rec in recs]
    parts.append("</ul><h2>Plots</h2>")
    for key, alt in (("accuracy", "accuracy vs latency, Pareto front circled"), ("throughput", "throughput vs batch size")):
        b64 = base64.b64encode(images[key]).decode("ascii")
        parts.append(f'<p><img alt="{e(alt)}" src="data:image/png;base64,{b64}"></p>')
    parts.append("</body></html>")
    return "\n".join(parts)


# ---- the report ---------------------------------------------------------------------------------

@dataclass(frozen=True)
class ReportFiles:
    markdown: Path
    html: Path
    plots: tuple[Path, ...]
    recommendations: tuple[Recommendation, ...]


def build_report(result_paths, out_dir, budget: float = DEFAULT_BUDGET) -> ReportFiles:
    if budget < 0:
        raise BadInput(f"--budget is in top-1 points and must be >= 0, got {budget}")
    paths = list(result_paths)
    if not paths:
        raise BadInput("report needs at least one result JSON")
    docs = label_devices([load_result(p) for p in paths])  # every file is checked before anything is written
    rows = rows_of(docs)
    recs = recommend(rows, budget)
    images = {"accuracy": plot_accuracy_latency(rows), "throughput": plot_throughput(rows)}
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    plots = []
    for key, png in images.items():
        atomic_write_bytes(out / PLOTS[key], png)
        plots.append(out / PLOTS[key])
    atomic_write_bytes(out / "report.md", markdown(docs, rows, recs, budget).encode())
    atomic_write_bytes(out / "report.html", html_page(docs, rows, recs, budget, images).encode())
    return ReportFiles(out / "report.md", out / "report.html", tuple(plots), tuple(recs))
