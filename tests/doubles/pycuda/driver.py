"""pycuda.driver as the runtime uses it; device memory is host memory (ctypes buffers)."""
from __future__ import annotations

import ctypes

import numpy as np

_BUFFERS: dict[int, ctypes.Array] = {}


class _PageLocked(np.ndarray):
    """What pagelocked_empty returns: an ndarray the double knows is page-locked."""


def pagelocked_empty(shape, dtype):
    return np.empty(shape, dtype).view(_PageLocked)


class DeviceAllocation(int):
    pass


def mem_alloc(nbytes):
    buf = (ctypes.c_char * int(nbytes))()
    ptr = DeviceAllocation(ctypes.addressof(buf))
    _BUFFERS[int(ptr)] = buf
    return ptr


class Stream:
    handle = 9

    def synchronize(self):
        pass


def _locked(arr):
    if not isinstance(arr, _PageLocked) and not isinstance(getattr(arr, "base", None), _PageLocked):
        raise RuntimeError("memcpy_*_async needs page-locked host memory (pagelocked_empty); got a pageable array")


def memcpy_htod_async(dest, src, stream=None):
    _locked(src)
    ctypes.memmove(int(dest), src.ctypes.data, src.nbytes)


def memcpy_dtoh_async(dest, src, stream=None):
    _locked(dest)
    ctypes.memmove(dest.ctypes.data, int(src), dest.nbytes)
