#!/usr/bin/env python3
"""The default INT8 recipe on models with massive activations (issue 22), every target, against
the same recipe with the MLP split off (`--no-split`: the recipe before it).

Cases, all made from one trained checkpoint by function-preserving rescalings (RESULTS 8.1; the
builders are calibration/split.inject_massive_units and calibration/smoothing.inject_outliers):

    plain                 the checkpoint as trained
    layernorm-outliers    3 LayerNorm channels per fold scaled 30-100x (RESULTS section 5's outliers)
    random-6              6 random channel-MLP hidden units per block scaled 80-250x
    random-128            128 random units, 100-300x
    all-512               every unit, 1-100x
    important-64          the 64 most important units (mean |GELU output| x fc2 column norm), 100-300x
    important-32          the 32 most important units, 300-1000x (the case QAT was needed for)
    both-16               the 16 most important units of every token- and channel-mixing MLP, 300-1000x

    python benchmarks/massive_int8.py runs/t4-default --data imagefolder:runs/mnist-folders/train \\
        --eval-data imagefolder:runs/mnist-folders/eval --json benchmarks/results/massive_int8.json

Calibration: --calib-size images of the checkpoint's calib split of --data (the same for every row);
top-1, SQNR and agreement on --eval-data, images neither trained nor calibrated on. Nothing is told
where the outliers are: the recipe sees the model and the calibration images only.
"""
from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import mixer_edge as me
from mixer_edge.calibration import make_calibration
from mixer_edge.calibration.smoothing import inject_outliers
from mixer_edge.calibration.split import inject_massive_units
from mixer_edge.export.base import ExportSpec
from mixer_edge.export.build import export_one
from mixer_edge.export.reference import validation_data
from mixer_edge.models.checkpoint import save_checkpoint
from mixer_edge.train.evaluate import evaluate




TARGETS = ("onnx", "tensorrt", "openvino", "coreml")
CHANNELS, BOTH = ("mlp_channels",), ("mlp_tokens", "mlp_channels")
CASES = {   # name -> (units per MLP, low, high, pick, MLPs); None: not a massive-unit case
    "plain": None,
    "layernorm-outliers": None,
    "random-6": (6, 80, 250, "random", CHANNELS),
    "random-128": (128, 100, 300, "random", CHANNELS),
    "all-512": (512, 1, 100, "random", CHANNELS),
    "important-64": (64, 100, 300, "important", CHANNELS),
    "important-32": (32, 300, 1000, "important", CHANNELS),
    "both-16": (16, 300, 1000, "important", BOTH),
}
STATUS = {True: "passed", False: "failed", None: "skipped"}


def build_case(name: str, base, calib):
    if name == "plain":
        return base.model, {}
    if name == "layernorm-outliers":
        model, record = inject_outliers(base.model, channels=3, low=30.0, high=100.0)
        return model, {"layernorm_outliers": record}
    units, low, high, pick, kinds = CASES[name]
    model, record = inject_massive_units(base.model, units, low, high, calib.x if pick == "important" else None,
                                         kinds=kinds)
    return model, {"massive_units": record}


def export_row(ck, target, spec, calib, val) -> dict:
    with tempfile.TemporaryDirectory() as tmp:
        o = export_one(ck, target, spec, calib, tmp, validation=val, keep_invalid=True)
    v, ex = o.validation, o.artifact.manifest.get("export", {}) if o.artifact is not None else {}
    split = (ex.get("split") or {}).get("split")
    return {"passed": v.get("passed"), "checked_by": v.get("checked_by"), "top1": v.get("top1"),
            "sqnr_db": v.get("sqnr_db"), "agreement": v.get("top1_agreement"),
            "split_mlps": None if split is None else len(split)}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("checkpoint")
    ap.add_argument("--data", required=True, help="the checkpoint's training data (its calib split calibrates)")
    ap.add_argument("--eval-data", required=True, help="held-out images: top-1, SQNR, agreement")
    ap.add_argument("--cases", default=",".join(CASES), help=f"comma-separated, of {', '.join(CASES)}")
    ap.add_argument("--targets", default=",".join(TARGETS))
    ap.add_argument("--calib-size", type=int, default=300)
    ap.add_argument("--work", type=Path, default=None, help="where the case checkpoints go (default: a temp dir)")
    ap.add_argument("--json", type=Path, default=None)
    args = ap.parse_args(argv)

    base = me.load_checkpoint(args.checkpoint)
    ev = me.load_data(args.eval_data)
    calib = make_calibration(args.data, base.preprocess, size=args.calib_size, trained=base.trained_keys,
                             split=base.split)
    work = args.work or Path(tempfile.mkdtemp(prefix="massive-int8-"))
    rows, t0 = [], time.time()
    print("| case | target | FP32 top-1 | split off: top-1, SQNR, validation | default: top-1, SQNR, validation "
          "| MLPs split | drop (default) |\n|---|---|---|---|---|---|---|", flush=True)
    for name in args.cases.split(","):
        model, record = build_case(name, base, calib)
        save_checkpoint(work / name, model, base.preprocess, base.classes, {**base.meta, **record})
        ck = me.load_checkpoint(work / name)
        fp32 = evaluate(ck, ev)["top1"]
        val = validation_data(ck, ck.preprocess(ev.images), ev.labels, args.eval_data)
        for t in args.targets.split(","):
            off = export_row(ck, t, ExportSpec("int8", split=False), calib, val)
            on = export_row(ck, t, ExportSpec("int8"), calib, val)
            rows.append({"case": name, "target": t, "fp32_top1": fp32, "split_off": off, "default": on})
            print(f"| {name} | {t} | {100 * fp32:.2f} | {_cell(off)} | {_cell(on)} | {on['split_mlps']} "
                  f"| {100 * (fp32 - on['top1']):.2f} |", flush=True)
    print(f"\n{len(rows)} rows in {time.time() - t0:.0f} s; eval images {len(ev)}, calibration images {len(calib.x)}")
    if args.json:
        args.json.write_text(json.dumps({"command": " ".join(sys.argv), "eval_images": len(ev),
                                         "calib_images": int(len(calib.x)), "rows": rows}, indent=1) + "\n")
    return 0


def _cell(r: dict) -> str:
    return f"{100 * r['top1']:.2f} %, {r['sqnr_db']:.1f} dB, {STATUS[r['passed']]}"


if __name__ == "__main__":
    sys.exit(main())
