"""The report reads well (issue 20, point 7): a long not-run reason once, as a numbered footnote;
the accuracy axis within the data and never above 100%; point labels that do not overlap; a
legend that names only what is drawn; stand-in checks apart from own-runtime ones; one batch size
per throughput column; a note on file sizes; the model's memory per row. The browser side (the
page fits 1400 px in Chromium) is in test_bench.py. Result documents here are made by hand."""
from __future__ import annotations

import itertools
import json


from mixer_edge.bench.report import build_report
from mixer_edge.bench.rows import rows_of
from mixer_edge.runtime.results import KIND, SCHEMA, result_entry

PASSED = {"status": "passed", "checked_by": "own runtime", "runner": "onnxruntime", "reason": None}
STAND_IN = {"status": "passed", "checked_by": "stand-in", "runner": "onnxruntime", "reason": None}
# The TensorRT reason a host without a GPU records (589 characters): once per report, not per row.
TRT_WHY = ("needs tensorrt and an NVIDIA GPU: tensorrt is not installed here, the engine is built on the device "
           "(pip install 'mixer-edge[tensorrt]'); no NVIDIA GPU here (no /dev/nvidia0, no Jetson /dev/nvgpu, no "
           "nvidia-smi); export writes the TensorRT-ready ONNX, validated with ONNX Runtime; " + "x" * 300)


def _doc(results, device="dev") -> dict:
    return {"schema": SCHEMA, "kind": KIND, "device": {"name": device}, "versions": {}, "results": results}


def _ok(name, p50, target="onnx", precision="fp32", top1=0.986, batches=(1, 8), validation=PASSED, **kw) -> dict:
    lat = {"p10": p50 * 0.9, "p50": p50, "p90": p50 * 1.2, "p99": p50 * 1.5, "p50_ci": [p50 * 0.97, p50 * 1.03],
           "count": 100}
    thr = [{"batch": b, "images_per_s": 1000 * b / (p50 * (1 + b / 16)), "images_per_s_ci": None} for b in batches]
    return result_entry(**{"name": name, "artifact": name, "target": target, "precision": precision, "status": "ok",
                           "size_bytes": 1_000_000, "latency_ms": lat, "throughput": thr,
                           "accuracy": {"top1": top1, "top5": 1.0, "n": 1000}, "validation": validation,
                           "model_rss_mb": 12.5, "process_peak_rss_mb": 650.0, **kw})


def _not_run(name, reason, target="tensorrt", precision="fp16") -> dict:
    return result_entry(name=name, artifact=name, target=target, precision=precision, status="not-run",
                        reason=reason, size_bytes=1_000_000, validation=STAND_IN)


def _report(tmp_path, *docs):
    paths = []
    for i, doc in enumerate(docs):
        paths.append(tmp_path / f"r{i}.json")
        paths[-1].write_text(json.dumps(doc))
    files = build_report(paths, tmp_path / "report")
    return files, files.markdown.read_text(), files.html.read_text()


def _md_table(md: str, title: str) -> list[str]:
    """The lines of one results table of report.md: its header first."""
    lines = md.split(f"### {title}\n\n", 1)[1].splitlines()
    return lines[:next(i for i, line in enumerate(lines) if not line.startswith("|"))]


def _md_rows(md: str, title: str = "Speed and memory") -> dict:
    """A results table's rows by artifact name (their second cell)."""
    return {line.split(" | ")[1]: line for line in _md_table(md, title) if line.startswith("| dev | ")}


# ---- long reasons: one numbered footnote each ---------------------------------------------------

def test_a_repeated_not_run_reason_is_one_numbered_footnote(tmp_path):
    results = [_ok("eager", 2.0, target="pytorch-eager", validation=None),
               *[_not_run(f"tensorrt-{p}", TRT_WHY, precision=p) for p in ("fp32", "fp16", "int8")],
               _not_run("coreml-fp16", "needs macOS (this is Linux): conversion and structural checks only",
                        target="coreml")]
    _, md, page = _report(tmp_path, _doc(results))
    for text in (md, page):
        assert text.count(TRT_WHY) == 1 and text.count("needs macOS (this is Linux)") == 1
    rows = _md_rows(md)
    assert all("| not run here [1] |" in rows[f"tensorrt-{p}"] for p in ("fp32", "fp16", "int8"))
    assert "| not run here [2] |" in rows["coreml-fp16"]
    assert f"- [1] {TRT_WHY}" in md and "- [2] needs macOS" in md
    assert _md_rows(md, "Accuracy and checks")["tensorrt-fp16"].endswith("| not run here [1] |" + "  |" * 5)
    assert page.count(">not run here [1]</td>") == 6 and f"[1] {TRT_WHY}" in page   # a row in each table


# ---- plots: the accuracy axis, labels, the legend -----------------------------------------------

def _rows(*docs):
    return rows_of(list(docs))


def test_the_accuracy_axis_never_goes_above_100_percent():
    from mixer_edge.bench.plots import accuracy_figure

    for tops in ((1.0, 0.6, 0.95), (0.986,) * 4, (1.0,) * 3, (0.5, 0.52)):
        rows = _rows(_doc([_ok(f"r{i}", 1.0 + i, top1=t) for i, t in enumerate(tops)]))
        _, ax, _ = accuracy_figure(rows)
        lo, hi = ax.get_ylim()
        assert hi <= 100 and lo < 100 * min(tops) <= 100 * max(tops) <= hi, (tops, lo, hi)
        assert hi - 100 * max(tops) <= max(0.1 * (100 * max(tops) - lo), 1.0)   # no empty band above the data


def _overlaps(a, b) -> bool:
    return a.x0 < b.x1 and b.x0 < a.x1 and a.y0 < b.y1 and b.y0 < a.y1


def test_point_labels_do_not_overlap_each_other_and_stay_in_the_axes():
    """Twelve rows at one accuracy (the MNIST report's case: every row 98.60%) and latencies
    crowded into 0.6-1.8 ms, on two devices: every label has its own place inside the plot."""
    from mixer_edge.bench.plots import accuracy_figure

    lat = (0.649, 0.734, 0.878, 1.013, 1.167, 1.69, 1.827, 0.66, 0.7)
    names = [f"{t} {p}" for t, p in itertools.product(("onnx", "openvino", "tensorrt"), ("fp32", "fp16", "int8"))]
    a = _doc([_ok(n, p, target=n.split()[0], precision=n.split()[1]) for n, p in zip(names, lat)], device="laptop")
    b = _doc([_ok(n, 4 * p, target=n.split()[0], precision=n.split()[1], top1=0.985) for n, p in zip(names, lat)],
             device="board")
    fig, ax, labels = accuracy_figure(_rows(a, b))
    from matplotlib.text import Text

    renderer = fig.canvas.get_renderer()
    for t in labels:
        t.update_positions(renderer)
    boxes = [Text.get_window_extent(t, renderer) for t in labels]   # the text, without its leader line
    assert len(boxes) == 18
    inside = ax.get_window_extent(renderer)
    for box in boxes:
        assert inside.x0 <= box.x0 and box.x1 <= inside.x1 and inside.y0 <= box.y0 and box.y1 <= inside.y1
    crossing = [(labels[i].get_text(), labels[j].get_text()) for i, j in itertools.combinations(range(len(boxes)), 2)
                if _overlaps(boxes[i], boxes[j])]
    assert crossing == []


def test_the_legend_names_only_what_is_drawn():
    """A device whose Pareto front is one point draws no front line, so its legend has no line
    for it; a front of two points is drawn and named."""
    from matplotlib.collections import PathCollection
    from matplotlib.lines import Line2D

    from mixer_edge.bench.plots import accuracy_figure

    one = _doc([_ok("best", 1.0, top1=0.99), _ok("worse", 2.0, top1=0.98)], device="one")   # "best" beats both ways
    two = _doc([_ok("fast", 1.0, top1=0.97), _ok("good", 2.0, top1=0.99)], device="two")
    _, ax, _ = accuracy_figure(_rows(one, two))
    handles, names = ax.get_legend_handles_labels()
    assert names == ["one", "two", "two: Pareto front"]
    for h in handles:
        drawn = len(h.get_xdata()) >= 2 if isinstance(h, Line2D) else len(h.get_offsets()) >= 1
        assert isinstance(h, (Line2D, PathCollection)) and drawn
    legend = ax.get_legend() or ax.figure.legends[0]
    assert [t.get_text() for t in legend.get_texts()] == names


# ---- the table: stand-ins, throughput columns, sizes, memory ------------------------------------

def test_stand_in_checks_look_apart_from_own_runtime_passes(tmp_path):
    _, md, page = _report(tmp_path, _doc([_ok("own", 1.0), _ok("stand-in", 1.5, validation=STAND_IN),
                                          _ok("failed", 2.0, validation={**PASSED, "status": "failed"})]))
    rows = _md_rows(md, "Accuracy and checks")
    assert "| passed |" in rows["own"] and "| *passed (stand-in)* |" in rows["stand-in"]
    assert "| **FAILED** |" in rows["failed"]
    assert page.count('<td class="standin">passed (stand-in)</td>') == 1
    assert page.count('<td class="flag">FAILED</td>') == 1 and "<td>passed</td>" in page
    assert "td.standin{" in page and "td.standin{background:#fff0c2" not in page   # its own colour, not the flag's
    for text in (md, page):
        assert "Stand-in: " in text and "not the artifact's own runtime" in text


def test_one_batch_size_per_throughput_column(tmp_path):
    _, md, page = _report(tmp_path, _doc([_ok("a", 1.0, batches=(1, 8)), _ok("b", 2.0, batches=(1, 32))]))
    cols = _md_table(md, "Speed and memory")[0].strip("| ").split(" | ")
    thr = [c for c in cols if c.startswith("img/s")]
    assert thr == ["img/s, batch 1", "img/s, batch 8", "img/s, batch 32"]
    rows = {name: line.strip("| ").split(" | ") for name, line in _md_rows(md).items()}
    at = {b: cols.index(f"img/s, batch {b}") for b in (1, 8, 32)}
    # images/s = 1000 b / (p50 (1 + b / 16)): a at p50 1 ms, b at 2 ms
    assert rows["a"][at[1]] == "941" and rows["a"][at[8]] == "5333" and rows["a"][at[32]] == "-"
    assert rows["b"][at[8]] == "-" and rows["b"][at[32]] == "5333"
    assert "(8)" not in md and "<th>img/s, batch 32</th>" in page


def test_a_note_says_what_the_size_counts(tmp_path):
    _, md, page = _report(tmp_path, _doc([_ok("a", 1.0)]))
    for text in (md, page):
        assert "Size: " in text and "golden.npz" in text and "mixer_edge_runtime" in text
        assert "FP16 artifact can be larger than the FP32 checkpoint" in text


def test_model_memory_is_per_row_not_the_process_peak(tmp_path):
    """Every row's own model_rss_mb, not the process peak all rows share; an older result (no
    model_rss_mb) gets its peak since load minus the memory before load, with a footnote."""
    old = _ok("old", 3.0)
    del old["model_rss_mb"]
    old.update(process_peak_rss_mb=700.0, rss_before_load_mb=640.0, process_peak_rss_scope="since load (process total)")
    _, md, page = _report(tmp_path, _doc([_ok("a", 1.0, model_rss_mb=12.5), _ok("b", 2.0, model_rss_mb=31.0), old]))
    rows = _md_rows(md)
    assert "| 12.5 |" in rows["a"] and "| 31.0 |" in rows["b"] and "| 60.0 [1] |" in rows["old"]
    assert "650" not in md and "- [1] peak since load minus the resident memory before load" in md
    assert ">60.0 [1]</td>" in page


def test_legends_fit_inside_their_figures():
    """Ten throughput lines named by a long device name: the legend takes as many columns as fit the
    figure's width (here one), never running off its edge."""
    from mixer_edge.bench.plots import accuracy_figure, throughput_figure

    long = "ubuntu-workstation-long-name [AMD EPYC 7B13 64-Core Processor]"
    rows = _rows(_doc([_ok(f"r{i}", 1.0 + i / 10, batches=(1, 8, 32)) for i in range(10)], device=long),
                 _doc([_ok("a", 2.0)], device="laptop"))
    for fig, _ in (accuracy_figure(rows)[:2], throughput_figure(rows)):
        renderer = fig.canvas.get_renderer()
        (legend,) = fig.legends
        box, page = legend.get_window_extent(renderer), fig.bbox
        assert page.x0 <= box.x0 and box.x1 <= page.x1 and page.y0 <= box.y0 and box.y1 <= page.y1
        assert len(legend.get_texts()) == len(fig.axes[0].get_legend_handles_labels()[1])
