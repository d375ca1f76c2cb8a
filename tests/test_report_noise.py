"""Numbers you can trust (issue 10): the median's confidence interval, rows within noise in the
report, the model's memory apart from the process's, and each row's export check shown and obeyed.
Every expected value below is worked out by hand in the comment beside it."""
from __future__ import annotations

import json
import math
import sys

import numpy as np
import pytest

from mixer_edge.bench.report import build_report
from mixer_edge.bench.rows import Row, load_result, recommend, rows_of, within_noise
from mixer_edge.runtime.results import KIND, SCHEMA, result_entry, validation_summary, validation_text
from mixer_edge.runtime.system import mark_memory, model_rss_mb, process_memory
from mixer_edge.runtime.timing import median_ci


# ---- the median's interval ----------------------------------------------------------------------

def _exact_cdf(n: int, k: int) -> float:
    """P(B <= k), B ~ Binomial(n, 1/2), in exact integers."""
    return sum(math.comb(n, j) for j in range(k + 1)) / 2 ** n


def test_median_ci_by_hand():
    # n = 10: P(B <= 1) = 11/1024 = 0.0107 <= 0.025 < P(B <= 2) = 56/1024, so k = 2:
    # (x(2), x(9)) of the sorted samples, coverage 1 - 2 * 11/1024 = 0.978515625.
    lo, hi, cov = median_ci([10, 1, 9, 2, 8, 3, 7, 4, 6, 5])
    assert (lo, hi) == (2.0, 9.0) and cov == pytest.approx(1 - 22 / 1024, abs=1e-12)
    # n = 100: the textbook interval (x(40), x(61)), coverage 96.48% (P(B <= 39) = 0.0176).
    lo, hi, cov = median_ci(np.random.default_rng(0).permutation(np.arange(1, 101)))
    assert (lo, hi) == (40.0, 61.0) and cov == pytest.approx(0.9648, abs=1e-4)
    # n = 5: even (min, max) covers only 1 - 2/32 = 0.9375; n = 1: the sample, coverage 0.
    assert median_ci([3, 1, 2, 5, 4]) == (1.0, 5.0, pytest.approx(0.9375, abs=1e-12))
    assert median_ci([7.0]) == (7.0, 7.0, 0.0)
    with pytest.raises(ValueError):
        median_ci([])


@pytest.mark.parametrize("n", [6, 17, 40, 333, 5000])
def test_median_ci_is_the_narrowest_interval_of_95_percent(n):
    """Against exact integer binomials: x(k) with coverage >= 95%, and k + 1 would fall below it.
    n = 5000 also checks that 0.5 ** n (which underflows) is never needed."""
    lo, hi, cov = median_ci(np.arange(1, n + 1)[::-1])
    k = int(lo)
    assert hi == n + 1 - k
    assert cov == pytest.approx(1 - 2 * _exact_cdf(n, k - 1), abs=1e-9) and cov >= 0.95
    assert k == (n + 1) // 2 or 1 - 2 * _exact_cdf(n, k) < 0.95


def test_median_ci_covers_the_true_median_as_often_as_it_says():
    """4000 seeded samples of 25 exponential latencies (true median ln 2): the share of intervals
    that hold it is the stated coverage 0.9567 within 0.012 (3.7 standard errors of 0.0032)."""
    rng = np.random.default_rng(10)
    hits, cov = 0, None
    for _ in range(4000):
        lo, hi, cov = median_ci(rng.exponential(size=25))
        hits += lo <= math.log(2) <= hi
    assert cov == pytest.approx(1 - 2 * _exact_cdf(25, 7), abs=1e-12)
    assert abs(hits / 4000 - cov) < 0.012


# ---- within noise: the recommendation does not flip ---------------------------------------------

def _row(name, p50, ci, top1=0.95, size=1_000_000, precision="fp32", validation=None, device="dev", **kw):
    return Row(device, name, "onnx", precision, None, "ok", None, size, top1, None, None, None, p50, p50, (), None,
               p50_ci=ci, validation=validation, **kw)


PASSED = {"status": "passed", "checked_by": "own runtime", "runner": "onnxruntime", "reason": None}


def test_overlapping_rows_swap_medians_and_the_recommendation_stays():
    """a (top-1 95.0%) and b (94.9%, within the 0.5-point budget): intervals [1.0, 1.3] and
    [1.1, 1.4] overlap, so whichever median comes out lower, a wins on top-1."""
    one = [_row("a", 1.2, (1.0, 1.3), top1=0.950), _row("b", 1.15, (1.1, 1.4), top1=0.949)]
    two = [_row("a", 1.15, (1.0, 1.3), top1=0.950), _row("b", 1.2, (1.1, 1.4), top1=0.949)]
    for rows in (one, two):
        (rec,) = recommend(rows, 0.5)
        assert rec.row.name == "a" and [r.name for r in rec.tied] == ["b"]
    # Equal top-1: the smaller file, then the name, decide; still the same both ways.
    for p in ((1.0, 1.1), (1.1, 1.0)):
        rows = [_row("big", p[0], (0.9, 1.2), size=2_000_000), _row("small", p[1], (0.95, 1.25), size=500_000)]
        assert recommend(rows)[0].row.name == "small"
        rows = [_row("y", p[0], (0.9, 1.2)), _row("x", p[1], (0.95, 1.25))]
        assert recommend(rows)[0].row.name == "x"


def test_separated_rows_are_not_within_noise():
    """[1.0, 1.1] and [1.2, 1.4] do not overlap: the faster row wins though its top-1 is lower."""
    fast, slow = _row("fast", 1.05, (1.0, 1.1), top1=0.948), _row("slow", 1.3, (1.2, 1.4), top1=0.950)
    assert not within_noise(fast, slow)
    rec = recommend([slow, fast], 0.5)[0]
    assert rec.row.name == "fast" and rec.tied == ()
    assert within_noise(fast, _row("touching", 1.15, (1.1, 1.2)))   # closed intervals: a shared end ties


def _doc(results, device="dev") -> dict:
    return {"schema": SCHEMA, "kind": KIND, "device": {"name": device}, "versions": {}, "results": results}


def _result(name, p50, ci, target="onnx", top1=0.95, validation=PASSED, size=1_000_000, **kw) -> dict:
    lat = {"p10": p50 * 0.9, "p50": p50, "p90": p50 * 1.2, "p99": p50 * 1.5, "p50_ci": list(ci),
           "p50_ci_coverage": 0.96, "count": 100}
    thr = [{"batch": 8, "images_per_s": 8000 / p50, "images_per_s_ci": [8000 / ci[1], 8000 / ci[0]]}]
    return result_entry(**{"name": name, "artifact": name, "target": target, "precision": "fp32",
                              "status": "ok", "size_bytes": size, "latency_ms": lat, "throughput": thr,
                              "accuracy": {"top1": top1, "top5": 1.0, "n": 100}, "validation": validation,
                              "model_rss_mb": 12.5, "process_peak_rss_mb": 650.0, **kw})


def test_report_prints_within_noise(tmp_path):
    """pytorch-eager [1.9, 2.1] and onnx-a [1.95, 2.3] overlap: speed-up 'within noise'; onnx-b
    [1.0, 1.1] is separate from both and the fastest; onnx-c [1.05, 1.2] ties with it and loses
    on top-1 (95.0% against 95.1%)."""
    results = [_result("eager", 2.0, (1.9, 2.1), target="pytorch-eager", validation=None),
               _result("onnx-a", 2.1, (1.95, 2.3)), _result("onnx-b", 1.05, (1.0, 1.1), top1=0.951),
               _result("onnx-c", 1.1, (1.05, 1.2), top1=0.950)]
    path = tmp_path / "r.json"
    path.write_text(json.dumps(_doc(results)))
    files = build_report([path], tmp_path / "report")
    (rec,) = files.recommendations
    assert rec.row.name == "onnx-b" and [r.name for r in rec.tied] == ["onnx-c"]
    for text in (files.markdown.read_text(), files.html.read_text()):
        assert "within noise of onnx-c" in text
        assert "0.95x" not in text                        # onnx-a against eager (2.0 / 2.1): within noise, no figure
        assert "1.050 [1.000, 1.100]" in text             # p50 with its interval
        assert "0.945-1.260" in text                      # onnx-b's p10-p90: 1.05 x 0.9, 1.05 x 1.2
        assert "7619 [7273, 8000]" in text                # 8000 / 1.05, 8000 / 1.1, 8000 / 1.0, batch 8
        assert "12.5" in text                             # the model's memory, not the process's 650
    md = files.markdown.read_text()
    row = {line.split(" | ")[1]: line for line in md.splitlines() if line.startswith("| dev | ")}
    assert "| within noise |" in row["onnx-c"] and "| recommended |" in row["onnx-b"]
    assert "| 1.00x |" in row["eager"] and "| within noise |" in row["onnx-a"]   # speed-up: no number
    assert "1.90x slower" in row["eager"]                 # 2.0 / 1.05, outside the interval


# ---- a busy machine: no speed-up from it ---------------------------------------------------------

def _busy(result: dict, others: float | None, busy: bool) -> dict:
    """The harness's per-row load: other processes' CPU use while the row was timed."""
    return {**result, "load": {"others_cores": others, "busy": busy}}


def test_a_row_measured_busy_gets_no_speed_up(tmp_path):
    """eager [1.9, 2.1] quiet; onnx-a [0.95, 1.05] measured while other processes used 0.8 cores:
    2.0x is not printed, '- (busy)' is, and the row is marked; onnx-b [0.45, 0.55] quiet: 4.00x;
    onnx-c has no load (an older result): unknown, not busy, 2.00x."""
    results = [_busy(_result("eager", 2.0, (1.9, 2.1), target="pytorch-eager", validation=None), 0.01, False),
               _busy(_result("onnx-a", 1.0, (0.95, 1.05)), 0.8, True),
               _busy(_result("onnx-b", 0.5, (0.45, 0.55)), 0.02, False),
               _result("onnx-c", 1.0, (0.97, 1.03))]
    path = tmp_path / "r.json"
    path.write_text(json.dumps(_doc(results)))
    rows = {r.name: r for r in rows_of([load_result(path)])}
    assert rows["onnx-a"].busy and not rows["onnx-c"].busy and rows["onnx-c"].load is None
    assert rows["onnx-a"].speedup_busy and not rows["onnx-b"].speedup_busy
    files = build_report([path], tmp_path / "report")
    md, page = files.markdown.read_text(), files.html.read_text()
    row = {line.split(" | ")[1]: line for line in md.splitlines() if line.startswith("| dev | ")}
    assert "| - (busy) |" in row["onnx-a"] and "2.00x" not in row["onnx-a"]
    assert "| 4.00x |" in row["onnx-b"] and "| 2.00x |" in row["onnx-c"] and "| 1.00x |" in row["eager"]
    assert "| **busy (others 0.80 cores)** |" in row["onnx-a"]
    assert "| others 0.02 cores |" in row["onnx-b"] and "| not recorded |" in row["onnx-c"]
    assert '<td class="flag">busy (others 0.80 cores)</td>' in page
    for text in (md, page):
        assert "measured while the machine was busy" in text     # the table notes say why


def test_a_busy_baseline_gives_no_speed_up_to_any_row(tmp_path):
    results = [_busy(_result("eager", 2.0, (1.9, 2.1), target="pytorch-eager", validation=None), 1.5, True),
               _busy(_result("onnx-a", 1.0, (0.95, 1.05)), 0.0, False),
               _busy(_result("onnx-b", 0.5, (0.45, 0.55)), None, False)]     # unknown: not busy
    path = tmp_path / "r.json"
    path.write_text(json.dumps(_doc(results)))
    files = build_report([path], tmp_path / "report")
    md = files.markdown.read_text()
    row = {line.split(" | ")[1]: line for line in md.splitlines() if line.startswith("| dev | ")}
    assert all("| - (busy) |" in row[n] for n in ("eager", "onnx-a", "onnx-b"))
    assert not any(f"| {x:.2f}x |" in md for x in (1.0, 2.0, 4.0))   # onnx-a vs onnx-b, both quiet: "2.00x slower"
    assert "x PyTorch FP32" not in files.recommendations[0].why and "x PyTorch FP32" not in md


# ---- the export check: shown, marked, obeyed ----------------------------------------------------

def test_validation_summary_never_rounds_up():
    v = {"runner": "onnxruntime", "checked_by": "own runtime"}
    assert validation_summary({"validation": {**v, "passed": True}}) == {
        "status": "passed", "checked_by": "own runtime", "runner": "onnxruntime", "reason": None}
    assert validation_summary({"validation": {**v, "passed": False}})["status"] == "failed"
    skipped = validation_summary({"validation": {"skipped": "needs macOS", "passed": None, "checked_by": None}})
    assert skipped == {"status": "skipped", "checked_by": None, "runner": None, "reason": "needs macOS"}
    old = validation_summary({"validation": {"runner": "x", "passed": True}})   # before checked_by
    assert old["checked_by"] == "not recorded"
    assert validation_summary({}) is None
    texts = [validation_text(validation_summary({"validation": m}), "onnx") for m in
             ({**v, "passed": True}, {"passed": True, "checked_by": "stand-in"}, {**v, "passed": False},
              {"passed": None, "skipped": "why"})]
    assert texts == ["passed", "passed (stand-in)", "FAILED", "skipped: unchecked"]
    assert validation_text(None, "pytorch-eager") == "checkpoint" and validation_text(None, "onnx") == "not recorded"


def test_failed_and_skipped_rows_are_marked_and_never_recommended(tmp_path):
    """The two fastest rows failed or skipped their export check; the stand-in-checked row is
    next fastest and recommended, marked; the row checked by its own runtime is slowest."""
    stand_in = {**PASSED, "checked_by": "stand-in", "runner": "quantized PyTorch model"}
    results = [_result("failed", 0.5, (0.45, 0.55), validation={**PASSED, "status": "failed"}),
               _result("skipped", 0.6, (0.55, 0.65), validation={"status": "skipped", "checked_by": None,
                                                                  "runner": None, "reason": "needs macOS"}),
               _result("stand-in", 1.0, (0.9, 1.1), validation=stand_in),
               _result("own", 2.0, (1.9, 2.1))]
    path = tmp_path / "r.json"
    path.write_text(json.dumps(_doc(results)))
    files = build_report([path], tmp_path / "report")
    (rec,) = files.recommendations
    assert rec.row.name == "stand-in"
    assert "not considered: failed (export check failed), skipped (export check skipped)" in rec.why
    md, page = files.markdown.read_text(), files.html.read_text()
    for marked in ("**FAILED**", "**skipped: unchecked**", "*passed (stand-in)*"):
        assert marked in md
    assert "| passed |" in md and "**passed**" not in md   # the own-runtime pass is not marked
    assert page.count('<td class="flag">') == 2 and page.count('<td class="standin">') == 1
    # Nothing left to recommend: said so, nothing picked.
    only_bad = rows_of([_doc(results[:2])])
    assert recommend(only_bad)[0].row is None


# ---- memory: the model, not the process ---------------------------------------------------------

@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc/self/status")
def test_model_memory_is_what_was_added_since_the_mark():
    """64 MiB allocated and touched after the mark reads as 64 MiB (58-80: allocator and page
    noise); freed, the figure stays (a high-water mark), while the process total is far larger."""
    mark = mark_memory()
    block = np.ones(8 * 2 ** 20)     # 8 Mi float64 = 64 MiB
    assert 58 <= model_rss_mb(mark) <= 80
    del block
    if mark.scoped:
        assert 58 <= model_rss_mb(mark) <= 80
    proc = process_memory(mark)
    assert proc["process_peak_rss_mb"] >= proc["rss_before_load_mb"] + 58
    assert proc["process_peak_rss_scope"].startswith("process total")


def test_old_result_files_still_read(tmp_path):
    """A result written before issue 10: peak_rss_mb, no intervals, no p10, no validation."""
    old = result_entry(name="onnx-fp32", artifact="a", target="onnx", precision="fp32", status="ok",
                          size_bytes=1, latency_ms={"p50": 1.0, "p90": 1.2, "p99": 1.5, "count": 100},
                          throughput=[{"batch": 32, "images_per_s": 900.0, "iters": 4, "p50_ms": 35.0}],
                          accuracy={"top1": 0.9, "top5": 1.0, "n": 10})
    for new in ("model_rss_mb", "process_peak_rss_mb", "process_peak_rss_scope", "validation"):
        del old[new]
    old.update(peak_rss_mb=650.0, peak_rss_scope="since load")
    path = tmp_path / "old.json"
    path.write_text(json.dumps(_doc([old])))
    doc = load_result(path)
    r = doc["results"][0]
    assert r["process_peak_rss_mb"] == 650.0 and "peak_rss_mb" not in r and r["process_peak_rss_scope"] == "since load"
    files = build_report([path], tmp_path / "report")
    md = files.markdown.read_text()
    assert "| 1.000 |" in md and "| 900 |" in md and "img/s, batch 32" in md and "**not recorded**" in md
    assert files.recommendations[0].row.name == "onnx-fp32"


# ---- what checked an export is recorded in its manifest -----------------------------------------

def test_validation_records_what_checked_it():
    from mixer_edge.errors import NotRunnable
    from mixer_edge.export.base import ExportSpec, LoadedRunner
    from mixer_edge.export.reference import ValidationData, check_artifact

    x = np.random.default_rng(0).normal(size=(4, 1, 2, 2)).astype(np.float32)
    logits = x.reshape(4, -1)
    val = ValidationData(x=x, labels=None, source="test", reference=logits)

    class Target:
        def __init__(self, runner):
            self.runner = runner

        def validation_runner(self, artifact):
            if self.runner is None:
                raise NotRunnable("needs macOS")
            return self.runner

    own = LoadedRunner(lambda v: v.reshape(len(v), -1), {"threads": 1}, "onnxruntime")
    ort_for_trt = LoadedRunner(own.run, {"stands_in_for": "the TensorRT engine, not built here"}, "onnxruntime")
    cases = [(Target(own), None, "own runtime"), (Target(None), own, "stand-in"),
             (Target(ort_for_trt), None, "stand-in")]
    for target, stand_in, expected in cases:
        figures, problems, _ = check_artifact(target, None, ExportSpec("fp32"), val, stand_in)
        assert figures["checked_by"] == expected and figures["passed"] is True and not problems
    figures, _, _ = check_artifact(Target(None), None, ExportSpec("fp32"), val)
    assert figures["checked_by"] is None and figures["passed"] is None and figures["skipped"] == "needs macOS"


# ---- devices told apart ---------------------------------------------------------------------------

def test_machines_with_one_name_are_told_apart():
    """Two machines both called "ubuntu" (a Jetson and a laptop) are two devices, each with its own
    baseline and recommendation; one machine's results under one name stay one device."""
    from mixer_edge.bench.rows import label_devices

    def doc(cpu, gpus=None, machine="x86_64", name="ubuntu"):
        return {"device": {"name": name, "cpu": cpu, "machine": machine, "gpus": gpus}, "results": []}

    names = [d["device"]["name"] for d in label_devices([
        doc("ARMv8 Processor rev 1 (v8l)", ["Orin (nvgpu), 540.4.0, 62841 MiB"], "aarch64"), doc("AMD EPYC"),
        doc("AMD EPYC"), doc("Intel Xeon", name="lab"), doc("Intel Xeon", name="lab")])]
    assert names == ["ubuntu [Orin (nvgpu)]", "ubuntu [AMD EPYC]", "ubuntu [AMD EPYC]", "lab", "lab"]
    same_cpu = label_devices([doc("AMD EPYC", machine="x86_64"), doc("AMD EPYC", machine="aarch64")])
    assert [d["device"]["name"] for d in same_cpu] == ["ubuntu [AMD EPYC] #1", "ubuntu [AMD EPYC] #2"]
