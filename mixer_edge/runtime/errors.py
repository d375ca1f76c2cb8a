"""The one error vocabulary of every mixer-edge program, the exit codes, and the one place
exceptions become exit codes (pypa/build style). The host CLI (`mixer-edge`) and the device
scripts (`edge_bench.py`, `trt_build.py`) both end in error_boundary with EXIT_CODES; the host's
own errors (mixer_edge/errors.py) derive from these classes.

Every message says what arrived and what is accepted, so one line is enough for the user.
"""
from __future__ import annotations

import sys

EXIT_OK = 0
EXIT_VALIDATION_FAILED = 1   # export: an artifact disagrees with PyTorch FP32 beyond tolerance
EXIT_BAD_INPUT = 2           # a file, option or data set that cannot be used as given; a missing package
EXIT_NOT_RUN = 3             # the artifact's runtime cannot run here (a benchmark's results are written, marked)
EXIT_DEVICE_CHECK = 4        # an artifact failed its golden check on this device (results written, marked)
EXIT_INTERRUPTED = 130       # Ctrl-C; nothing half-written is kept


class MixerEdgeError(Exception):
    """A problem the user can fix (bad input, a missing package, a machine that lacks something),
    not a bug: one line on stderr and an exit code (EXIT_CODES)."""


class BadInput(MixerEdgeError, ValueError):
    """A file, option or data set that cannot be used as given."""


class NotRunnable(MixerEdgeError):
    """The artifact's runtime is missing or cannot execute on this machine (no GPU, not macOS); says why."""


class DeviceCheckFailed(MixerEdgeError):
    """The artifact does not compute, on this device, what was validated at export (its golden set)."""


class ValidationError(MixerEdgeError):
    """An exported artifact disagrees with the PyTorch reference beyond tolerance."""


# exception -> (exit code, prefix of the one line printed); the first match wins. A file the system
# would not read or write (permissions, a full disk) is the user's to fix too.
EXIT_CODES = (
    (ValidationError, EXIT_VALIDATION_FAILED, "error"),
    (NotRunnable, EXIT_NOT_RUN, "error: cannot run here"),
    (DeviceCheckFailed, EXIT_DEVICE_CHECK, "error: device check failed"),
    (MixerEdgeError, EXIT_BAD_INPUT, "error"),
    (OSError, EXIT_BAD_INPUT, "error"),
)


def error_boundary(call, interrupted: str) -> int:
    """Run call() and return its exit code; an exception in EXIT_CODES becomes one
    'prefix: message' line on stderr and its code; Ctrl-C becomes EXIT_INTERRUPTED with
    'error: <interrupted>'. Anything else is a bug and keeps its traceback."""
    try:
        return call()
    except KeyboardInterrupt:
        print(f"error: {interrupted}", file=sys.stderr)
        return EXIT_INTERRUPTED
    except Exception as e:
        for kind, code, prefix in EXIT_CODES:
            if isinstance(e, kind):
                print(f"{prefix}: {e}", file=sys.stderr)
                return code
        raise
