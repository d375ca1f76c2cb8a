"""Side-by-side latency of a few runners in one process: interleaved rounds, so drift of a shared
machine (other jobs, frequency) falls on every runner alike; medians, never means."""
from __future__ import annotations

import time

import numpy as np


def paired_median_ms(runners, x: np.ndarray, rounds: int = 30, calls: int = 10, warmup: int = 20) -> list[float]:
    """Median milliseconds per call of each runner on x, rounds x calls timed calls each."""
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
