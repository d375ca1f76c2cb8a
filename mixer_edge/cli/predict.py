"""`mixer-edge predict`."""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

from ..runtime.artifact import MANIFEST
from ..runtime.cli import finish_predictions
from ..runtime.errors import BadInput
from ..runtime.signing import VERIFY_HELP, signature_line
from .common import add_threads_argument, output_file
from .reading import PREDICT_SKIP_BAD, add_reading_arguments


# ---- predict -------------------------------------------------------------------------------------

def add_predict_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("model", help="an artifact folder (run by its runtime) or a checkpoint (run by PyTorch)")
    p.add_argument("images", nargs="+", metavar="IMAGE_OR_FOLDER",
                   help="image files (png/jpg/jpeg/bmp) or folders of them (sub-folders included), each answered "
                        "on its own: a file that cannot be read gets an error line (exit 2), the others their "
                        "predictions")
    p.add_argument("--top-k", type=int, default=5, help="classes shown per image (default 5)")
    p.add_argument("--json", default=None, help="also write the predictions here as JSON (atomically), with an "
                                                 "'errors' list of the files that could not be read")
    add_reading_arguments(p, class_map=False, skip_bad=PREDICT_SKIP_BAD)
    add_threads_argument(p)
    p.add_argument("--verify-key", default=None, metavar="PUBLIC_KEY", help=VERIFY_HELP)


def run_predict(args: argparse.Namespace) -> int:
    from ..predict import predict   # torch: imported when the command runs, not for --help

    output_file(args.json, "--json")
    signature = _signature(args.model, args.verify_key)   # verified before any work
    if signature:
        print(signature, file=sys.stderr)   # a status line: stdout holds the answers alone, one line per image
    doc = predict(args.model, args.images, args.top_k)
    return finish_predictions(doc, args.json, args.skip_bad)


def _signature(model: str, verify_key) -> str | None:
    """An artifact's signature line (verified with --verify-key, or BadInput); None for a checkpoint, never signed."""
    if (Path(model) / MANIFEST).is_file():
        return signature_line(model, verify_key)
    if verify_key is not None:
        raise BadInput(f"--verify-key verifies artifacts; {model} is not an artifact folder (with {MANIFEST})")
    return None
