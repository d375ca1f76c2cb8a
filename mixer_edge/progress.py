"""Progress bars for long work (training, calibration, benchmarks). Off with MIXER_EDGE_PROGRESS=0."""
from __future__ import annotations

import os
import sys

PROGRESS_ABOVE = 500   # images; fewer are read or hashed in well under a second, a bar would only flicker


def progress(iterable=None, *, total=None, desc: str = "", enabled: bool = True, leave: bool = True):
    from tqdm.auto import tqdm

    on = enabled and os.environ.get("MIXER_EDGE_PROGRESS", "1") != "0"
    return tqdm(iterable, total=total, desc=desc, disable=not on, leave=leave, file=sys.stderr,
                dynamic_ncols=True, mininterval=0.5)
