#!/usr/bin/env python3
"""Quantization-aware training where post-training INT8 fails: a case, the best post-training
export per target over every range estimator, then `mixer-edge train --qat` and its exports.

The case: a trained checkpoint given "massive activations" in the channel-mixing MLPs, the 32 most
important hidden units per block (mean |GELU output| x fc2 column norm) with their fc1 row (weights
and bias) scaled up 300-1000x and their fc2 column scaled down by the same factor. GELU(k z) / k is GELU(z) for |z| away from 0 and ReLU(z) near it, so the
float model keeps its accuracy (printed), but those units now dominate the per-tensor range of fc2's
input: neither smoothing (a LayerNorm fold: there is no LayerNorm before fc2) nor the token-mixing
rule (token mixing only) removes them. A range that holds them leaves every other hidden unit a few
int8 levels; a range that clips them loses units the model relies on. Milder cases (a few random
units, 100-300x) lose 4 points with the default estimator but almost nothing with entropy.

    python benchmarks/qat_recovery.py runs/t4-default --data imagefolder:runs/mnist-folders/train \\
        --eval-data imagefolder:runs/mnist-folders/eval --out runs/qat-bench [--mlps both --units 16]

`mixer-edge train --qat` runs with its defaults (--qat-args adds options). The QAT table gives each
artifact's SQNR and agreement against the QAT model it was exported from (its validation reference).

Top-1 is measured on --eval-data (images neither trained nor calibrated on), the same images for
every row; "drop" is against the case's FP32 top-1.
"""
from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
from pathlib import Path


import mixer_edge as me
from mixer_edge.calibration import make_calibration
from mixer_edge.calibration.ranges import METHODS
from mixer_edge.calibration.split import inject_massive_units as massive_units
from mixer_edge.export.build import export_one
from mixer_edge.export.reference import validation_data
from mixer_edge.export.base import ExportSpec
from mixer_edge.models.checkpoint import save_checkpoint
from mixer_edge.train.evaluate import evaluate

TARGETS = ("onnx", "tensorrt", "openvino", "coreml")
STATUS = {True: "passed", False: "failed", None: "skipped"}


def top1(ck, data) -> float:
    return evaluate(ck, data)["top1"]


def export_row(ck, target, spec, calib, val) -> dict:
    with tempfile.TemporaryDirectory() as tmp:
        o = export_one(ck, target, spec, calib, tmp, validation=val, keep_invalid=True)
    return o.validation


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("checkpoint")
    ap.add_argument("--data", required=True, help="the checkpoint's training data (QAT and calibration)")
    ap.add_argument("--eval-data", required=True)
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--units", type=int, default=32, help="massive hidden units per block (default 32)")
    ap.add_argument("--factors", default="300,1000", help="scale range low,high (default 300,1000)")
    ap.add_argument("--mlps", choices=("channels", "both"), default="channels",
                    help="which MLPs get the massive units: the channel-mixing ones (RESULTS 8.1) or both kinds "
                         "(issue 23's model)")
    ap.add_argument("--pick", choices=("important", "random"), default="important",
                    help="which hidden units are made massive (default: the most important)")
    ap.add_argument("--calib-size", type=int, default=300)
    ap.add_argument("--qat-args", default="", help="extra options for `mixer-edge train --qat`")
    args = ap.parse_args(argv)
    low, high = (float(v) for v in args.factors.split(","))

    base = me.load_checkpoint(args.checkpoint)
    ev = me.load_data(args.eval_data)
    calib = make_calibration(args.data, base.preprocess, size=args.calib_size, trained=base.trained_keys,
                             split=base.split)
    kinds = ("mlp_channels",) if args.mlps == "channels" else ("mlp_tokens", "mlp_channels")
    model, record = massive_units(base.model, args.units, low, high, calib.x if args.pick == "important" else None,
                                  kinds=kinds)
    case_dir = args.out / "case"
    save_checkpoint(case_dir, model, base.preprocess, base.classes, {**base.meta, "massive_units": record})
    case = me.load_checkpoint(case_dir)
    fp32 = top1(case, ev)
    print(f"FP32 top-1 on {len(ev)} images: {100 * top1(base, ev):.2f} % (original), {100 * fp32:.2f} % (case)")

    val = validation_data(case, case.preprocess(ev.images), ev.labels, args.eval_data)
    print("\npost-training INT8 (every estimator; the default recipe otherwise):\n")
    print("| target | " + " | ".join(METHODS) + " | best | drop |\n|---|" + "---|" * (len(METHODS) + 2))
    best = {}
    for t in TARGETS:
        figures = {m: export_row(case, t, ExportSpec("int8", calib_method=m), calib, val)["top1"] for m in METHODS}
        m = max(figures, key=figures.get)
        best[t] = figures[m]
        print(f"| {t} | " + " | ".join(f"{100 * v:.1f}" for v in figures.values()) +
              f" | {m} | {100 * (fp32 - figures[m]):.2f} |", flush=True)

    qat_dir = args.out / "qat"
    cmd = [sys.executable, "-m", "mixer_edge.cli", "train", "--qat", "--pretrained", str(case_dir), "--data", args.data,
           "--out", str(qat_dir), *args.qat_args.split()]
    print("\n$ mixer-edge " + " ".join(cmd[3:]), flush=True)
    subprocess.run(cmd, check=True)
    q = me.load_checkpoint(qat_dir)
    qval = validation_data(q, q.preprocess(ev.images), ev.labels, args.eval_data)
    print(f"\nQAT float weights: top-1 {100 * top1(q, ev):.2f} %\n")
    print("| target | FP32 (case) | best PTQ INT8 | PTQ drop | QAT INT8 | QAT drop | against the QAT model: SQNR, "
          "agreement | QAT validation |\n|---|---|---|---|---|---|---|---|")
    for t in TARGETS:
        v = export_row(q, t, ExportSpec("int8"), None, qval)
        print(f"| {t} | {100 * fp32:.2f} | {100 * best[t]:.2f} | {100 * (fp32 - best[t]):.2f} | {100 * v['top1']:.2f} "
              f"| {100 * (fp32 - v['top1']):.2f} | {v['sqnr_db']:.1f} dB, {v['top1_agreement']:.3f} "
              f"| {STATUS[v.get('passed')]} ({v.get('checked_by')}) |", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
