#!/usr/bin/env python3
"""Peak memory of benchmarking a streamed image folder does not grow with the folder: the device
script (`edge_bench.py --data`) and `mixer-edge bench` score an S/32 ONNX artifact (224 px RGB) on
every image of a folder of 2,000 and of one of 20,000, each run in a fresh process so each peak is
its own. Goal: the two peaks of each tool within 10 % of each other.

    python benchmarks/bench_memory.py [OUT] [--folders runs/stream-mem] [--iters 20]

The folders are benchmarks/stream_memory.py's (224 x 224 RGB PNGs made from the real MNIST test
set, in class sub-folders 0-9); run it first, or give --folders. The model is Mixer-S/32 with
seeded random weights and ten classes (accuracy is chance; only memory is measured here), exported
to ONNX FP32 by `mixer-edge export`, validated on the 2,000-image folder. Peak resident memory is
each child's ru_maxrss; results go to OUT/bench_memory.json (default OUT: runs/bench-mem).
"""
from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path


SIZES = (2_000, 20_000)
ACCEPT = 0.10                            # the two peaks of one tool within 10 % of each other
# Runs one command and prints its peak resident memory (KiB on Linux) as the last line.
PEAK = ("import resource, subprocess, sys; rc = subprocess.run(sys.argv[1:]).returncode; "
        "print(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss); sys.exit(rc)")


def random_s32(folder: Path) -> Path:
    import torch

    import mixer_edge as me
    from mixer_edge.data.preprocess import Preprocess
    from mixer_edge.models.checkpoint import save_checkpoint

    torch.manual_seed(0)
    model = me.create_model("S/32", num_classes=10)
    torch.nn.init.normal_(model.head.weight, std=0.02)  # the zero head would make every logit 0
    save_checkpoint(folder, model, Preprocess.default(224, 3), [str(i) for i in range(10)],
                    {"note": "random weights, for memory only"})
    return folder


def peak_mb(cmd: list) -> tuple[float, float]:
    """(peak resident MiB of cmd in a fresh process, wall seconds)."""
    t0 = time.perf_counter()
    out = subprocess.run([sys.executable, "-c", PEAK, *map(str, cmd)], capture_output=True, text=True)
    if out.returncode:
        sys.exit(f"failed ({out.returncode}): {' '.join(map(str, cmd))}\n{out.stderr[-2000:]}")
    return int(out.stdout.strip().splitlines()[-1]) / 1024, time.perf_counter() - t0


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("out", nargs="?", type=Path, default=Path("runs/bench-mem"))
    ap.add_argument("--folders", type=Path, default=Path("runs/stream-mem"),
                    help="holds n2000/ and n20000/ (benchmarks/stream_memory.py writes them)")
    ap.add_argument("--iters", type=int, default=20, help="timed calls at batch 1 (default 20)")
    args = ap.parse_args(argv)
    folders = {n: args.folders / f"n{n}" for n in SIZES}
    missing = [str(f) for f in folders.values() if not f.is_dir()]
    if missing:
        ap.error(f"missing image folders {missing}: run python benchmarks/stream_memory.py {args.folders} first")
    ckpt, art = args.out / "s32", args.out / "art"
    if not (art / "onnx-fp32" / "manifest.json").is_file():
        random_s32(ckpt)
        subprocess.run(["mixer-edge", "export", ckpt, "--target", "onnx", "--eval-data",
                        f"imagefolder:{folders[SIZES[0]]}", "--out", art, "--force"], check=True)
    artifact = art / "onnx-fp32"
    common = ["--images", "all", "--iters", str(args.iters), "--batch-sizes", "1,8"]
    tools = {"edge_bench.py": lambda data, js: [sys.executable, artifact / "edge_bench.py", artifact, "--data", data,
                                                *common, "--json", js],
             "mixer-edge bench": lambda data, js: ["mixer-edge", "bench", artifact, "--data", data, *common,
                                                   "--json", js]}
    rows = []
    for tool, cmd in tools.items():
        for n in SIZES:
            js = args.out / f"{tool.split()[0].split('.')[0]}-{n}.json"
            mb, wall = peak_mb(cmd(f"imagefolder:{folders[n]}", js))
            scored = json.loads(js.read_text())["results"][0]["accuracy"]["n"]
            rows.append({"tool": tool, "images": n, "scored": scored, "peak_rss_mb": round(mb, 1),
                         "wall_s": round(wall, 1)})
            print(f"{tool:18s} {n:6d} images ({scored} scored): peak RSS {mb:8.1f} MiB  {wall:6.1f} s", flush=True)
    ratios = {}
    for tool in tools:
        small, large = (r["peak_rss_mb"] for r in rows if r["tool"] == tool)
        ratios[tool] = round(large / small, 3)
        verdict = "within" if abs(large / small - 1) <= ACCEPT else "NOT within"
        print(f"{tool}: 20,000 / 2,000 images peak ratio {large / small:.3f} ({verdict} {ACCEPT:.0%})")
    (args.out / "bench_memory.json").write_text(json.dumps({"rows": rows, "ratios": ratios}, indent=1) + "\n")


if __name__ == "__main__":
    main()
