"""A signal stack that outlives OpenVINO's.

OpenVINO's CPU plugin (2026.4) gives the thread that compiles a model an alternate signal stack
(sigaltstack, 20 KiB) whose memory it frees with the compiled model, and on that release puts back
the stack it found, which may be one an earlier compiled model has freed already. Python runs its
signal handlers' C part on the alternate stack (CPython installs them with SA_ONSTACK), so the next
SIGCHLD (a subprocess or a DataLoader worker ending), SIGINT or other handled signal makes the
kernel write the signal frame into freed memory and kill the process with SIGSEGV, no traceback.
Reproduced: compile two models, drop them, send a handled signal; the test suite died that way at
a DataLoader-worker and a subprocess test, after OpenVINO had compiled dozens of models.

keep() gives the calling thread a 64 KiB stack that lives as long as the process, before and after
each compile: OpenVINO then saves and restores this one, and nothing freed is ever current. Linux
only (the stack_t layout is glibc's; macOS orders the fields differently); elsewhere a no-op.
Standard library only: this module ships in the device runtime.
"""
from __future__ import annotations

import ctypes
import sys

SIZE = 1 << 16          # 64 KiB: an AMX signal frame needs ~11 KiB (AT_MINSIGSTKSZ), with room to spare


class _StackT(ctypes.Structure):                 # glibc's stack_t
    _fields_ = [("ss_sp", ctypes.c_void_p), ("ss_flags", ctypes.c_int), ("ss_size", ctypes.c_size_t)]


_BUFFER = None          # allocated once, never freed
_LIBC = None


def keep() -> bool:
    """Make the process-lifetime buffer the calling thread's alternate signal stack. True when set."""
    global _BUFFER, _LIBC
    if not sys.platform.startswith("linux"):
        return False
    try:
        if _LIBC is None:
            _LIBC = ctypes.CDLL(None, use_errno=True)
            _BUFFER = ctypes.create_string_buffer(SIZE)
        stack = _StackT(ctypes.cast(_BUFFER, ctypes.c_void_p).value, 0, SIZE)
        return _LIBC.sigaltstack(ctypes.byref(stack), None) == 0
    except (OSError, AttributeError):   # no libc symbol here: nothing to protect against
        return False


def current() -> tuple:
    """(address, flags, size) of the calling thread's alternate signal stack; for tests."""
    if not sys.platform.startswith("linux"):
        return (None, 0, 0)
    libc = ctypes.CDLL(None, use_errno=True)
    old = _StackT()
    libc.sigaltstack(None, ctypes.byref(old))
    return (old.ss_sp, old.ss_flags, old.ss_size)


def buffer_address() -> int | None:
    return None if _BUFFER is None else ctypes.cast(_BUFFER, ctypes.c_void_p).value
