"""How the default INT8 recipe was chosen: logit SQNR against FP32 PyTorch of every target's INT8
artifact, for each calibration method (smoothing at the default strength) and each smoothing
strength (the default method), on the plain model and on its outlier copy, on held-out images.

    python benchmarks/int8_recipes.py runs/plain-t4 --calib-data imagefolder:runs/mnist-folders/train \\
        --eval-data imagefolder:runs/mnist-folders/eval --json benchmarks/results/int8_recipes.json
"""
from __future__ import annotations

import argparse
import json
import sys
import tempfile
from dataclasses import replace
from pathlib import Path

import mixer_edge as me
from mixer_edge.calibration import make_calibration, ranges
from mixer_edge.calibration.policy import DEFAULT_SMOOTH
from mixer_edge.calibration.smoothing import inject_outliers
from mixer_edge.export.build import export_one
from mixer_edge.export.reference import validation_data
from mixer_edge.export.base import CALIB_METHODS, ExportSpec

TARGETS = ("onnx", "tensorrt", "openvino", "coreml")
ALPHAS = (None, 0.25, 0.5, 0.75)


def sqnr(ck, target, spec, calib, val) -> float:
    with tempfile.TemporaryDirectory() as tmp:
        o = export_one(ck, target, spec, calib, tmp, validation=val, keep_invalid=True)
    return round(o.validation["sqnr_db"], 2)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("checkpoint")
    ap.add_argument("--calib-data", required=True)
    ap.add_argument("--eval-data", required=True)
    ap.add_argument("--json", type=Path)
    args = ap.parse_args(argv)
    ck = me.load_checkpoint(args.checkpoint)
    calib = make_calibration(args.calib_data, ck.preprocess, size=300, trained=ck.trained_keys,
                             split=ck.split)
    ev = me.load_data(args.eval_data)
    x = ck.preprocess(ev.images)
    results = []
    for name, model in (("plain", ck.model), ("outliers", inject_outliers(ck.model)[0])):
        c = replace(ck, model=model)
        val = validation_data(c, x, ev.labels, args.eval_data)
        for t in TARGETS:
            for m in CALIB_METHODS:
                results.append({"model": name, "target": t, "method": m, "alpha": DEFAULT_SMOOTH,
                                "sqnr_db": sqnr(c, t, ExportSpec("int8", calib_method=m), calib, val)})
            for a in ALPHAS:
                if a != DEFAULT_SMOOTH:
                    results.append({"model": name, "target": t, "method": ranges.DEFAULT_METHOD, "alpha": a,
                                    "sqnr_db": sqnr(c, t, ExportSpec("int8", smooth=a), calib, val)})
            print(f"{name} {t} done", flush=True)
    for name in ("plain", "outliers"):
        print(f"\n{name}: logit SQNR (dB) by calibration method, smoothing alpha {DEFAULT_SMOOTH}\n")
        print("| target | " + " | ".join(CALIB_METHODS) + " |\n|---|" + "---|" * len(CALIB_METHODS))
        for t in TARGETS:
            row = {r["method"]: r["sqnr_db"] for r in results
                   if r["model"] == name and r["target"] == t and r["alpha"] == DEFAULT_SMOOTH}
            print(f"| {t} | " + " | ".join(f"{row[m]:.1f}" for m in CALIB_METHODS) + " |")
        print(f"\n{name}: logit SQNR (dB) by smoothing strength, method {ranges.DEFAULT_METHOD}\n")
        print("| target | " + " | ".join("off" if a is None else str(a) for a in ALPHAS) + " |\n|---|" + "---|" * len(ALPHAS))
        for t in TARGETS:
            row = {r["alpha"]: r["sqnr_db"] for r in results
                   if r["model"] == name and r["target"] == t and r["method"] == ranges.DEFAULT_METHOD}
            print(f"| {t} | " + " | ".join(f"{row[a]:.1f}" for a in ALPHAS) + " |")
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(results, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
