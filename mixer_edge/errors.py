"""The errors mixer-edge raises. Library code raises these; only cli.py turns them into exit codes.

Every message says what arrived and what is accepted, so one line is enough for the user.
"""


class MixerEdgeError(Exception):
    """Base class: a problem the user can fix (bad input, missing package), not a bug."""


class BadInput(MixerEdgeError, ValueError):
    """A file, option or data set that cannot be used as given."""


class UnknownName(BadInput, KeyError):
    """A name (variant, target, precision, data source) that is not in its registry."""

    def __str__(self) -> str:  # KeyError would otherwise wrap the message in quotes
        return str(self.args[0])


class MissingDependency(MixerEdgeError, ImportError):
    """An optional backend package is not installed; the message names the pip extra."""


class CalibrationError(MixerEdgeError):
    """The calibration set is missing, too small, or does not fit the model."""


class ValidationError(MixerEdgeError):
    """An exported artifact disagrees with the PyTorch reference beyond tolerance."""


def unknown(kind: str, got: object, accepted) -> UnknownName:
    """The one way we phrase 'not in the registry': what arrived and every accepted name."""
    return UnknownName(f"unknown {kind} {got!r}; accepted: {', '.join(sorted(accepted))}")


def require(module: str, extra: str):
    """Import an optional SDK inside a function; a missing one names the pip extra to install."""
    import importlib

    try:
        return importlib.import_module(module)
    except ImportError as e:
        raise MissingDependency(
            f"{module!r} is not installed ({e}); install it with: pip install 'mixer-edge[{extra}]'"
        ) from None
