"""`mixer-edge predict`."""
from __future__ import annotations

import argparse
from pathlib import Path

from ..runtime.artifact import atomic_write_json
from ..runtime.errors import EXIT_OK
from ..runtime.predict import format_predictions
from .common import output_file


# ---- predict -------------------------------------------------------------------------------------

def add_predict_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("model", help="an artifact folder (run by its runtime) or a checkpoint (run by PyTorch)")
    p.add_argument("images", nargs="+", metavar="IMAGE_OR_FOLDER",
                   help="image files (png/jpg/jpeg/bmp) or folders of them")
    p.add_argument("--top-k", type=int, default=5, help="classes shown per image (default 5)")
    p.add_argument("--json", default=None, help="also write the predictions here as JSON (atomically)")


def run_predict(args: argparse.Namespace) -> int:
    from ..predict import predict   # torch: imported when the command runs, not for --help

    output_file(args.json, "--json")
    doc = predict(args.model, args.images, args.top_k)
    print(format_predictions(doc))
    if args.json:
        atomic_write_json(Path(args.json), doc)
    return EXIT_OK
