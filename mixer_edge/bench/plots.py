"""The report's plots: accuracy vs latency (the Pareto front per device circled) and throughput
vs batch size, each with its 95% intervals, drawn on matplotlib's Agg canvas (no display, no
global pyplot state) and returned as PNG bytes.

Made to be read, not decoded: the accuracy axis spans the data and never passes 100%; every point
label sits where it covers no other label or point (a thin line leads back when it had to move
away); the legend names only what is drawn and sits below the plot, where it covers nothing."""
from __future__ import annotations

import io

from ..errors import require
from .rows import Row, devices, pareto_front

PLOTS = {"accuracy": "accuracy_vs_latency.png", "throughput": "throughput_vs_batch.png",
         "profile": "time_by_op_type.png"}
WIDTH_IN, HEIGHT_IN, DPI = 7.5, 4.8, 110
MARKERS = "os^Dv<>P*X"
LABEL_PT = 7           # point-label font size
GAP_PX = 4             # between a point and its label


def _figure():
    require("matplotlib", "report")
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(WIDTH_IN, HEIGHT_IN), dpi=DPI)
    FigureCanvasAgg(fig)  # the Agg canvas: no display, no global pyplot state
    return fig, fig.add_subplot(1, 1, 1)


def _png(fig) -> bytes:
    buf = io.BytesIO()
    fig.savefig(buf, format="png")
    return buf.getvalue()


def _decorate(ax, empty: str | None, xlabel: str, ylabel: str, title: str) -> None:
    """Axis labels, title and grid; `empty`: the message a plot with nothing drawn shows."""
    if empty:
        ax.text(0.5, 0.5, empty, ha="center", va="center", transform=ax.transAxes)
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.set_title(title)
    ax.grid(True, alpha=0.3)


def _layout(fig, ax, ncol: int) -> None:
    """The legend (what the axes hold with a label, nothing else) below the plot, in as many
    columns (up to ncol) as fit the figure's width: the figure grows by its height, so the plot
    keeps its size and the legend covers no point. Then the layout is fixed and drawn once, so
    positions read afterwards (label placement) are final."""
    handles, names = ax.get_legend_handles_labels()
    renderer = fig.canvas.get_renderer()
    room = 0.0
    for cols in range(ncol, 0, -1) if handles else ():
        legend = fig.legend(handles, names, loc="lower center", ncol=cols, fontsize=7, frameon=False)
        if legend.get_window_extent(renderer).width <= fig.bbox.width - 10 or cols == 1:
            room = legend.get_window_extent(renderer).height / DPI + 0.1   # inches
            fig.set_size_inches(WIDTH_IN, HEIGHT_IN + room)
            break
        legend.remove()
    fig.tight_layout(rect=(0, room / (HEIGHT_IN + room), 1, 1))
    fig.canvas.draw()


def _error_bars(values, intervals) -> list:
    """Matplotlib's asymmetric error bars from (low, high) intervals; none where none was recorded."""
    # an interval that does not hold its value (an edited or corrupt result) is drawn as none
    known = [ci if ci and None not in ci and ci[0] <= v <= ci[1] else (v, v) for v, ci in zip(values, intervals)]
    return [[v - lo for v, (lo, _) in zip(values, known)], [hi - v for v, (_, hi) in zip(values, known)]]


# ---- accuracy vs latency ----------------------------------------------------------------------------

def accuracy_limits(values: list[float]) -> tuple[float, float]:
    """The top-1 axis (%): the data with a margin of a tenth of its span (at least half a point, so
    one accuracy still leaves room for labels), never above 100%."""
    lo, hi = min(values), max(values)
    pad = max(0.1 * (hi - lo), 0.5)
    return lo - pad, min(hi + pad, 100.0)


def accuracy_figure(rows: list[Row]):
    """(figure, axes, the point labels): the plot before it becomes a PNG, for plot_accuracy_latency and tests."""
    fig, ax = _figure()
    points = []   # (latency, top-1 %, label, colour, marker radius in pixels)
    for i, dev in enumerate(devices(rows)):
        pts = [r for r in rows if r.device == dev and r.ok and r.top1 is not None and r.p50]
        if not pts:
            continue
        color = f"C{i % 10}"
        x, y = [r.p50 for r in pts], [100 * r.top1 for r in pts]
        ax.errorbar(x, y, xerr=_error_bars(x, [r.p50_ci for r in pts]), fmt="none", ecolor=color, alpha=0.5,
                    capsize=2, zorder=2)
        ax.scatter(x, y, color=color, marker=MARKERS[i % len(MARKERS)], label=dev, zorder=3, clip_on=False)
        front = pareto_front(pts)
        if len(front) >= 2:   # one point is no line: drawn (and named) only where there is one
            ax.step([r.p50 for r in front], [100 * r.top1 for r in front], where="post", color=color, alpha=0.6,
                    linestyle="--", label=f"{dev}: Pareto front")
        ax.scatter([r.p50 for r in front], [100 * r.top1 for r in front], s=140, facecolors="none",
                   edgecolors=color, zorder=4, clip_on=False)
        points += [(r.p50, 100 * r.top1, r.label, color, 9 if r in front else 5) for r in pts]
    if points:
        from matplotlib.ticker import FuncFormatter

        ax.set_xscale("log")   # plain numbers (0.5, 1, 2), not 5x10^-1; between decades only 2, 3 and 5
        ax.xaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:g}"))
        ax.xaxis.set_minor_formatter(FuncFormatter(lambda v, _: f"{v:g}" if f"{v:.0e}"[0] in "235" else ""))
        ax.margins(x=0.08)
        ax.set_ylim(*accuracy_limits([p[1] for p in points]))
    _decorate(ax, None if points else "no row has both accuracy and latency",
              "latency p50 at batch 1 with its 95% interval (ms, log scale)", "top-1 accuracy (%)",
              "accuracy vs latency (circled: Pareto front)")
    _layout(fig, ax, ncol=3)
    return fig, ax, place_labels(ax, points)


def plot_accuracy_latency(rows: list[Row]) -> bytes:
    return _png(accuracy_figure(rows)[0])


def _spots(w: float, h: float, rings: int = 24):
    """Where a w x h label may go, as its lower-left corner relative to its point (pixels), nearest
    first: right, left, above and below the point, then the same a line further up or down."""
    for k in range(rings):
        up, down = GAP_PX + k * (h + 2), -h - GAP_PX - k * (h + 2)
        for dx in (GAP_PX + 2, -w - GAP_PX - 2, -w / 2):
            yield dx, up
            yield dx, down


def place_labels(ax, points) -> list:
    """Each point's label at the first spot (_spots) where it stays inside the axes and overlaps no
    label placed before it and no point's marker; where none is free, the spot that overlaps least.
    Greedy, in order of latency: simple, and ample for the dozens of rows a report has. A label
    moved more than a line away gets a thin line back to its point."""
    from matplotlib.transforms import Bbox

    renderer = ax.figure.canvas.get_renderer()
    frame = ax.get_window_extent(renderer)
    px = [ax.transData.transform((x, y)) for x, y, *_ in points]
    taken = [Bbox.from_bounds(cx - r, cy - r, 2 * r, 2 * r) for (cx, cy), (*_, r) in zip(px, points)]
    labels = []
    for (cx, cy), (x, y, text, color, _) in sorted(zip(px, points), key=lambda p: (p[1][0], -p[1][1])):
        probe = ax.annotate(text, (x, y), fontsize=LABEL_PT)
        w, h = (lambda b: (b.width, b.height))(probe.get_window_extent(renderer))
        probe.remove()
        best, best_cost = None, None
        for dx, dy in _spots(w, h):
            box = Bbox.from_bounds(cx + dx, cy + dy, w, h)
            outside = not (frame.x0 <= box.x0 and box.x1 <= frame.x1 and frame.y0 <= box.y0 and box.y1 <= frame.y1)
            cost = 1e9 * outside + sum(_overlap(box, t) for t in taken)
            if best_cost is None or cost < best_cost:
                best, best_cost = (dx, dy, box), cost
            if cost == 0:
                break
        dx, dy, box = best
        far = abs(dy + h / 2) > 1.5 * h or abs(dx + w / 2) > w
        label = ax.annotate(text, (x, y), xytext=(dx, dy), textcoords="offset pixels", fontsize=LABEL_PT,
                            color=color, ha="left", va="bottom", annotation_clip=False,
                            arrowprops=dict(arrowstyle="-", lw=0.5, color=color, alpha=0.6, shrinkA=0, shrinkB=4)
                            if far else None)
        label.set_in_layout(False)
        taken.append(box)
        labels.append(label)
    return labels


def _overlap(a, b) -> float:
    """The area two boxes share (0: apart)."""
    return max(0.0, min(a.x1, b.x1) - max(a.x0, b.x0)) * max(0.0, min(a.y1, b.y1) - max(a.y0, b.y0))


# ---- throughput vs batch size -------------------------------------------------------------------

def plot_throughput(rows: list[Row]) -> bytes:
    return _png(throughput_figure(rows)[0])


def throughput_figure(rows: list[Row]):
    """(figure, axes): the plot before it becomes a PNG, for plot_throughput and tests."""
    fig, ax = _figure()
    drawn = 0
    for r in (r for r in rows if r.ok):
        pts = sorted((t for t in r.throughput if t["images_per_s"]), key=lambda t: t["batch"])
        if not pts:   # nothing measured: no line, so no legend entry either
            continue
        rates = [t["images_per_s"] for t in pts]
        ax.errorbar([t["batch"] for t in pts], rates, yerr=_error_bars(rates, [t.get("images_per_s_ci") for t in pts]),
                    marker=MARKERS[drawn % len(MARKERS)], capsize=3, label=f"{r.device}: {r.label}")
        drawn += 1
    if drawn:
        ax.set_xscale("log", base=2)
        batches = sorted({t["batch"] for r in rows if r.ok for t in r.throughput if t["images_per_s"]})
        ax.set_xticks(batches, [str(b) for b in batches])
    _decorate(ax, None if drawn else "no throughput measured", "batch size",
              "throughput (images/s, with its 95% interval)", "throughput vs batch size")
    _layout(fig, ax, ncol=3)
    return fig, ax


def plot_profile(rows: list[Row]) -> bytes | None:
    """One bar per profiled artifact: its node time split by op kind (shares, so a fast and a slow
    device read alike); None when no row has a profile."""
    profiled = [r for r in rows if r.profile]
    if not profiled:
        return None
    kinds = list(dict.fromkeys(k["kind"] for r in profiled for k in r.profile["by_kind"]))
    colors = dict(zip(kinds, _palette(len(kinds))))
    fig, ax = _figure()
    names = [f"{r.device} / {r.name}" if len(devices(profiled)) > 1 else r.name for r in profiled]
    for y, r in enumerate(profiled):
        left = 0.0
        for k in r.profile["by_kind"]:
            share = 100 * (k["share"] or 0)
            ax.barh(y, share, left=left, color=colors[k["kind"]], edgecolor="white", linewidth=0.5,
                    label=k["kind"] if k["kind"] not in ax.get_legend_handles_labels()[1] else None)
            left += share
    ax.set_yticks(range(len(profiled)), names, fontsize=7)
    ax.invert_yaxis()   # the first result on top, as the tables list them
    ax.set_xlim(0, 100)
    _decorate(ax, None, "share of the profiled node time (%)", "",
              "Where the time goes, by op type (the runtimes' own profilers)")
    _layout(fig, ax, 4)
    return _png(fig)


def _palette(n: int) -> list:
    from matplotlib import colormaps

    cmap = colormaps["tab10" if n <= 10 else "tab20"]
    return [cmap(i % cmap.N) for i in range(n)]
