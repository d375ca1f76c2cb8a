"""Timing: calls timed after warm-up until enough of them, percentiles and the median's
distribution-free confidence interval, throughput per batch size (what a benchmark measures), and
a few runners timed side by side in interleaved rounds (paired_median_ms)."""
from __future__ import annotations

import math
import time
from dataclasses import dataclass
from typing import Callable, NamedTuple

import numpy as np

from .batching import tile
from .errors import BadInput
from .system import MemoryMark, model_rss_mb


class Timing(NamedTuple):
    samples_ms: list      # one per timed call
    first_ms: float       # the very first call, before warm-up (includes lazy initialisation)
    after_first: object = None  # what the after_first hook returned (read right after the first call)


def time_calls(fn: Callable[[], object], warmup: int, iters: int | None = None, duration: float | None = None,
               clock: Callable[[], float] = time.perf_counter, min_calls: int = 1, min_seconds: float = 0.0,
               after_first: Callable[[], object] | None = None) -> Timing:
    """Call fn once (timed as the first inference; then after_first(), untimed), `warmup` more
    times untimed, then timed calls until there are `iters` of them, or `duration` seconds of them,
    and in either case at least `min_calls` calls and `min_seconds` seconds: a median needs enough
    calls, and a fast model's few calls would all fall in one burst of a shared machine's noise.
    Ctrl-C inside fn propagates: nothing is returned, so nothing is written."""
    if (iters is None) == (duration is None):
        raise ValueError("give exactly one of iters or duration")
    if warmup < 0 or (iters is not None and iters < 1) or (duration is not None and duration <= 0) \
            or min_calls < 1 or min_seconds < 0:
        raise ValueError(f"need warmup >= 0, iters >= 1 or duration > 0, min_calls >= 1, min_seconds >= 0; "
                         f"got {warmup}, {iters}, {duration}, {min_calls}, {min_seconds}")
    calls, seconds = max(iters or 1, min_calls), max(duration or 0.0, min_seconds)
    t0 = clock()
    fn()
    first_ms = (clock() - t0) * 1e3
    noted = None if after_first is None else after_first()
    for _ in range(warmup):
        fn()
    samples = []
    start = clock()
    while True:
        t0 = clock()
        fn()
        t1 = clock()
        samples.append((t1 - t0) * 1e3)
        if len(samples) >= calls and t1 - start >= seconds:
            return Timing(samples, first_ms, noted)


CI_LEVEL = 0.95


def median_ci(samples, level: float = CI_LEVEL) -> tuple:
    """Distribution-free confidence interval of the median: (x(k), x(n+1-k), coverage), the order
    statistics (1-based, sorted) with the largest k whose coverage 1 - 2 P(B <= k-1),
    B ~ Binomial(n, 1/2), is at least `level`. No resampling, so nothing random: n = 10 gives
    (x(2), x(9), 0.9785), n = 100 gives (x(40), x(61), 0.9648). Under 6 samples no interval reaches
    95%: (min, max) with the coverage it has."""
    xs = sorted(float(s) for s in samples)
    n = len(xs)
    if n == 0:
        raise ValueError("no samples")
    alpha = (1 - level) / 2
    log_p = -n * math.log(2)        # log P(B = 0), in logs: 0.5 ** n underflows past n = 1074
    cdf, k = math.exp(log_p), 1     # cdf = P(B <= k - 1)
    while k < (n + 1) // 2:
        log_p += math.log((n - k + 1) / k)          # P(B = k) from P(B = k - 1)
        if cdf + math.exp(log_p) > alpha:
            break
        cdf, k = cdf + math.exp(log_p), k + 1
    return xs[k - 1], xs[n - k], 1 - 2 * cdf


def latency_stats(samples_ms) -> dict:
    """min, mean, p10, p50, p90, p99, max, std (population) and count of latency samples in ms,
    and the median's confidence interval (median_ci) with its coverage. Percentiles interpolate
    linearly between order statistics (numpy's default method)."""
    xs = sorted(float(s) for s in samples_ms)
    n = len(xs)
    if n == 0:
        raise ValueError("no latency samples")

    def pct(p: float) -> float:
        rank = p / 100 * (n - 1)
        lo = math.floor(rank)
        hi = min(lo + 1, n - 1)
        return xs[lo] + (xs[hi] - xs[lo]) * (rank - lo)

    mean = math.fsum(xs) / n
    std = math.sqrt(math.fsum((x - mean) ** 2 for x in xs) / n)
    lo, hi, coverage = median_ci(xs)
    return {"min": xs[0], "mean": mean, "p10": pct(10), "p50": pct(50), "p90": pct(90), "p99": pct(99),
            "max": xs[-1], "std": std, "count": n, "p50_ci": [lo, hi], "p50_ci_coverage": coverage}


def throughput_stats(batch: int, samples_ms) -> dict:
    """Images per second at one batch size: batch / median call time, with the median's interval
    and the p10-p90 of per-call latency carried over (the slower call gives the lower rate)."""
    s = latency_stats(samples_ms)

    def rate(ms: float):
        return batch * 1e3 / ms if ms > 0 else None

    return {"batch": batch, "images_per_s": rate(s["p50"]),
            "images_per_s_ci": [rate(s["p50_ci"][1]), rate(s["p50_ci"][0])],
            "images_per_s_p10_p90": [rate(s["p90"]), rate(s["p10"])],
            "calls": s["count"], "seconds": math.fsum(samples_ms) / 1e3, "call_ms": s}


@dataclass(frozen=True)
class Settings:
    warmup: int = 10
    iters: int | None = 100
    duration: float | None = None   # seconds per measurement, instead of iters
    batch_sizes: tuple = (1, 8, 32)
    eval_batch: int = 64            # batch used to compute accuracy (dynamic-batch artifacts)
    min_calls: int = 20             # every measurement (latency, each batch size) takes at least these
    min_seconds: float = 0.5        # ... and at least this long: see time_calls

    def __post_init__(self):
        if (self.iters is None) == (self.duration is None):
            raise BadInput("give --iters N or --duration S, not both")
        if self.warmup < 0 or (self.iters is not None and self.iters < 1) or \
                (self.duration is not None and self.duration <= 0):
            raise BadInput(f"need --warmup >= 0, --iters >= 1, --duration > 0; got warmup {self.warmup}, "
                           f"iters {self.iters}, duration {self.duration}")
        if self.min_calls < 1 or self.min_seconds < 0:
            raise BadInput(f"need --min-calls >= 1 and --min-time >= 0; got {self.min_calls}, {self.min_seconds}")
        if not self.batch_sizes or min(self.batch_sizes) < 1:
            raise BadInput(f"--batch-sizes must be positive integers, got {list(self.batch_sizes)}")


def parse_batch_sizes(text: str) -> tuple:
    try:
        sizes = tuple(int(s) for s in text.split(",") if s.strip())
    except ValueError:
        raise BadInput(f"--batch-sizes takes comma-separated integers like 1,8,32, got {text!r}") from None
    if not sizes or min(sizes) < 1:
        raise BadInput(f"--batch-sizes takes positive integers like 1,8,32, got {text!r}")
    return sizes


def measure_speed(run, x, settings: Settings, fixed_batch: int | None = None,
                  clock=time.perf_counter, memory: MemoryMark | None = None, batch_range=None) -> dict:
    """First inference, latency at batch 1 (or the fixed batch, or the smallest batch the model
    takes: batch_range (min, max), a TensorRT profile's), throughput per batch size within that
    range; with a memory mark, the model's resident memory read right after the first inference.
    x: model inputs, held or Batches (only the first images are used)."""
    if len(x) == 0:
        raise BadInput("no images to benchmark with")
    lo, hi = batch_range or (1, None)
    lat_batch = fixed_batch or max(1, lo)
    sizes = [b for b in settings.batch_sizes if lo <= b and (hi is None or b <= hi)] or [lat_batch]
    one = tile(x, lat_batch)
    floor = dict(min_calls=settings.min_calls, min_seconds=settings.min_seconds)
    timing = time_calls(lambda: run(one), settings.warmup, settings.iters, settings.duration, clock, **floor,
                        after_first=None if memory is None else (lambda: model_rss_mb(memory)))
    throughput = []
    for b in ([fixed_batch] if fixed_batch else sizes):
        xb = tile(x, b)
        # About as many images per batch size as the latency loop ran, and the same floors.
        iters = None if settings.iters is None else -(-settings.iters // b)
        t = timing if b == lat_batch else time_calls(lambda: run(xb), max(1, -(-settings.warmup // b)),
                                                     iters, settings.duration, clock, **floor)
        throughput.append(throughput_stats(b, t.samples_ms))
    return {"first_inference_ms": timing.first_ms, "latency_batch": lat_batch,
            "latency_ms": latency_stats(timing.samples_ms), "throughput": throughput,
            "batch_dynamic": fixed_batch is None, "batch_range": None if batch_range is None else list(batch_range),
            "model_rss_mb": timing.after_first}


def paired_median_ms(runners, x: np.ndarray, rounds: int = 30, calls: int = 10, warmup: int = 20) -> list[float]:
    """Median milliseconds per call of each runner on x, rounds x calls timed calls each. Rounds are
    interleaved, so drift of a shared machine (other jobs, frequency) falls on every runner alike;
    medians, never means."""
    for run in runners:
        for _ in range(warmup):
            run(x)
    times = [[] for _ in runners]
    for _ in range(rounds):
        for run, out in zip(runners, times):
            for _ in range(calls):
                t0 = time.perf_counter()
                run(x)
                out.append(time.perf_counter() - t0)
    return [float(np.median(t)) * 1e3 for t in times]
