"""`mixer-edge demo` on a quiet machine and beside a busy neighbour, one run after the other.

The neighbour is N processes that each spin one CPU in a busy loop (default 2: a two-thread busy
loop on a 2-core machine, what a CI runner or an edge host running another job looks like).
Prints both wall times, their ratio, the thread count each demo chose and how many of its
benchmark rows were marked busy. Issue 20's goal: the busy demo within 2.5x of the quiet one
(before: about 9x), its rows marked busy, and the quiet one's PyTorch baseline and artifacts at one
thread count.

    python benchmarks/busy_demo.py [--spinners 2] [--out /tmp/busy-demo] [--before SRC]

--before SRC also runs both demos from another checkout's source (PYTHONPATH=SRC, e.g. a
`git worktree` of the commit before issue 20) in the same run, so before / after ratios compare
on one machine at one time.
"""
from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import os
import subprocess
import sys
import time
from pathlib import Path


def spin() -> None:
    while True:
        pass


def demo(out: Path, src: str | None = None) -> dict:
    env = {**os.environ, "MIXER_EDGE_PROGRESS": "0"}
    if src:
        env["PYTHONPATH"] = src
    for k in ("OMP_NUM_THREADS", "OMP_WAIT_POLICY"):   # the demo chooses, as a user's would
        env.pop(k, None)
    t0 = time.perf_counter()
    out.mkdir(parents=True, exist_ok=True)
    # cwd: out, not this checkout: `python -m` puts the working folder first on sys.path, which would
    # shadow --before's PYTHONPATH
    r = subprocess.run([sys.executable, "-m", "mixer_edge.cli", "demo", "--out", str(out / "demo")], env=env,
                       capture_output=True, text=True, cwd=out)
    wall = time.perf_counter() - t0
    if r.returncode != 0:
        sys.exit(f"demo failed ({r.returncode}):\n{r.stderr[-2000:]}")
    threads = next((line for line in r.stderr.splitlines() if line.startswith("threads:")), "threads: ?")
    bench = json.loads((out / "demo" / "bench.json").read_text())
    rows = [e for e in bench["results"] if e["status"] == "ok"]
    counts = {(e.get("runtime") or {}).get("threads") for e in rows}
    busy = sum(bool((e.get("load") or {}).get("busy")) for e in rows)
    return {"wall_s": wall, "threads": threads, "row_threads": sorted(c for c in counts if c is not None),
            "rows": len(rows), "busy_rows": busy}


def pair(name: str, out: Path, spinners: int, src: str | None) -> float:
    """The quiet demo, then the busy one; prints both and returns their ratio."""
    quiet = demo(out / "quiet", src)
    print(f"{name} quiet: {quiet['wall_s']:.1f} s; {quiet['threads']}; rows {quiet['rows']} at threads "
          f"{quiet['row_threads']}; busy rows {quiet['busy_rows']}", flush=True)
    procs = [mp.Process(target=spin, daemon=True) for _ in range(spinners)]
    for p in procs:
        p.start()
    try:
        time.sleep(1.0)
        busy = demo(out / "busy", src)
    finally:
        for p in procs:
            p.terminate()
    ratio = busy["wall_s"] / quiet["wall_s"]
    print(f"{name} busy ({spinners} spinning processes beside it): {busy['wall_s']:.1f} s; {busy['threads']}; "
          f"rows {busy['rows']} at threads {busy['row_threads']}; busy rows {busy['busy_rows']}", flush=True)
    print(f"{name} ratio busy / quiet: {ratio:.2f}x", flush=True)
    return ratio


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--spinners", type=int, default=2, help="busy-loop processes beside the busy demo (default 2)")
    ap.add_argument("--out", default="/tmp/busy-demo", help="scratch folder (default /tmp/busy-demo)")
    ap.add_argument("--before", default=None, metavar="SRC", help="also run the demos from this source checkout")
    ap.add_argument("--before-only", action="store_true", help="with --before: only its two demos")
    args = ap.parse_args()
    out = Path(args.out)
    with open("/proc/cpuinfo") as f:
        flags = next((line.split(":", 1)[1].split() for line in f if line.startswith("flags")), [])
    wanted = ("sse4_2", "avx", "avx2", "fma", "f16c", "avx512f", "avx512bw", "avx512vl", "avx512_vnni", "avx512_bf16")
    print(f"cpu flags: {' '.join(f for f in wanted if f in flags)}; usable CPUs {len(os.sched_getaffinity(0))}")
    after = None if args.before_only else pair("this checkout:", out / "after", args.spinners, None)
    if args.before:
        before = pair(f"before ({args.before}):", out / "before", args.spinners, args.before)
        if after is not None:
            print(f"busy / quiet: {after:.2f}x now, {before:.2f}x before")
    if after is not None:
        print(f"goal: busy within 2.5x of quiet: {'met' if after <= 2.5 else 'NOT met'} ({after:.2f}x)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
