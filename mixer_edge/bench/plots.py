"""The report's plots: accuracy vs latency (the Pareto front per device circled) and throughput
vs batch size, each with its 95% intervals, drawn on matplotlib's Agg canvas (no display, no
global pyplot state) and returned as PNG bytes."""
from __future__ import annotations

import io

from ..errors import require
from .rows import Row, devices, pareto_front

PLOTS = {"accuracy": "accuracy_vs_latency.png", "throughput": "throughput_vs_batch.png"}


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
