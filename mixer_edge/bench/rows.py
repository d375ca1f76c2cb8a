"""Bench results as rows, and the recommendation per device: the fastest row whose top-1 is
within --budget points of the best FP32 top-1 (the best of all when no FP32 row has an accuracy).

Every timing carries its spread (p10-p90 of per-call latency, the median's 95% interval), and two
rows whose median intervals overlap are "within noise": neither is called faster, and the
recommendation between them goes to top-1, then size, then name, which do not move from run to
run. A row is recommended only if it ran, its device check did not fail, and its export check
neither failed nor was skipped; a check made by a stand-in is shown as such.

A speed-up is a ratio of two medians and means something only when both were measured on a quiet
machine: a row whose own measurement or whose baseline's was busy (the harness's per-row "load":
other processes used >= runtime/conditions.BUSY_CORES while it was timed) gets none, and neither
does one within noise of its baseline.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, replace

from ..runtime.accuracy import ACCURACY_BUDGET
from ..runtime.conditions import warnings
from ..runtime.results import best_throughput, read_result
from .provenance import check_rows

BASELINE = ("pytorch-eager", "fp32")
DEFAULT_BUDGET = ACCURACY_BUDGET  # top-1 points (runtime/accuracy.py: the one definition)
# Result keys renamed since schema 1 was first written, old name -> new: old files still read.
RENAMED = {"peak_rss_mb": "process_peak_rss_mb", "peak_rss_scope": "process_peak_rss_scope"}


def load_result(path) -> dict:
    """One result document, its kind, schema and shape checked (runtime/results.read_result)."""
    doc = read_result(path)
    if isinstance(doc.get("results"), list):
        doc["results"] = [{RENAMED.get(k, k): v for k, v in r.items()} for r in doc["results"]]
    check_rows(doc, path)   # each row against its artifact, where that is here (an edited manifest: refused)
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
    data: dict | None = None          # the images it was evaluated on (runtime/identity.select's account)
    conditions: dict | None = None    # what its run measured under (runtime/conditions.Watch), per result file
    load: dict | None = None          # other processes' CPU use while this row was timed (None: not recorded)
    speedup_busy: bool = False        # this row or its baseline was timed on a busy machine
    model_mb_derived: bool = False    # model_mb is an older result's process peak since load minus before load
    profile: dict | None = None       # `bench --profile`: time per op type (runtime/profile.summarize), when it ran

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
    def warned(self) -> bool:
        """Its run's conditions make its figures doubtful: clocks not locked, the machine busy."""
        return bool(warnings(self.conditions))

    @property
    def busy(self) -> bool:
        """Timed while other processes used the CPUs (a result without "load" is unknown: not busy)."""
        return (self.load or {}).get("busy") is True

    @property
    def others_cores(self) -> float | None:
        return (self.load or {}).get("others_cores")

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


def hardware(doc: dict) -> tuple:
    """What tells two machines apart when their names agree: CPU, architecture, GPUs, a Mac's chip."""
    d, mac = doc["device"], ((doc.get("conditions") or {}).get("before") or {}).get("macos") or {}
    return d.get("cpu"), d.get("machine"), tuple(d.get("gpus") or ()), mac.get("chip")


def _tag(hw: tuple) -> str:
    cpu, machine, gpus, chip = hw
    return (gpus[0].split(",")[0] if gpus else None) or chip or cpu or machine or "?"   # nvidia-smi: "name, driver, memory"


def label_devices(docs: list[dict]) -> list[dict]:
    """The documents with each device named apart: results of different machines that report the
    same name (two hosts called "ubuntu", a copied default) would otherwise merge into one device,
    one baseline and one recommendation. Such a name gets the machine's GPU, chip or CPU in brackets
    (then a number, if that is shared too); a name with one machine behind it is kept."""
    kinds: dict[str, list] = {}
    for doc in docs:
        seen = kinds.setdefault(doc["device"]["name"], [])
        if hardware(doc) not in seen:
            seen.append(hardware(doc))
    out = []
    for doc in docs:
        name, hw = doc["device"]["name"], hardware(doc)
        if len(kinds[name]) > 1:
            same = [h for h in kinds[name] if _tag(h) == _tag(hw)]
            name = f"{name} [{_tag(hw)}]" + (f" #{same.index(hw) + 1}" if len(same) > 1 else "")
        out.append({**doc, "device": {**doc["device"], "name": name}})
    return out


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
                            p90=lat.get("p90"), validation=r.get("validation"), data=r.get("data"),
                            conditions=doc.get("conditions"), load=_load(r.get("load")),
                            profile=r["profile"] if (r.get("profile") or {}).get("status") == "ok" else None,
                            **_model_memory(r)))
    return _with_speedups(rows)


def _load(load) -> dict | None:
    """The row's "load" as the harness writes it ({"others_cores": cores or None, "busy": bool});
    absent (older results) or of another shape: None, unknown, which counts as not busy."""
    if not isinstance(load, dict):
        return None
    others = load.get("others_cores")
    number = isinstance(others, (int, float)) and not isinstance(others, bool)
    return {"others_cores": float(others) if number else None, "busy": load.get("busy") is True}


def _model_memory(r: dict) -> dict:
    """The model's own memory: model_rss_mb. Results written before it existed recorded only the
    process's peak since load and the resident memory before load; their difference is this row's
    own figure too (larger: it also covers the timed batches), marked as derived. The process
    peak alone is never shown: every row of a process shares most of it (torch, the runtimes)."""
    if r.get("model_rss_mb") is not None:
        return {"model_mb": r["model_rss_mb"]}
    peak, before = r.get("process_peak_rss_mb"), r.get("rss_before_load_mb")
    numbers = all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in (peak, before))
    if numbers and "since load" in str(r.get("process_peak_rss_scope")):
        return {"model_mb": max(peak - before, 0.0), "model_mb_derived": True}
    return {"model_mb": None}


def _with_speedups(rows: list[Row]) -> list[Row]:
    base = {}
    for r in rows:
        if r.ok and (r.target, r.precision) == BASELINE and r.p50:
            base.setdefault(r.device, r)
    return [replace(r, speedup=base[r.device].p50 / r.p50,
                    speedup_within_noise=r is not base[r.device] and within_noise(r, base[r.device]),
                    speedup_busy=r.busy or base[r.device].busy)
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


INT8_WORTH = 1.15   # INT8 must beat the fastest 16-bit float row by this much to be worth its accuracy risk


def int8_verdicts(rows: list[Row]) -> list[tuple[str, str]]:
    """(device, verdict) where a device has both an INT8 row and a 16-bit float row (an FP16
    artifact, or a float artifact run in BF16 / FP16 by its runtime's precision hint): INT8 is not
    worth it where the fastest INT8 row is less than INT8_WORTH times as fast as the fastest 16-bit
    one, which keeps more accuracy at no quantization risk. Medians, and the intervals say when the
    two are within noise of each other."""
    out = []
    for dev in devices(rows):
        timed = [r for r in rows if r.device == dev and r.ok and r.p50 and r.recommendable]
        int8 = [r for r in timed if r.precision == "int8"]
        half = [r for r in timed if r.precision == "fp16" or (r.precision == "fp32" and r.exec_precision in ("bf16", "f16"))]
        if not int8 or not half:
            continue
        q, f = min(int8, key=lambda r: r.p50), min(half, key=lambda r: r.p50)
        speedup = f.p50 / q.p50
        pair = f"{q.name} ({q.label}) p50 {q.p50:.3f} ms against {f.name} ({f.label}) {f.p50:.3f} ms"
        if speedup < INT8_WORTH:
            noise = ", within noise of each other" if within_noise(q, f) else ""
            out.append((dev, f"INT8 is not worth it here: {pair} is {speedup:.2f}x{noise}, under "
                             f"{INT8_WORTH:.2f}x; deploy the 16-bit float one, which keeps more accuracy"))
        else:
            out.append((dev, f"INT8 pays here: {pair} is {speedup:.2f}x (at least {INT8_WORTH:.2f}x)"))
    return out


def excluded_text(rows: list[Row]) -> str:
    """'; not considered: ...' naming the rows that ran but may not be recommended, and why."""
    why = {"failed": "export check failed", "skipped": "export check skipped"}
    out = [f"{r.name} ({'device check failed' if r.check_failed else why[r.validation_status]})"
           for r in rows if r.ok and r.p50 and not r.recommendable]
    return f"; not considered: {', '.join(out)}" if out else ""
