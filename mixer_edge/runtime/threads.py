"""How many threads a mixer-edge process computes with, and how its idle threads wait.

Two processes each spinning two OpenMP threads on a 2-core machine starve each other: a demo took
859 s instead of about a minute, and a benchmark's PyTorch baseline ran at torch's default threads
while the artifacts ran at theirs, so "14.62x PyTorch" was about 3.8x. So every mixer-edge process
(training, export, evaluation, the benchmark, the device scripts):

- counts the CPUs it may use: its affinity mask, capped by a container's CPU quota (cgroup v2
  cpu.max, v1 cpu.cfs_quota_us), never the host's core count;
- samples, for a fraction of a second, the CPU time other processes are using now, and leaves
  their whole cores to them (at least one thread is always used);
- on a busy machine makes idle threads sleep instead of spin (OMP_WAIT_POLICY=PASSIVE, set before
  torch loads its OpenMP runtime; ONNX Runtime's spinning off with it), unless the user set the
  policy; on a quiet one leaves the runtimes spinning, which is what makes small models fast
  (use_threads says why);
- prints the choice in one line; `--threads N` overrides it, and the benchmark runs every subject
  (the PyTorch baseline included) with the one recorded count.
"""
from __future__ import annotations

import os
import sys
import time
from dataclasses import dataclass, replace
from pathlib import Path

from .conditions import BUSY_CORES, OthersCPU
from .errors import BadInput
from .system import usable_cpus

SAMPLE_S = 0.25           # long enough for /proc/stat's 10 ms ticks, short enough not to be noticed
WAIT_POLICY = {"OMP_WAIT_POLICY": "PASSIVE"}   # libgomp (torch on Linux) and LLVM / Intel OpenMP read it


@dataclass(frozen=True)
class ThreadChoice:
    threads: int                   # what every runtime of this process is given
    usable: int                    # CPUs this process may use (affinity, quota)
    others_cores: float | None     # other processes' CPU use when the choice was made (None: unknown)
    requested: int | None = None   # --threads or OMP_NUM_THREADS, when given
    source: str = "chosen"         # "--threads", "OMP_NUM_THREADS" or "chosen" (from the usable CPUs and the load)
    wait_policy: str | None = None  # OMP_WAIT_POLICY in force

    @property
    def busy(self) -> bool:
        return self.others_cores is not None and self.others_cores >= BUSY_CORES

    def line(self) -> str:
        if self.requested is not None:
            why = f"from {self.source}; {self.usable} CPUs usable"
        else:
            why = f"{self.usable} CPUs usable by this process"
            if self.others_cores is not None:
                why += f", other processes using {self.others_cores:.1f}"
            why += "; --threads N to choose"
        policy = ", idle threads sleep" if (self.wait_policy or "").upper() == "PASSIVE" else ", idle threads spin"
        return f"threads: {self.threads} ({why}{policy})"


def env_threads(env=None) -> int | None:
    """OMP_NUM_THREADS as a count (its first value; "4,2" is nested parallelism), None if unset or not a count."""
    env = os.environ if env is None else env
    try:
        n = int(env.get("OMP_NUM_THREADS", "").split(",")[0])
    except ValueError:
        return None
    return n if n >= 1 else None


def default_threads() -> int:
    """A runtime's thread count when no option gives one: what this process chose (use_threads
    leaves it in OMP_NUM_THREADS, as the user may), else every usable CPU."""
    return env_threads() or usable_cpus()


def choose_threads(requested: int | None = None, sample_s: float = SAMPLE_S, root: Path = Path("/")) -> ThreadChoice:
    """--threads when given, else OMP_NUM_THREADS when the user set it; else the usable CPUs minus
    the whole cores other processes are using now, at least 1. The others are sampled for sample_s
    seconds (the price of not fighting them) unless the user fixed both the count and the wait
    policy: then nothing is left to decide."""
    if requested is not None and requested < 1:
        raise BadInput(f"--threads must be at least 1, got {requested}")
    source = "--threads" if requested is not None else "OMP_NUM_THREADS" if env_threads() else "chosen"
    requested = requested or env_threads()
    usable = usable_cpus(root)
    others = None
    if sample_s > 0 and (requested is None or "OMP_WAIT_POLICY" not in os.environ):
        watch = OthersCPU()
        time.sleep(sample_s)
        others = watch.cores()
    threads = requested if requested is not None else max(1, usable - int(round(others or 0.0)))
    return ThreadChoice(threads, usable, None if others is None else round(others, 2), requested, source,
                        os.environ.get("OMP_WAIT_POLICY"))


def quiet_waits(env=None) -> dict:
    """Idle OpenMP threads sleep rather than spin: set before torch (or any OpenMP runtime) loads,
    as the runtimes read it once. A policy the user set is kept. Returns what was set."""
    env = os.environ if env is None else env
    added = {k: v for k, v in WAIT_POLICY.items() if k not in env}
    env.update(added)
    return added


def use_threads(requested: int | None = None) -> ThreadChoice:
    """What a command does before its work: the count chosen and left in OMP_NUM_THREADS (read by
    every runtime this process or its children start, and by default_threads()); on a busy machine
    idle threads made to sleep; the choice printed on stderr, a status line like the progress bars
    (stdout keeps results only). torch's own count is the host's to set.

    Why only when busy: spinning is what makes a small model fast on a quiet machine (ONNX Runtime
    on the digits T/2, measured here: 0.23 ms a call spinning, 0.35 ms sleeping) and what starves
    a neighbour on a busy one (a demo beside a two-process busy loop: 3.25x its quiet time before
    this module, 1.68x with one sleeping thread; benchmarks/RESULTS.md section 11). A load that starts after the sample is not seen: set
    OMP_WAIT_POLICY=PASSIVE where that is the rule (shared CI runners)."""
    choice = choose_threads(requested)
    if choice.busy:
        quiet_waits()
        choice = replace(choice, wait_policy=os.environ.get("OMP_WAIT_POLICY"))
    os.environ["OMP_NUM_THREADS"] = str(choice.threads)
    if os.environ.get("RANK", "0") == "0":   # under torchrun, the first process speaks for all
        print(choice.line(), file=sys.stderr)
    return choice
