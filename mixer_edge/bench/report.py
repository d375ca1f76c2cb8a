"""`mixer-edge report`: bench result JSON from one or many devices -> report.md + report.html.

The HTML is self-contained (inline CSS, PNGs embedded as base64), so it opens offline; the PNGs are
also saved next to it for the Markdown. The results in two tables (accuracy and checks; speed and
memory) with the speed-up over the PyTorch FP32 (eager) baseline of each device, one throughput
column per batch size, the conditions each run measured under (power mode, clocks, load:
runtime/conditions.py) with a warning where they make its figures doubtful, the plots (plots.py)
and the recommended artifact per device (rows.recommend).

Both files say the same and are meant to be read at 1400 px: a text that would repeat in every row
(a not-run reason, a run's conditions) is a numbered footnote below the tables, so no cell holds a
paragraph; a ratio is printed only where it means something (rows.py).
"""
from __future__ import annotations

import base64
import html
from dataclasses import dataclass
from pathlib import Path

from ..errors import BadInput
from ..runtime.artifact import atomic_write_bytes
from ..runtime.conditions import BUSY_CORES, summary, warnings
from ..runtime.results import interval_text, spread_text, validation_text
from .plots import PLOTS, plot_accuracy_latency, plot_profile, plot_throughput
from .rows import (DEFAULT_BUDGET, Recommendation, Row, devices, int8_verdicts, label_devices, load_result,
                   recommend, rows_of, within_noise)

# ---- tables -------------------------------------------------------------------------------------

# Two tables, so each fits a 1400 px window with room to spare: what a row computes (accuracy and
# checks) and how fast and large it runs (speed and memory). Both start with the row's identity.
IDENTITY = ("device", "artifact", "target", "precision")
ACCURACY = IDENTITY + ("size MB", "validation", "top-1 %", "top-5 %", "agreement", "cosine", "device check", "images")
SPEED = ("p50 ms [95% CI]", "p10-p90 ms")            # then a throughput column per batch size, then:
SPEED_TAIL = ("vs recommended", "speed-up vs PyTorch FP32", "model memory MB", "conditions")
NOTES = ("Validation: the export's check against PyTorch FP32. Bold (yellow in the HTML) where it failed, was "
         "skipped (unchecked) or was not recorded; failed and skipped rows are never recommended.",
         "Stand-in: in italics (blue in the HTML), a check that passed on a runtime standing in for the artifact's, "
         "not the artifact's own runtime: a TensorRT artifact's ONNX on ONNX Runtime (its engine is built on the "
         "device), a Core ML W8A8 program's quantized PyTorch twin off macOS. It shows the exported graph computes "
         "the right thing; the device check on the device is what shows its runtime does.",
         "Latency: batch 1; p50 with its 95% interval (order statistics of the timed calls) and the p10-p90 of the "
         "calls. Throughput: one column per batch size, batch / median call time with the same interval; '-': "
         "not measured at that batch.",
         "Speed-up vs PyTorch FP32 and vs recommended: ratios of p50 latencies on one device, printed only where "
         "they mean something. \"within noise\": the two median intervals overlap, so neither row is faster (the "
         "interval covers call-to-call noise within one run; a shared machine can drift more from run to run). "
         f"\"- (busy)\": either row was measured while the machine was busy (other processes used >= {BUSY_CORES:g} "
         "CPU cores while it was timed; marked in the conditions column); a result without that record counts as "
         "not busy.",
         "Size: every file the artifact's manifest lists: the model file(s), golden.npz (the device check's 32 "
         "images, raw and preprocessed as float32, with their logits: about 0.1 MB at 28x28, 20 MB at 224x224 RGB) "
         "and the runtime it ships (mixer_edge_runtime/ and its launchers, about 0.19 MB); a checkpoint row counts "
         "model.safetensors alone. With a small model those fixed 0.2-0.3 MB outweigh what half-width weights "
         "save, so an FP16 artifact can be larger than the FP32 checkpoint. Within one target FP16's model file "
         "is about half of FP32's (OpenVINO's .xml and Core ML's program grow a little: a Convert to f32 after "
         "each FP16 weight, casts at the float32 input and output). A TensorRT INT8 artifact is an ONNX with "
         "float32 weights and Q/DQ nodes (the engine quantizes them when it is built on the device): no smaller "
         "than FP32.",
         "Model memory: per row, the resident memory that loading the model and its first inference added. The "
         "process's peak RSS (the runtime, torch and all: much the same for every row of a run) is in the result "
         "JSON as process_peak_rss_mb and not shown.",
         "Images: how many evaluation images gave top-1 and which (held-out: never trained or calibrated on); rows "
         "on different images compare their accuracy only roughly.",
         "Conditions: the CPU cores other processes used while this row was timed (busy from "
         f"{BUSY_CORES:g}), then its run's footnote: power mode and GPU / memory clocks (Jetson, nvidia-smi), "
         "whether clocks were locked (jetson_clocks; elsewhere the CPU governor 'performance'), the hottest "
         "temperature before -> after, the CPU cores other processes used over the whole run. Marked where the "
         "row was busy, or its run's clocks were not locked or the machine busy; the warnings are listed below.")
DERIVED_MEMORY = ("peak since load minus the resident memory before load: a result written before model memory "
                  "was recorded; it also covers the timed batches")


def _f(v, fmt, scale=1.0) -> str:
    return "-" if v is None else format(v * scale, fmt)


class Footnotes:
    """Texts too long for a cell (a 600-character "not run" reason repeated in every TensorRT row
    ran the table off the page): each said once below the table, numbered in order of first use,
    and referenced from every cell that needs it as "[n]"."""

    def __init__(self):
        self.texts: dict[str, int] = {}

    def ref(self, text: str) -> str:
        return f"[{self.texts.setdefault(text, len(self.texts) + 1)}]"

    def items(self) -> list[tuple[int, str]]:
        return [(n, text) for text, n in self.texts.items()]


@dataclass(frozen=True)
class Table:
    """One table for report.md and report.html alike: per row its cells, whether it ran and the
    marks of its cells (column -> "flag" or "standin"). A row that did not run has the first
    `fixed` cells and one more, "not run here [n]", spanning the rest."""
    title: str
    header: tuple
    rows: list
    fixed: int


def throughput_batches(rows: list[Row]) -> list[int]:
    """Every batch size some row measured throughput at: a column each, so a column never mixes them."""
    return sorted({t["batch"] for r in rows if r.ok for t in r.throughput if t.get("images_per_s")})


def results_tables(rows: list[Row], recs: list[Recommendation]) -> tuple[list[Table], list[tuple[int, str]]]:
    """The accuracy table, the speed table, and the footnotes their cells refer to."""
    batches, notes = throughput_batches(rows), Footnotes()
    speed = IDENTITY + SPEED + tuple(f"img/s, batch {b}" for b in batches) + SPEED_TAIL
    best = {rec.device: rec.row for rec in recs}
    tables = [Table("Accuracy and checks", ACCURACY, [], ACCURACY.index("validation") + 1),
              Table("Speed and memory", speed, [], len(IDENTITY))]
    for r in rows:
        cells = row_cells(r, best.get(r.device), batches, notes)
        marks = {"validation": validation_mark(r), "conditions": "flag" if r.ok and (r.warned or r.busy) else None}
        for t in tables:
            shown = ([cells[h] for h in t.header] if r.ok else
                     [cells[h] for h in t.header[:t.fixed]] + [cells["not run"]])
            t.rows.append((shown, r.ok, {i: marks[h] for i, h in enumerate(t.header[:len(shown)]) if marks.get(h)}))
    return tables, notes.items()


def validation_mark(r: Row) -> str | None:
    """"standin": passed, on a stand-in runtime; "flag": failed, skipped, or checked by nothing known."""
    if not r.flagged:
        return None
    v = r.validation or {}
    return "standin" if v.get("status") == "passed" and v.get("checked_by") == "stand-in" else "flag"


def row_cells(r: Row, best: Row | None, batches: list[int], notes: Footnotes) -> dict[str, str]:
    """A row's cells by column; best: the device's recommended row, which latency is compared with."""
    cells = dict(zip(ACCURACY, [r.device, r.name, r.target, r.precision_text, _f(r.size_bytes, ".2f", 1e-6),
                                validation_text(r.validation, r.target)]))
    if not r.ok:
        return {**cells, "not run": f"not run here {notes.ref(r.reason or 'unknown reason')}"}
    rate = {t["batch"]: t for t in r.throughput if t.get("images_per_s")}
    memory = _f(r.model_mb, ".1f") + (f" {notes.ref(DERIVED_MEMORY)}" if r.model_mb_derived else "")
    return {**cells, "top-1 %": _f(r.top1, ".2f", 100), "top-5 %": _f(r.top5, ".2f", 100),
            "agreement": _f(r.agreement, ".4f"), "cosine": _f(r.cosine, ".5f"), "device check": check_text(r),
            "images": images_text(r.data), "p50 ms [95% CI]": interval_text(r.p50, r.p50_ci, ".3f"),
            "p10-p90 ms": spread_text(r.p10, r.p90, ".3f"),
            **{f"img/s, batch {b}": _rate_text(rate.get(b)) for b in batches},
            "vs recommended": versus_text(r, best), "speed-up vs PyTorch FP32": speedup_text(r),
            "model memory MB": memory, "conditions": conditions_text(r, notes)}


def _rate_text(t: dict | None) -> str:
    return "-" if t is None else interval_text(t["images_per_s"], t.get("images_per_s_ci"), ".0f")


def speedup_text(r: Row) -> str:
    """The speed-up over PyTorch FP32, or why there is none: busy first (the number is not worth
    reading whatever it is), then within noise (it is 1x up to the noise)."""
    if r.speedup is None:
        return "-"
    if r.speedup_busy:
        return "- (busy)"
    return "within noise" if r.speedup_within_noise else f"{r.speedup:.2f}x"


def conditions_text(r: Row, notes: Footnotes) -> str:
    """What other processes used while this row was timed, then its run's conditions as a footnote
    (the same for every row of a result file, so said once)."""
    parts = []
    if r.others_cores is not None:
        load = f"others {r.others_cores:.2f} cores"
        parts.append(f"busy ({load})" if r.busy else load)
    elif r.busy:
        parts.append("busy")
    if r.conditions:
        parts.append(f"run {notes.ref('run conditions: ' + summary(r.conditions))}")
    return "; ".join(parts) or summary(None)


def images_text(data: dict | None) -> str:
    if not data or data.get("n") is None:
        return "-"
    return f"{data['n']} {data.get('selection') or ''}".strip()


def condition_lines(docs: list[dict]) -> list[tuple[str, str, list[str]]]:
    """(device, the result file's tool, warnings) of every result file with warnings."""
    return [(d["device"]["name"], d.get("tool", "?"), w) for d in docs if (w := warnings(d.get("conditions")))]


def versus_text(r: Row, best: Row | None) -> str:
    """This row's latency against the recommended row's: no ratio where either was timed busy or
    the intervals overlap."""
    if best is None or not r.p50:
        return "-"
    if r is best:
        return "recommended"
    if r.busy or best.busy:
        return "- (busy)"
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


def _md_escape(s: str) -> str:
    return str(s).replace("|", "\\|").replace("\n", " ")


INTRO = ("Latency is at batch 1; speed-up is the p50 latency of PyTorch eager FP32 on the same device divided by "
         "the row's, printed only where the two differ beyond noise and neither was measured busy.")
MARKDOWN = {"flag": "**{}**", "standin": "*{}*"}   # a marked cell in report.md (report.html: its CSS class)


def markdown(docs: list[dict], rows: list[Row], recs: list[Recommendation], budget: float) -> str:
    out = ["# mixer-edge benchmark report", "",
           f"{len(docs)} result file(s), {len(devices(rows))} device(s). {INTRO} Budget: {budget:g} top-1 points.",
           "", "## Devices", "", "| device | CPU | cores | ISA | OS | versions |", "|---|---|---|---|---|---|"]
    for doc in docs:
        out.append("| " + " | ".join(_md_escape(c) for c in _device_cells(doc)) + " |")
    tables, footnotes = results_tables(rows, recs)
    out += ["", "## Results"]
    for t in tables:
        out += ["", f"### {t.title}", "", "| " + " | ".join(t.header) + " |", "|" + "---|" * len(t.header)]
        for cells, _, marks in t.rows:
            cells = [MARKDOWN[marks[i]].format(c) if i in marks else c for i, c in enumerate(map(_md_escape, cells))]
            out.append("| " + " | ".join(cells + [""] * (len(t.header) - len(cells))) + " |")
    if footnotes:
        out += ["", "Footnotes:", ""] + [f"- [{n}] {_md_escape(text)}" for n, text in footnotes]
    out += ["", "Notes:", ""] + [f"- {note}" for note in NOTES]
    warned = condition_lines(docs)
    if warned:
        out += ["", "## Measurement warnings", ""]
        out += [f"- **{_md_escape(dev)}** ({_md_escape(tool)}): {_md_escape(w)}" for dev, tool, ws in warned for w in ws]
    out += float_layer_lines(rows)
    profiled = profile_rows(rows)
    if profiled:
        out += ["", "## Where the time goes", "", PROFILE_INTRO, "", "| " + " | ".join(PROFILE_HEADER) + " |",
                "|" + "---|" * len(PROFILE_HEADER)]
        out += ["| " + " | ".join(map(_md_escape, cells)) + " |" for cells in profiled]
        out += ["", f"![time by op type]({PLOTS['profile']})"]
    out += ["", "## Recommended artifact per device", ""]
    out += [f"- **{_md_escape(rec.device)}**: " + recommendation_text(rec) for rec in recs]
    out += [f"- **{_md_escape(dev)}**: {_md_escape(text)}" for dev, text in int8_verdicts(rows)]
    out += ["", "## Plots", "", f"![accuracy vs latency]({PLOTS['accuracy']})", "",
            f"![throughput vs batch size]({PLOTS['throughput']})", ""]
    return "\n".join(out)


PROFILE_INTRO = ("Per op type, from each runtime's own profiler (`mixer-edge bench --profile`), on a separate "
                 "load after the timing; the profiler's overhead is in its node time, so read the shares.")
PROFILE_HEADER = ("device", "artifact", "profiler", "node ms a call", "time by op type",
                  "matmul work in INT8 kernels")


def profile_rows(rows: list[Row]) -> list[list[str]]:
    """The profiled rows as cells: the kinds that took at least 1% of the time, largest first."""
    out = []
    for r in rows:
        p = r.profile
        if not p:
            continue
        kinds = ", ".join(f"{k['kind']} {100 * k['share']:.0f}%" for k in p["by_kind"] if (k["share"] or 0) >= 0.01)
        m = p["matmul"]
        int8 = "-" if m["int8_macs_share"] is None else f"{100 * m['int8_macs_share']:.1f}% of MACs"
        out.append([r.device, r.name, f"{p['source']}, batch {p['batch']}, {p['calls']} calls",
                    f"{p['node_ms']:.3f}", kinds, int8])
    return out


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
            f"{_speedup_clause(r)}; {rec.why}{tie}")


def _speedup_clause(r: Row) -> str:
    """The recommendation's speed-up, by the table's rule (speedup_text): no figure when busy or within noise."""
    text = speedup_text(r)
    if text == "-":
        return ""
    if r.speedup_busy:
        return ", no speed-up vs PyTorch FP32 (measured busy)"
    return ", within noise of PyTorch FP32" if r.speedup_within_noise else f", {text} PyTorch FP32"


# Sized to be read at 1400 px: the tables' cells wrap at spaces and hyphens, so they fit the
# window (test_bench checks it in Chromium); a stand-in check has a colour of its own.
CSS = """body{font-family:system-ui,sans-serif;margin:2em;color:#222}
table{border-collapse:collapse;margin:1em 0;font-size:0.8em}
th,td{border:1px solid #ccc;padding:3px 5px;text-align:right;vertical-align:top}
th{background:#f2f2f2}td:nth-child(-n+4){text-align:left}
td.notrun{text-align:left;color:#888;font-style:italic}
td.flag{background:#fff0c2;font-weight:bold}
td.standin{background:#dde8fb;font-style:italic}
ul.footnotes{font-size:0.85em;color:#444}
img{max-width:100%;border:1px solid #ddd;margin:0.5em 0}"""


def _text(s) -> str:
    """Element text escaped (<, >, &), quotes kept as they are: they are safe outside attributes."""
    return html.escape(str(s), quote=False)


def html_page(docs: list[dict], rows: list[Row], recs: list[Recommendation], budget: float,
              images: dict[str, bytes]) -> str:
    e = _text
    parts = ["<!DOCTYPE html>", '<html lang="en"><head><meta charset="utf-8">',
             "<title>mixer-edge benchmark report</title>", f"<style>{CSS}</style></head><body>",
             "<h1>mixer-edge benchmark report</h1>",
             f"<p>{len(docs)} result file(s), {len(devices(rows))} device(s). {e(INTRO)} Budget: {budget:g} top-1 "
             "points.</p>",
             "<h2>Devices</h2><table><tr>" + "".join(f"<th>{h}</th>" for h in
                                                      ("device", "CPU", "cores", "ISA", "OS", "versions")) + "</tr>"]
    parts += ["<tr>" + "".join(f"<td>{e(c)}</td>" for c in _device_cells(doc)) + "</tr>" for doc in docs]
    tables, footnotes = results_tables(rows, recs)
    parts.append("</table><h2>Results</h2>")
    for t in tables:
        parts.append(f"<h3>{e(t.title)}</h3><table><tr>" + "".join(f"<th>{e(h)}</th>" for h in t.header) + "</tr>")
        for cells, ran, marks in t.rows:
            tds = [f'<td class="{marks[i]}">{e(c)}</td>' if i in marks else f"<td>{e(c)}</td>"
                   for i, c in enumerate(cells if ran else cells[:-1])]
            if not ran:
                tds.append(f'<td class="notrun" colspan="{len(t.header) - t.fixed}">{e(cells[-1])}</td>')
            parts.append("<tr>" + "".join(tds) + "</tr>")
        parts.append("</table>")
    if footnotes:
        parts.append('<p>Footnotes:</p><ul class="footnotes">' +
                     "".join(f"<li>[{n}] {e(text)}</li>" for n, text in footnotes) + "</ul>")
    parts.append("<p>Notes:</p><ul>" + "".join(f"<li>{e(note)}</li>" for note in NOTES) + "</ul>")
    warned = condition_lines(docs)
    if warned:
        parts.append("<h2>Measurement warnings</h2><ul>" + "".join(
            f"<li><b>{e(dev)}</b> ({e(tool)}): {e(w)}</li>" for dev, tool, ws in warned for w in ws) + "</ul>")
    kept = [(r, t) for r in rows if (t := float_layer_text(r))]
    if kept:
        parts.append("<h2>INT8 layers kept in float</h2><ul>" +
                     "".join(f"<li><b>{e(r.name)}</b> ({e(r.device)}): {e(t)}</li>" for r, t in kept) + "</ul>")
    profiled = profile_rows(rows)
    if profiled:
        parts.append(f"<h2>Where the time goes</h2><p>{e(PROFILE_INTRO)}</p><table><tr>" +
                     "".join(f"<th>{e(h)}</th>" for h in PROFILE_HEADER) + "</tr>" +
                     "".join("<tr>" + "".join(f"<td>{e(c)}</td>" for c in cells) + "</tr>" for cells in profiled) +
                     "</table>")
        b64 = base64.b64encode(images["profile"]).decode("ascii")
        parts.append(f'<p><img alt="time by op type" src="data:image/png;base64,{b64}"></p>')
    parts.append("<h2>Recommended artifact per device</h2><ul>")
    parts += [f"<li><b>{e(rec.device)}</b>: {e(recommendation_text(rec))}</li>" for rec in recs]
    parts += [f"<li><b>{e(dev)}</b>: {e(text)}</li>" for dev, text in int8_verdicts(rows)]
    parts.append("</ul><h2>Plots</h2>")
    for key, alt in (("accuracy", "accuracy vs latency, Pareto front circled"), ("throughput", "throughput vs batch size")):
        b64 = base64.b64encode(images[key]).decode("ascii")
        parts.append(f'<p><img alt="{html.escape(alt)}" src="data:image/png;base64,{b64}"></p>')
    parts.append("</body></html>")
    return "\n".join(parts)


# ---- the report ---------------------------------------------------------------------------------

@dataclass(frozen=True)
class ReportFiles:
    markdown: Path
    html: Path
    plots: tuple[Path, ...]
    recommendations: tuple[Recommendation, ...]
    int8_verdicts: tuple[tuple[str, str], ...] = ()   # (device, whether INT8 is worth it over 16-bit float)


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
    profile_png = plot_profile(rows)
    if profile_png is not None:   # only a result with `bench --profile` has one
        images["profile"] = profile_png
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    plots = []
    for key, png in images.items():
        atomic_write_bytes(out / PLOTS[key], png)
        plots.append(out / PLOTS[key])
    atomic_write_bytes(out / "report.md", markdown(docs, rows, recs, budget).encode())
    atomic_write_bytes(out / "report.html", html_page(docs, rows, recs, budget, images).encode())
    return ReportFiles(out / "report.md", out / "report.html", tuple(plots), tuple(recs), tuple(int8_verdicts(rows)))
