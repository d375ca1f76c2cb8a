"""`mixer-edge report`: bench result JSON from one or many devices -> report.md + report.html.

The HTML is self-contained (inline CSS, PNGs embedded as base64), so it opens offline; the PNGs are
also saved next to it for the Markdown. Per device: the results table with the speed-up over the
PyTorch FP32 (eager) baseline of that device, accuracy vs latency with the Pareto front marked,
throughput vs batch size, and the recommended artifact: the fastest one whose top-1 is within
--budget points of the best FP32 top-1 (the best of all when no FP32 row has an accuracy).

Every timing carries its spread (p10-p90 of per-call latency, the median's 95% interval), and two
rows whose median intervals overlap are "within noise": neither is called faster, and the
recommendation between them goes to top-1, then size, then name, which do not move from run to
run. A row is recommended only if it ran, its device check did not fail, and its export check
neither failed nor was skipped; a check made by a stand-in is shown as such.
"""
from __future__ import annotations

import base64
import html
import io
import math
from dataclasses import dataclass, replace
from pathlib import Path

from ..errors import BadInput, require
from ..runtime.artifact import atomic_write_bytes
from ..runtime.results import (best_throughput, interval_text, read_result, spread_text, throughput_text,
                               validation_text)

BASELINE = ("pytorch-eager", "fp32")
DEFAULT_BUDGET = 0.5  # top-1 points
PLOTS = {"accuracy": "accuracy_vs_latency.png", "throughput": "throughput_vs_batch.png"}
# Result keys renamed since schema 1 was first written, old name -> new: old files still read.
RENAMED = {"peak_rss_mb": "process_peak_rss_mb", "peak_rss_scope": "process_peak_rss_scope"}


def load_result(path) -> dict:
    """One result document, its kind, schema and shape checked (runtime/results.read_result)."""
    doc = read_result(path)
    if isinstance(doc.get("results"), list):
        doc["results"] = [{RENAMED.get(k, k): v for k, v in r.items()} for r in doc["results"]]
    return doc


@dataclass(frozen=True)
class Row:
    device: str
    name: str
    target: str
    precision: str
    exec_precision: str | None       # the runtime's precision hint when it differs from the artifact's
    status: str
    reason: str | None
    size_bytes: int | None
    top1: float | None
    top5: float | None
    agreement: float | None
    cosine: float | None
    p50: float | None
    p99: float | None
    throughput: tuple                # the result's throughput entries (batch, images_per_s, its interval, ...)
    speedup: float | None
    quantization: dict | None = None  # INT8 recipe in brief: float layers and their measured cost
    device_check: dict | None = None  # the golden-set check on this device (passed / failed / skipped)
    p50_ci: tuple | None = None       # the median latency's 95% interval (None: an older result)
    p10: float | None = None
    p90: float | None = None
    model_mb: float | None = None     # resident memory the model's load and first inference added
    validation: dict | None = None    # the export's check (runtime/results.validation_summary)
    speedup_within_noise: bool = False  # the baseline's and this row's median intervals overlap

    @property
    def check_failed(self) -> bool:
        return (self.device_check or {}).get("status") == "failed"

    @property
    def ok(self) -> bool:
        return self.status == "ok"

    @property
    def validation_status(self) -> str | None:
        return (self.validation or {}).get("status")

    @property
    def flagged(self) -> bool:
        """Its export check failed or did not check it with its own runtime (skipped, a stand-in,
        or nothing recorded for an artifact): shown marked."""
        if self.validation is None:
            return not self.target.startswith("pytorch")
        return self.validation_status != "passed" or self.validation.get("checked_by") != "own runtime"

    @property
    def recommendable(self) -> bool:
        """Ran and timed, and nothing says it computes something else: no failed device check and
        an export check that neither failed nor was skipped."""
        return (self.ok and bool(self.p50) and not self.check_failed
                and self.validation_status not in ("failed", "skipped"))

    @property
    def interval(self) -> tuple:
        return self.p50_ci or (self.p50, self.p50)

    @property
    def precision_text(self) -> str:
        return f"{self.precision} ({self.exec_precision} exec)" if self.exec_precision else self.precision

    @property
    def label(self) -> str:
        return f"{self.target} {self.precision_text}"

    @property
    def best_throughput(self) -> dict | None:
        return best_throughput(self.throughput)


def within_noise(a: Row, b: Row) -> bool:
    """The two median-latency intervals overlap: neither row is measurably faster."""
    (alo, ahi), (blo, bhi) = a.interval, b.interval
    return alo <= bhi and blo <= ahi


def rows_of(docs: list[dict]) -> list[Row]:
    rows = []
    for doc in docs:
        device = doc["device"]["name"]
        for r in doc["results"]:
            ok = r["status"] == "ok"
            acc, agr, lat = r.get("accuracy") or {}, r.get("agreement") or {}, r.get("latency_ms") or {}
            rt = r.get("runtime") or {}
            hint = rt.get("applied_precision") or rt.get("precision_hint")  # what ran, over what was asked
            hint = {"float32": "f32", "bfloat16": "bf16", "float16": "f16"}.get(hint, hint)
            lat = lat if ok else {}
            rows.append(Row(device=device, name=r["name"], target=r["target"], precision=r["precision"],
                            exec_precision=hint if hint not in (None, "f32") else None,
                            status=r["status"], reason=r.get("reason"), size_bytes=r.get("size_bytes"),
                            top1=acc.get("top1"), top5=acc.get("top5"), agreement=agr.get("top1_agreement"),
                            cosine=agr.get("cosine"), p50=lat.get("p50"), p99=lat.get("p99"),
                            throughput=tuple(r.get("throughput") or ()), speedup=None,
                            quantization=r.get("quantization"), device_check=r.get("device_check"),
                            p50_ci=tuple(lat["p50_ci"]) if lat.get("p50_ci") else None, p10=lat.get("p10"),
                            p90=lat.get("p90"), model_mb=r.get("model_rss_mb"), validation=r.get("validation")))
    return _with_speedups(rows)


def _with_speedups(rows: list[Row]) -> list[Row]:
    base = {}
    for r in rows:
        if r.ok and (r.target, r.precision) == BASELINE and r.p50:
            base.setdefault(r.device, r)
    return [replace(r, speedup=base[r.device].p50 / r.p50,
                    speedup_within_noise=r is not base[r.device] and within_noise(r, base[r.device]))
            if r.ok and r.p50 and r.device in base else r for r in rows]


def devices(rows: list[Row]) -> list[str]:
    return list(dict.fromkeys(r.device for r in rows))


def pareto_front(rows: list[Row]) -> list[Row]:
    """Rows no other row beats on both: higher top-1 and lower p50 latency (ties kept once)."""
    pts = sorted((r for r in rows if r.ok and r.top1 is not None and r.p50), key=lambda r: (r.p50, -r.top1))
    front, best = [], -1.0
    for r in pts:
        if r.top1 > best:
            front.append(r)
            best = r.top1
    return front


@dataclass(frozen=True)
class Recommendation:
    device: str
    row: Row | None
    why: str
    tied: tuple = ()                 # rows within noise of `row` that the steady criteria ranked below it


def steady_key(r: Row) -> tuple:
    """What breaks a tie on latency: figures that do not move from run to run."""
    return (-r.top1 if r.top1 is not None else math.inf, r.size_bytes if r.size_bytes is not None else math.inf,
            r.name)


def fastest_within_noise(rows: list[Row]) -> tuple:
    """(the fastest row, the rows tied with it): every row whose median interval overlaps the
    fastest one's is tied, and the tie goes to steady_key, so noise that swaps two medians does
    not swap the answer."""
    fastest = min(rows, key=lambda r: (r.p50, r.name))
    tied = sorted((r for r in rows if within_noise(r, fastest)), key=steady_key)
    return tied[0], tuple(tied[1:])


def recommend(rows: list[Row], budget: float = DEFAULT_BUDGET) -> list[Recommendation]:
    """Per device, among the rows that may be recommended (Row.recommendable): the fastest (p50,
    up to noise: fastest_within_noise) within `budget` top-1 points of the best FP32 accuracy."""
    out = []
    for dev in devices(rows):
        ran = [r for r in rows if r.device == dev and r.recommendable]
        scored = [r for r in ran if r.top1 is not None]
        left_out = excluded_text([r for r in rows if r.device == dev])
        if not ran:
            out.append(Recommendation(dev, None, ("nothing that ran may be recommended" if left_out
                                                  else "nothing ran on this device") + left_out))
            continue
        if not scored:
            best, tied = fastest_within_noise(ran)
            out.append(Recommendation(dev, best, "fastest; no accuracy was measured (unlabeled data)" + left_out, tied))
            continue
        fp32 = [r.top1 for r in scored if r.precision == "fp32"]
        ref, what = (max(fp32), "the best FP32") if fp32 else (max(r.top1 for r in scored), "the best")
        floor = ref - budget / 100 - 1e-12
        best, tied = fastest_within_noise([r for r in scored if r.top1 >= floor])
        out.append(Recommendation(dev, best, f"fastest with top-1 within {budget:g} points of {what} "
                                             f"top-1 {100 * ref:.2f}%" + left_out, tied))
    return out


def excluded_text(rows: list[Row]) -> str:
    """'; not considered: ...' naming the rows that ran but may not be recommended, and why."""
    why = {"failed": "export check failed", "skipped": "export check skipped"}
    out = [f"{r.name} ({'device check failed' if r.check_failed else why[r.validation_status]})"
           for r in rows if r.ok and r.p50 and not r.recommendable]
    return f"; not considered: {', '.join(out)}" if out else ""


# ---- plots --------------------------------------------------------------------------------------

def _figure():
    require("matplotlib", "report")
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(7.5, 4.8), dpi=110)
    FigureCanvasAgg(fig)  # the Agg canvas: no display, no global pyplot state
    return fig, fig.add_subplot(1, 1, 1)


def _png(fig) -> bytes:
    buf = io.BytesIO()
    fig.tight_layout()
    fig.savefig(buf, format="png")
    return buf.getvalue()


MARKERS = "os^Dv<>P*X"


def plot_accuracy_latency(rows: list[Row]) -> bytes:
    fig, ax = _figure()
    drawn = False
    for i, dev in enumerate(devices(rows)):
        pts = [r for r in rows if r.device == dev and r.ok and r.top1 is not None and r.p50]
        if not pts:
            continue
        drawn = True
        color = f"C{i % 10}"
        ax.errorbar([r.p50 for r in pts], [100 * r.top1 for r in pts], xerr=_error_bars([r.p50 for r in pts],
                    [r.p50_ci for r in pts]), fmt="none", ecolor=color, alpha=0.5, capsize=2, zorder=2)
        ax.scatter([r.p50 for r in pts], [100 * r.top1 for r in pts], color=color, marker=MARKERS[i % len(MARKERS)],
                   label=dev, zorder=3)
        for j, r in enumerate(sorted(pts, key=lambda r: r.p50)):  # staggered: equal accuracies share a line
            ax.annotate(r.label, (r.p50, 100 * r.top1), textcoords="offset points",
                        xytext=(4, 4 + 9 * (j % 3) * (1 if i % 2 == 0 else -1)), fontsize=7, color=color)
        front = pareto_front(pts)
        ax.step([r.p50 for r in front], [100 * r.top1 for r in front], where="post", color=color, alpha=0.6,
                linestyle="--", label=f"{dev}: Pareto front")
        ax.scatter([r.p50 for r in front], [100 * r.top1 for r in front], s=140, facecolors="none",
                   edgecolors=color, zorder=4)
    if drawn:
        ax.set_xscale("log")
        ax.legend(fontsize=8)
    return _finish(fig, ax, None if drawn else "no row has both accuracy and latency",
                   "latency p50 at batch 1 with its 95% interval (ms, log scale)", "top-1 accuracy (%)",
                   "accuracy vs latency (circled: Pareto front)")


def _finish(fig, ax, empty: str | None, xlabel: str, ylabel: str, title: str) -> bytes:
    """Axis labels, title and grid, then the PNG; `empty`: the message a plot with nothing drawn shows."""
    if empty:
        ax.text(0.5, 0.5, empty, ha="center", va="center", transform=ax.transAxes)
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.set_title(title)
    ax.grid(True, alpha=0.3)
    return _png(fig)


def _error_bars(values, intervals) -> list:
    """Matplotlib's asymmetric error bars from (low, high) intervals; none where none was recorded."""
    known = [ci if ci and None not in ci else (v, v) for v, ci in zip(values, intervals)]
    return [[v - lo for v, (lo, _) in zip(values, known)], [hi - v for v, (_, hi) in zip(values, known)]]


def plot_throughput(rows: list[Row]) -> bytes:
    fig, ax = _figure()
    lines = [r for r in rows if r.ok and r.throughput]
    for i, r in enumerate(lines):
        pts = sorted((t for t in r.throughput if t["images_per_s"]), key=lambda t: t["batch"])
        rates = [t["images_per_s"] for t in pts]
        ax.errorbar([t["batch"] for t in pts], rates, yerr=_error_bars(rates, [t.get("images_per_s_ci") for t in pts]),
                    marker=MARKERS[i % len(MARKERS)], capsize=3, label=f"{r.device}: {r.label}")
    if lines:
        ax.set_xscale("log", base=2)
        batches = sorted({t["batch"] for r in lines for t in r.throughput})
        ax.set_xticks(batches, [str(b) for b in batches])
        ax.legend(fontsize=7)
    return _finish(fig, ax, None if lines else "no throughput measured", "batch size",
                   "throughput (images/s, with its 95% interval)", "throughput vs batch size")


# ---- tables -------------------------------------------------------------------------------------

HEADER = ("device", "artifact", "target", "precision", "size MB", "validation", "top-1 %", "top-5 %", "agreement",
          "cosine", "device check", "p50 ms [95% CI]", "p10-p90 ms", "throughput img/s [95% CI] (batch)",
          "vs recommended", "speed-up vs PyTorch FP32", "model memory MB")
METRICS_FROM = 6  # the columns from here on are measurements
VALIDATION = 5    # the column marked when a row's export check is not a pass by its own runtime
NOTES = ("Validation: the export's check against PyTorch FP32. Marked when it failed, was skipped (unchecked), "
         "ran on a stand-in (not the artifact's runtime) or was not recorded; failed and skipped rows are never "
         "recommended.",
         "Latency: batch 1; p50 with its 95% interval (order statistics of the timed calls) and the p10-p90 of the "
         "calls. Throughput: batch / median call time, with the same interval. \"within noise\": the two median "
         "intervals overlap, so neither row is faster; the interval covers call-to-call noise within one run, "
         "and a shared machine can drift more from run to run.",
         "Model memory: resident memory that loading the model and its first inference added; the process's peak "
         "RSS (the runtime, torch and all) is in the result JSON as process_peak_rss_mb.")


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
                   _f(r.model_mb, ".1f")]


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
        cells += [""] * (len(HEADER) - len(cells))
        out.append("| " + " | ".join(cells) + " |")
    out += [""] + [f"- {note}" for note in NOTES]
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
        tds = [f'<td class="flag">{e(c)}</td>' if i == VALIDATION and r.flagged else f"<td>{e(c)}</td>"
               for i, c in enumerate(cells[:METRICS_FROM] if not r.ok else cells)]
        if not r.ok:
            tds.append(f'<td class="notrun" colspan="{len(HEADER) - METRICS_FROM}">{e(cells[-1])}</td>')
        parts.append("<tr>" + "".join(tds) + "</tr>")
    parts.append("</table><ul>" + "".join(f"<li>{e(note)}</li>" for note in NOTES) + "</ul>")
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
    docs = [load_result(p) for p in paths]  # every file is checked before anything is written
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
