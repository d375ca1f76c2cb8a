"""runtime/timing.py: timed calls after warm-up with their floors, percentiles and the median's
distribution-free interval (against numpy and hand computation), throughput, the measurement
settings, the speed measurement of a runner, and runners timed side by side."""
from __future__ import annotations

import math

import numpy as np
import pytest

from mixer_edge.runtime.errors import BadInput
from mixer_edge.runtime.system import mark_memory
from mixer_edge.runtime.timing import (Settings, latency_stats, measure_speed, median_ci, paired_median_ms,
                                       parse_batch_sizes, throughput_stats, time_calls)


def test_latency_stats_matches_numpy():
    samples = [5.0, 1.0, 3.0, 2.0, 4.0, 10.0, 7.5, 0.5, 2.5, 9.0, 6.0, 3.25]
    s = latency_stats(samples)
    a = np.array(samples)
    assert s["count"] == len(samples)
    assert s["min"] == a.min() and s["max"] == a.max()
    for key, p in (("p10", 10), ("p50", 50), ("p90", 90), ("p99", 99)):
        assert s[key] == pytest.approx(np.percentile(a, p), rel=1e-12)
    assert s["mean"] == pytest.approx(a.mean(), rel=1e-12)
    assert s["std"] == pytest.approx(a.std(), rel=1e-12)
    # n = 12: the 95% interval of the median is (x(3), x(10)) of the sorted samples, coverage
    # 1 - 2 (1 + 12 + 66) / 4096 = 0.961426 (P(B <= 2) = 0.0193 <= 0.025 < P(B <= 3) = 0.0730).
    assert s["p50_ci"] == [2.0, 7.5] and s["p50_ci_coverage"] == pytest.approx(1 - 2 * 79 / 4096, abs=1e-12)
    assert latency_stats([4.0]) == {"min": 4.0, "mean": 4.0, "p10": 4.0, "p50": 4.0, "p90": 4.0, "p99": 4.0,
                                       "max": 4.0, "std": 0.0, "count": 1, "p50_ci": [4.0, 4.0],
                                       "p50_ci_coverage": 0.0}


class FakeClock:
    """Time moves only when the fake runner runs: each call takes the next planned duration."""

    def __init__(self, durations_ms):
        self.now, self.plan, self.calls = 100.0, list(durations_ms), 0

    def __call__(self) -> float:
        return self.now

    def run(self, *_):
        self.now += self.plan[self.calls] / 1e3
        self.calls += 1


def test_time_calls_percentiles_from_a_runner_of_known_duration():
    warmup, timed = 3, [float(v) for v in np.random.default_rng(0).permutation(np.arange(1, 201))]
    clock = FakeClock([250.0] + [99.0] * warmup + timed)
    t = time_calls(clock.run, warmup, iters=len(timed), clock=clock)
    assert clock.calls == 1 + warmup + len(timed)      # first, warm-up, then exactly iters timed
    assert t.first_ms == pytest.approx(250.0)
    assert t.samples_ms == pytest.approx(timed)         # warm-up excluded
    s = latency_stats(t.samples_ms)
    assert (s["p50"], s["p90"], s["p99"]) == pytest.approx(tuple(np.percentile(timed, [50, 90, 99])))
    assert s["min"] == pytest.approx(1.0) and s["max"] == pytest.approx(200.0)


def test_time_calls_by_duration_stops_after_enough_time():
    clock = FakeClock([15.625] * 100)  # binary fractions: the fake time adds up exactly
    t = time_calls(clock.run, 2, duration=0.125, clock=clock)
    assert len(t.samples_ms) == 8 and clock.calls == 1 + 2 + 8  # 8 x 15.625 ms = 125 ms timed
    with pytest.raises(ValueError):
        time_calls(clock.run, 0, iters=3, duration=1.0, clock=clock)


def test_time_calls_floors_in_calls_and_seconds():
    """Timed calls stop only when the count (or duration) and both floors are met."""
    clock = FakeClock([1.0] * 100)
    assert len(time_calls(clock.run, 0, iters=5, min_calls=20, clock=clock).samples_ms) == 20
    clock = FakeClock([15.625] * 100)  # binary fractions: the fake time adds up exactly
    t = time_calls(clock.run, 0, iters=2, min_seconds=0.0625, clock=clock)
    assert len(t.samples_ms) == 4          # 4 x 15.625 ms = 62.5 ms
    clock = FakeClock([15.625] * 100)
    t = time_calls(clock.run, 0, duration=0.03125, min_calls=5, clock=clock)
    assert len(t.samples_ms) == 5          # the duration was met after 2 calls, the floor after 5
    with pytest.raises(ValueError):
        time_calls(clock.run, 0, iters=3, min_calls=0, clock=clock)
    with pytest.raises(BadInput, match="--min-calls"):
        Settings(min_seconds=-1)


def test_time_calls_reads_after_the_first_call_only():
    clock = FakeClock([250.0, 1.0, 1.0, 1.0])
    seen = []
    t = time_calls(clock.run, 1, iters=2, clock=clock, after_first=lambda: seen.append(clock.calls) or "noted")
    assert seen == [1] and t.after_first == "noted" and t.first_ms == pytest.approx(250.0)
    assert t.samples_ms == pytest.approx([1.0, 1.0])   # the hook's time is in no sample


def test_throughput_stats_by_hand():
    """Batch 8, calls of 1..10 ms: median 5.5 ms -> 8000 / 5.5 images/s; the median's interval
    (x(2), x(9)) = (2, 9) ms -> (8000 / 9, 8000 / 2); p10 / p90 = 1.9 / 9.1 ms."""
    t = throughput_stats(8, [float(v) for v in (7, 1, 10, 3, 5, 2, 9, 4, 8, 6)])
    assert t["batch"] == 8 and t["calls"] == 10 and t["seconds"] == pytest.approx(0.055, rel=1e-12)
    assert t["images_per_s"] == pytest.approx(8000 / 5.5, rel=1e-12)
    assert t["images_per_s_ci"] == pytest.approx([8000 / 9, 8000 / 2], rel=1e-12)
    assert t["images_per_s_p10_p90"] == pytest.approx([8000 / 9.1, 8000 / 1.9], rel=1e-12)
    assert t["call_ms"]["p50_ci"] == [2.0, 9.0]


def test_median_ci_by_the_binomial_by_hand():
    """n = 10: P(B <= 1) = 11 / 1024 <= 0.025 < P(B <= 2) = 56 / 1024, so (x(2), x(9)) with
    coverage 1 - 22 / 1024; under 6 samples no interval reaches 95%: (min, max)."""
    xs = [float(v) for v in (10, 3, 7, 1, 9, 2, 8, 4, 6, 5)]
    lo, hi, coverage = median_ci(xs)
    assert (lo, hi) == (2.0, 9.0) and coverage == pytest.approx(1 - 22 / 1024, abs=1e-12)
    lo, hi, coverage = median_ci([3.0, 1.0, 2.0, 5.0, 4.0])
    assert (lo, hi) == (1.0, 5.0) and coverage == pytest.approx(1 - 2 / 32, abs=1e-12)
    n = 2000   # in logs: 0.5 ** 2000 underflows; the interval still straddles the median
    lo, hi, coverage = median_ci(range(n))
    assert lo < n / 2 < hi and 0.95 <= coverage < 0.96 and math.isfinite(coverage)
    with pytest.raises(ValueError):
        median_ci([])


@pytest.mark.parametrize("text, sizes", [("1,8,32", (1, 8, 32)), (" 4 , 2 ", (4, 2)), ("16", (16,))])
def test_parse_batch_sizes(text, sizes):
    assert parse_batch_sizes(text) == sizes


@pytest.mark.parametrize("text", ["", "0", "1,-2", "x", "1.5"])
def test_parse_batch_sizes_refuses(text):
    with pytest.raises(BadInput, match="--batch-sizes"):
        parse_batch_sizes(text)


@pytest.mark.parametrize("kwargs, message", [({"iters": None}, "--iters N or --duration S"),
                                             ({"duration": 2.0}, "--iters N or --duration S"),
                                             ({"warmup": -1}, "--warmup >= 0"), ({"iters": 0}, "--iters >= 1"),
                                             ({"batch_sizes": ()}, "--batch-sizes"),
                                             ({"min_calls": 0}, "--min-calls >= 1")])
def test_settings_refuse_what_cannot_be_measured(kwargs, message):
    with pytest.raises(BadInput, match=message):
        Settings(**kwargs)


def test_measure_speed_counts_every_call():
    """A runner that counts its calls and their batch sizes: the first call, warm-up and the timed
    calls at batch 1 (reused for throughput at 1), then each other batch size with its own floor."""
    calls = []

    def run(x):
        calls.append(len(x))
        return np.zeros((len(x), 3), np.float32)

    x = np.zeros((5, 1, 4, 4), np.float32)
    settings = Settings(warmup=2, iters=6, batch_sizes=(1, 4), min_calls=3, min_seconds=0)
    out = measure_speed(run, x, settings, memory=mark_memory())
    assert calls.count(1) == 1 + 2 + 6 and calls.count(4) == 1 + 1 + 3   # ceil(6 / 4) = 2 < the floor 3
    assert out["latency_batch"] == 1 and out["latency_ms"]["count"] == 6 and out["batch_dynamic"] is True
    assert [(t["batch"], t["calls"]) for t in out["throughput"]] == [(1, 6), (4, 3)]
    assert out["model_rss_mb"] is None or out["model_rss_mb"] >= 0
    calls.clear()
    fixed = measure_speed(run, x, settings, fixed_batch=2)   # a fixed-batch model: its batch only
    assert set(calls) == {2} and fixed["latency_batch"] == 2 and fixed["batch_dynamic"] is False
    with pytest.raises(BadInput, match="no images"):
        measure_speed(run, x[:0], settings)


def test_paired_median_ms_orders_runners_by_their_cost():
    """Two runners of one arithmetic, one doing it 20 times: interleaved medians keep the order
    whatever else the machine does (timings are noisy; the 20x gap is not)."""
    a = np.random.default_rng(0).normal(size=(64, 64))

    def cheap(x):
        return a @ a

    def dear(x):
        for _ in range(20):
            a @ a

    fast, slow = paired_median_ms([cheap, dear], None, rounds=5, calls=3, warmup=2)
    assert 0 < fast < slow
