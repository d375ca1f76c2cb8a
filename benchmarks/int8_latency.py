"""Batch-1 latency of the default INT8 recipe against the previous one, per target that runs here
(ONNX Runtime, OpenVINO), on T/4 (28x28) and B/16 (224x224), in one run: each pair of artifacts is
timed interleaved (mixer_edge.runtime.timing.paired_median_ms), so machine drift falls on both.

The previous recipe is exported by the previous source tree, unchanged, from the same calibration
images: make it with `git worktree add /tmp/mixer-edge-prev 45c1bde` (the last commit before the
accuracy-first recipe). Weights of B/16 are random (latency does not depend on them); T/4 is the
trained MNIST checkpoint when given.

    git worktree add /tmp/mixer-edge-prev 45c1bde
    python benchmarks/int8_latency.py --previous-src /tmp/mixer-edge-prev --mnist ../shared/data/mnist \\
        --t4 runs/plain-t4 --json benchmarks/results/int8_latency.json
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
import torch

import mixer_edge as me
from mixer_edge.runtime.system import isa_flags
from mixer_edge.runtime.timing import paired_median_ms
from mixer_edge.calibration import make_calibration
from mixer_edge.calibration.sets import save_calibration
from mixer_edge.data.preprocess import Preprocess
from mixer_edge.models.checkpoint import save_checkpoint
from mixer_edge.runtime.backends.openvino import compile_model as ov_compile  # keeps the signal stack valid

LIMIT = 1.05     # the line: no target slower than the previous recipe by more than 5%
TARGETS = ("onnx", "openvino")


def checkpoint_for(variant: str, t4: str | None, tmp: Path) -> Path:
    if variant == "T/4" and t4:
        return Path(t4)
    torch.manual_seed(0)
    size, chans = (224, 3) if variant == "B/16" else (28, 1)
    model = me.create_model(variant, num_classes=10, img_size=size, in_chans=chans)
    torch.nn.init.normal_(model.head.weight, std=0.02)
    return save_checkpoint(tmp / variant.replace("/", ""), model, Preprocess.default(size, chans),
                           [str(i) for i in range(10)], {"note": "random weights, latency only"}).parent


def export(src: str | None, ck: Path, target: str, calib: Path, out: Path) -> Path:
    """`mixer-edge export` from a source tree (None: this one), in a fresh process."""
    code = "import sys; from mixer_edge.cli import main; sys.exit(main(sys.argv[1:]))"
    args = [str(ck.resolve()), "--target", target, "--int8", "--calib-data", str(calib.resolve()), "--out",
            str(out.resolve()), "--keep-invalid"]
    env = {**os.environ, "MIXER_EDGE_PROGRESS": "0", **({"PYTHONPATH": str(Path(src).resolve())} if src else {})}
    done = subprocess.run([sys.executable, "-c", code, "export", *args], capture_output=True, text=True, env=env)
    if done.returncode not in (0, 1) or not (out / f"{target}-int8").is_dir():
        raise RuntimeError(f"export from {src or 'this tree'} failed: {done.stderr[-800:]}")
    return out / f"{target}-int8"


def runner(folder: Path, target: str, threads: int):
    if target == "onnx":
        import onnxruntime as ort

        so = ort.SessionOptions()
        so.intra_op_num_threads = threads
        so.log_severity_level = 3
        # Two sessions timed in turn: with spinning on, the idle one's pool keeps spinning into the
        # other's calls (measured: 0.283 vs 0.227 ms for graphs ONNX Runtime fuses identically).
        so.add_session_config_entry("session.intra_op.allow_spinning", "0")
        s = ort.InferenceSession(str(folder / "model.onnx"), so, providers=["CPUExecutionProvider"])
        return lambda x: s.run(None, {"input": x})[0]
    import openvino as ov

    core = ov.Core()
    c = ov_compile(core, core.read_model(str(folder / "model.xml")), "CPU",
                           {"INFERENCE_PRECISION_HINT": "f32", "INFERENCE_NUM_THREADS": threads})
    r = c.create_infer_request()
    return lambda x: r.infer({0: x})[0]


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--previous-src", required=True, help="a checkout of the previous recipe's source tree")
    ap.add_argument("--mnist", required=True, help="MNIST IDX folder: real calibration images")
    ap.add_argument("--t4", default=None, help="a trained T/4 checkpoint (default: random weights)")
    ap.add_argument("--models", default="T/4,B/16")
    ap.add_argument("--calib-size", type=int, default=64)
    ap.add_argument("--threads", type=int, default=os.cpu_count() or 1)
    ap.add_argument("--json", type=Path, default=None)
    args = ap.parse_args(argv)
    rows = []
    with tempfile.TemporaryDirectory(prefix="int8-latency-") as tmp:
        tmp = Path(tmp)
        for variant in args.models.split(","):
            ck_path = checkpoint_for(variant, args.t4, tmp)
            ck = me.load_checkpoint(ck_path)
            cal = make_calibration(f"mnist:{args.mnist}", ck.preprocess, size=args.calib_size)
            cal_path = save_calibration(cal, tmp / f"calib-{variant.replace('/', '')}.npz")
            x = np.ascontiguousarray(cal.x[:1])
            for target in TARGETS:
                old = export(args.previous_src, ck_path, target, cal_path, tmp / "prev" / variant.replace("/", ""))
                new = export(None, ck_path, target, cal_path, tmp / "new" / variant.replace("/", ""))
                heavy = variant != "T/4"
                ms = paired_median_ms([runner(old, target, args.threads), runner(new, target, args.threads)], x,
                                      rounds=12 if heavy else 40, calls=5 if heavy else 25)
                rows.append({"model": variant, "target": target, "previous_ms": ms[0], "new_ms": ms[1],
                             "ratio": ms[1] / ms[0], "within_limit": ms[1] / ms[0] <= LIMIT})
                r = rows[-1]
                print(f"{variant:5s} {target:9s} previous {r['previous_ms']:9.3f} ms  new {r['new_ms']:9.3f} ms  "
                      f"ratio {r['ratio']:.3f}", flush=True)
    print("\n| model | target | previous recipe p50 | default recipe p50 | ratio | within 5% |\n|---|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['model']} | {r['target']} | {r['previous_ms']:.3f} ms | {r['new_ms']:.3f} ms | {r['ratio']:.3f} | "
              f"{'yes' if r['within_limit'] else 'NO'} |")
    print(f"\nbatch 1, {args.threads} threads, medians of interleaved rounds; CPU flags: {' '.join(isa_flags())}")
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps({"rows": rows, "cpu_flags": isa_flags(), "threads": args.threads}, indent=1))
    return 0 if all(r["within_limit"] for r in rows) else 1


if __name__ == "__main__":
    sys.exit(main())
