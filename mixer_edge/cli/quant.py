"""`mixer-edge quant inspect CHECKPOINT --calib-data SPEC [--target T]`: where INT8 error enters.

The analysis is export/inspection.py; this module only parses, prints and writes the files.
"""
from __future__ import annotations

import argparse
from pathlib import Path

from ..errors import name_type
from ..export.base import CALIB_METHODS
from ..export.registry import ALIASES, target_names
from ..runtime.artifact import atomic_write_bytes, atomic_write_json
from ..runtime.errors import EXIT_OK
from .common import add_threads_argument, output_folder


def add_quant_arguments(p: argparse.ArgumentParser) -> None:
    sub = p.add_subparsers(dest="quant_action", metavar="ACTION", required=True,
                           help="inspect: per-layer INT8 error, activation ranges and outlier channels")
    i = sub.add_parser("inspect", help="run FP32 and INT8 side by side and name the layers where error enters",
                       description="Runs the FP32 model and its INT8 version (the target's recipe: smoothing, "
                                   "ranges, Q/DQ placement) side by side on held-out images and reports, per "
                                   "layer, the output SQNR so far, the logit SQNR with that layer alone "
                                   "quantized, its input range and its outlier channels; a table, a JSON and "
                                   "a plot.")
    i.add_argument("checkpoint", help="a mixer-edge checkpoint, or timm / official Google weights")
    i.add_argument("--calib-data", required=True, help="calibration images: a data spec or a saved calib .npz")
    i.add_argument("--eval-data", default=None,
                   help="images to measure on, less any the model was trained or calibrated on (default: the "
                        "held-out eval split of --calib-data)")
    i.add_argument("--target", default="onnx", type=name_type("target", target_names(), ALIASES),
                   help=f"whose INT8 recipe: {', '.join(target_names())} (default onnx)")
    i.add_argument("--calib-method", type=name_type("calibration method", CALIB_METHODS), default=None,
                   help=f"range estimator: {', '.join(CALIB_METHODS)} (default mse)")
    i.add_argument("--smooth", type=float, default=0.5, metavar="ALPHA", help="SmoothQuant strength (default 0.5)")
    i.add_argument("--no-smooth", dest="smooth", action="store_const", const=None, help="inspect without smoothing")
    i.add_argument("--calib-size", type=int, default=300, help="calibration images to draw (default 300)")
    i.add_argument("--eval-size", type=int, default=1000, help="held-out images to use at most (default 1000)")
    i.add_argument("--out", default=None, help="folder for inspect.md, inspect.json and inspect.png")
    add_threads_argument(i)


def run_quant(args: argparse.Namespace) -> int:
    from ..export.inspection import InspectSpec, inspect, plot, table
    from ..export.plan import ExportPlan, load_model, prepare_data

    if args.out:
        output_folder(args.out, "--out")   # before the work, not after it
    ck = load_model(args.checkpoint)
    plan = ExportPlan(targets=(args.target,), precisions=("int8",), out_dir=".", calib_data=args.calib_data,
                      calib_size=args.calib_size, eval_data=args.eval_data)
    calib, val = prepare_data(ck, plan)
    x = val.x[:args.eval_size]
    report = inspect(ck, calib.x, x, InspectSpec(args.target, args.calib_method, args.smooth))
    report["data"] = {"calibration": calib.source, "measured_on": val.source}
    lg = report["logits"]
    print(f"{args.target} INT8 ({report['flavor']} Q/DQ, {report['method']} ranges, smoothing "
          f"{'off' if report['smoothing'] is None else report['smoothing']['alpha']}) on {len(x)} images of "
          f"{val.source}: logit SQNR {lg['sqnr_db']:.1f} dB, top-1 agreement {lg['top1_agreement']:.4f}\n")
    print(table(report))
    worst = ", ".join(f"{r['layer']} ({r['sqnr_alone_db']:.1f} dB)" for r in report["worst"])
    print(f"\nmost error enters at: {worst}")
    if args.out:
        out = Path(args.out)
        out.mkdir(parents=True, exist_ok=True)
        plot(report, out / "inspect.png")   # first: the slow one, so Ctrl-C during it leaves no files
        atomic_write_json(out / "inspect.json", report)
        atomic_write_bytes(out / "inspect.md", (table(report) + "\n").encode())
        print(f"wrote {out / 'inspect.md'}, {out / 'inspect.json'}, {out / 'inspect.png'}")
    return EXIT_OK
