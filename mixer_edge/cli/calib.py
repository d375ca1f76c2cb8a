"""`mixer-edge calib make`."""
from __future__ import annotations

import argparse

from ..runtime.errors import EXIT_OK
from .common import add_threads_argument, _data_help, _warn, output_file
from .reading import add_reading_arguments, read_options


# ---- calib -------------------------------------------------------------------------------------

def add_calib_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("action", choices=["make"], help="make: draw a calibration set and save it")
    p.add_argument("checkpoint", help="the checkpoint whose preprocessing the set is made with")
    p.add_argument("--data", required=True, help=_data_help() + "; never an image the model was trained on "
                   "(recognised by content), and from the training data itself only its calibration split; images "
                   "that share none with the training data are all available")
    add_reading_arguments(p)
    p.add_argument("--size", type=int, default=300, help="number of images (default 300; < 100 warns)")
    p.add_argument("--seed", type=int, default=0, help="selection seed (default 0)")
    p.add_argument("--out", required=True, help="output .npz (a .json manifest with its sha256 is written beside it)")
    add_threads_argument(p)


def run_calib(args: argparse.Namespace) -> int:
    from ..calibration.sets import make_calibration, save_calibration
    from ..export.plan import load_model   # torch: imported when the command runs, not for --help

    output_file(args.out, "--out")
    ck = load_model(args.checkpoint)
    # a saved set is never the validation source of its own data: validation_apart (calibration_pool)
    calib = make_calibration(args.data, ck.preprocess, size=args.size, seed=args.seed, trained=ck.trained_keys,
                             split=ck.split, validation_apart=True, options=read_options(args))
    _warn(calib.warnings)
    path = save_calibration(calib, args.out)
    print(f"calibration set: {len(calib)} images from {calib.source}, sha256 {calib.sha256[:16]}..., saved to {path}")
    return EXIT_OK
