"""runtime/errors.py: one vocabulary, one exception -> exit code table, one boundary, for
`mixer-edge` and the device scripts alike; the host's errors derive from it."""
from __future__ import annotations

import pytest

from mixer_edge import errors as host
from mixer_edge.runtime import errors
from mixer_edge.runtime.errors import (EXIT_BAD_INPUT, EXIT_CODES, EXIT_DEVICE_CHECK, EXIT_INTERRUPTED, EXIT_NOT_RUN,
                                       EXIT_VALIDATION_FAILED, BadInput, DeviceCheckFailed, MixerEdgeError,
                                       NotRunnable, ValidationError, error_boundary)

# The documented table (README "Command line", docs/architecture.md), written out here by hand.
DOCUMENTED = {ValidationError: (1, "error"), BadInput: (2, "error"), NotRunnable: (3, "error: cannot run here"),
              DeviceCheckFailed: (4, "error: device check failed"), MixerEdgeError: (2, "error"),
              OSError: (2, "error"), host.UnknownName: (2, "error"), host.MissingDependency: (2, "error"),
              host.CalibrationError: (2, "error")}


@pytest.mark.parametrize("kind", list(DOCUMENTED), ids=lambda k: k.__name__)
def test_every_error_becomes_its_code_and_one_line(kind, capsys):
    def fail():
        raise kind("what arrived; accepted: what is")

    code = error_boundary(fail, "interrupted")
    want_code, prefix = DOCUMENTED[kind]
    assert code == want_code
    assert capsys.readouterr().err == f"{prefix}: what arrived; accepted: what is\n"


def test_codes_are_the_documented_numbers():
    assert (EXIT_VALIDATION_FAILED, EXIT_BAD_INPUT, EXIT_NOT_RUN, EXIT_DEVICE_CHECK, EXIT_INTERRUPTED) == (1, 2, 3, 4, 130)
    assert [kind for kind, _, _ in EXIT_CODES][-2:] == [MixerEdgeError, OSError]   # the specific ones first


def test_ctrl_c_is_130_and_a_bug_keeps_its_traceback(capsys):
    def interrupted():
        raise KeyboardInterrupt

    assert error_boundary(interrupted, "interrupted; nothing written") == EXIT_INTERRUPTED
    assert capsys.readouterr().err == "error: interrupted; nothing written\n"
    assert error_boundary(lambda: 0, "-") == 0
    with pytest.raises(ZeroDivisionError):   # not a user's mistake: no one-line message hides it
        error_boundary(lambda: 1 / 0, "-")


def test_the_host_speaks_the_runtime_vocabulary():
    """One definition: the host's names are the runtime's classes, its own errors derive from them."""
    assert (host.BadInput, host.NotRunnable, host.DeviceCheckFailed, host.ValidationError, host.MixerEdgeError) == \
        (BadInput, NotRunnable, DeviceCheckFailed, ValidationError, MixerEdgeError)
    assert issubclass(host.UnknownName, BadInput) and issubclass(host.UnknownName, KeyError)
    assert issubclass(host.MissingDependency, MixerEdgeError) and issubclass(host.CalibrationError, MixerEdgeError)
    assert str(host.UnknownName("no quotes")) == "no quotes"
    assert errors.__name__ == "mixer_edge.runtime.errors"
