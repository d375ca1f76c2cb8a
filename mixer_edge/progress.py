"""Progress bars for long work (training, calibration, benchmarks; off with MIXER_EDGE_PROGRESS=0), and
warnings about the data for people (say)."""
from __future__ import annotations

import os
import sys

PROGRESS_ABOVE = 500   # images; fewer are read or hashed in well under a second, a bar would only flicker


def progress(iterable=None, *, total=None, desc: str = "", enabled: bool = True, leave: bool = True):
    from tqdm.auto import tqdm

    on = enabled and os.environ.get("MIXER_EDGE_PROGRESS", "1") != "0"
    return tqdm(iterable, total=total, desc=desc, disable=not on, leave=leave, file=sys.stderr,
                dynamic_ncols=True, mininterval=0.5)


def first_process() -> bool:
    """Not one of torchrun's other processes (RANK > 0), which read the same data and would repeat
    what the first says."""
    return os.environ.get("RANK", "0") == "0"


def say(text: str) -> None:
    """A `warning:` line on stderr (visible without --verbose), from the first process only."""
    if first_process():
        print(f"warning: {text}", file=sys.stderr)
