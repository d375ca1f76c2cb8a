"""The options that say how image data is read (--skip-bad, --class-map), one definition for every
command that reads it; data/sources.ReadOptions carries them to the library."""
from __future__ import annotations

import argparse

SKIP_BAD = ("leave out image files that cannot be read (empty, cut short, not an image, a link loop, above "
            "Pillow's decompression-bomb limit), each named in a warning line, with a count; without it the "
            "first one stops the run, named")
CLASS_MAP = ("FILE mapping the data's class folder names to the model's class names, for names that differ by more "
             "than case (EIGHT matches eight anyway): a .json object {\"FOLDER\": \"CLASS\", ...} or text lines "
             "FOLDER = CLASS (# comments); folders mapped to one class are merged, folders not named keep their "
             "names (docs/data.md)")


PREDICT_SKIP_BAD = ("files that cannot be read are listed as warnings, and the exit code is 0 when at least one "
                    "image was answered (without it each gets an error line, and the exit code is 2)")


def add_reading_arguments(p: argparse.ArgumentParser, class_map: bool = True, skip_bad: str = SKIP_BAD) -> None:
    p.add_argument("--skip-bad", action="store_true", help=skip_bad)
    if class_map:
        p.add_argument("--class-map", default=None, metavar="FILE", help=CLASS_MAP)


def read_options(args: argparse.Namespace):
    from ..data.sources import ReadOptions

    return ReadOptions(skip_bad=args.skip_bad, class_map=getattr(args, "class_map", None))
