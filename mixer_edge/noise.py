"""Third-party output kept out of the user's way: coremltools' and NNCF's progress bars and import
messages, torch's FutureWarnings and "No CUDA runtime is found", go to a log file unless the user
asks for them (`mixer-edge --verbose`). The CLI sets the policy once (configure); library code
wraps calls into chatty packages with third_party()."""
from __future__ import annotations

import contextlib
import logging
import os
import sys
import warnings
from pathlib import Path

VERBOSE = False
LOG = Path(os.environ.get("MIXER_EDGE_LOG", Path.home() / ".cache" / "mixer-edge" / "third-party.log"))


def configure(verbose: bool) -> None:
    """Warnings from other packages and their logging below ERROR: shown when verbose, else dropped
    (their stdout / stderr writes go to LOG through third_party())."""
    global VERBOSE
    VERBOSE = verbose
    if verbose:
        return
    warnings.filterwarnings("ignore")
    warnings.filterwarnings("default", module=r"mixer_edge(\.|$)")
    logging.disable(logging.WARNING)


@contextlib.contextmanager
def third_party():
    """Send what a third-party call prints (progress bars, notices) to LOG, unless verbose."""
    if VERBOSE:
        yield
        return
    try:
        LOG.parent.mkdir(parents=True, exist_ok=True)
        sink = open(LOG, "a", encoding="utf-8")
    except OSError:              # an unwritable home: drop the noise rather than fail
        sink = open(os.devnull, "w")
    with sink, contextlib.redirect_stdout(sink), contextlib.redirect_stderr(sink):
        yield
    sys.stdout.flush()
