"""`mixer-edge demo`."""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

from ..runtime.errors import EXIT_OK, EXIT_VALIDATION_FAILED
from .common import add_threads_argument, output_folder
from .export import validation_line


# ---- demo --------------------------------------------------------------------------------------

def add_demo_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--out", default="mixer-edge-demo", help="output folder (default ./mixer-edge-demo)")
    p.add_argument("--epochs", type=int, default=20, help="training epochs on digits (default 20)")
    add_threads_argument(p)


def run_demo(args: argparse.Namespace) -> int:
    from ..demo import run   # torch: imported when the command runs, not for --help

    output_folder(args.out, "--out")
    result = run(Path(args.out), epochs=args.epochs, say=print,
                 on_export=lambda o: print("      " + validation_line(o)))
    print(f"summary: {result.path}")
    if result.failed:
        print(f"error: {len(result.failed)} artifact(s) failed validation: {', '.join(result.failed)}",
              file=sys.stderr)
        return EXIT_VALIDATION_FAILED
    return EXIT_OK
