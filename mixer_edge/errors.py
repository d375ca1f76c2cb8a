"""The host's errors. The vocabulary is the device runtime's (mixer_edge/runtime/errors.py: one
definition, one exception -> exit code table for `mixer-edge` and the device scripts alike); the
errors only the host raises derive from it. Library code raises; the CLI's error boundary turns
them into exit codes.

Every message says what arrived and what is accepted, so one line is enough for the user.
"""
from __future__ import annotations

import argparse
import difflib
import importlib

from .runtime.errors import BadInput, DeviceCheckFailed, MixerEdgeError, NotRunnable, ValidationError

__all__ = ["BadInput", "CalibrationError", "DeviceCheckFailed", "MissingDependency", "MixerEdgeError",
           "NotRunnable", "UnknownName", "ValidationError", "name_type", "require", "resolve", "unknown"]


class UnknownName(BadInput, KeyError):
    """A name (variant, target, precision, data source) that is not in its registry."""

    def __str__(self) -> str:  # KeyError would otherwise wrap the message in quotes
        return str(self.args[0])


class MissingDependency(MixerEdgeError, ImportError):
    """An optional backend package is not installed; the message names the pip extra."""


class CalibrationError(MixerEdgeError):
    """The calibration set is missing, too small, or does not fit the model."""


def unknown(kind: str, got: object, accepted) -> UnknownName:
    """The one way we phrase 'not in the registry': what arrived, every accepted name, and the
    closest one when a near miss looks like a typo."""
    names = sorted(str(a) for a in accepted)
    lower = {n.lower(): n for n in names}
    close = difflib.get_close_matches(str(got).lower(), list(lower), n=1, cutoff=0.6)
    hint = f"; did you mean {lower[close[0]]!r}?" if close else ""
    return UnknownName(f"unknown {kind} {got!r}; accepted: {', '.join(names)}{hint}")


def resolve(kind: str, got: object, accepted, aliases: dict | None = None) -> str:
    """The registry's spelling of a name given in any case ('ONNX', 'INT8', 't/4'), or an alias
    ('trt' for 'tensorrt'); unknown names raise unknown() with a suggestion."""
    table = {str(a).lower(): a for a in accepted}
    table.update({k.lower(): v for k, v in (aliases or {}).items()})
    key = str(got).strip().lower()
    if key in table:
        return table[key]
    raise unknown(kind, got, accepted)


def name_type(kind: str, accepted, aliases: dict | None = None):
    """An argparse `type=` that resolves names as resolve() does (any case, aliases, suggestions)
    and reports a miss through argparse's own one-line usage error."""
    def parse(value: str):
        try:
            return resolve(kind, value, accepted, aliases)
        except UnknownName as e:
            raise argparse.ArgumentTypeError(str(e)) from None
    parse.__name__ = kind
    return parse


def require(module: str, extra: str):
    """Import an optional SDK inside a function; a missing one names the pip extra to install."""
    try:
        return importlib.import_module(module)
    except ImportError as e:
        raise MissingDependency(
            f"{module!r} is not installed ({e}); install it with: pip install 'mixer-edge[{extra}]'"
        ) from None
