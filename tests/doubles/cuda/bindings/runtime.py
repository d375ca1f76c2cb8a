"""cuda.bindings.runtime as cuda-python 12 and 13 have it, for the calls the runtime makes; every
call returns a tuple (cudaError_t, values...). "Device memory" is host memory (ctypes buffers).

    CUDA_DOUBLE_ERROR    insufficient-driver: cudaGetDeviceCount fails as on a driver older than
                         the CUDA runtime cuda-python carries (cudaErrorInsufficientDriver, 35)
    CUDA_DOUBLE_RUNTIME  cudaRuntimeGetVersion (default 12090: cuda-python 12.9's own runtime)
    CUDA_DOUBLE_DRIVER   cudaDriverGetVersion (default 12060: JetPack 6's CUDA 12.6)
    CUDA_DOUBLE_ABSENT   any value: the module does not import (cuda-python not installed)
"""
from __future__ import annotations

import ctypes
import enum
import os
from types import SimpleNamespace

if os.environ.get("CUDA_DOUBLE_ABSENT"):
    raise ImportError("cuda-python is not installed (CUDA_DOUBLE_ABSENT)")
_ERROR = os.environ.get("CUDA_DOUBLE_ERROR", "")
_BUFFERS: dict[int, ctypes.Array] = {}


class cudaError_t(enum.IntEnum):
    cudaSuccess = 0
    cudaErrorInsufficientDriver = 35
    cudaErrorInvalidValue = 1


class cudaMemcpyKind(enum.IntEnum):
    cudaMemcpyHostToDevice = 1
    cudaMemcpyDeviceToHost = 2


class cudaStream_t(int):
    pass


def cudaGetDeviceCount():
    if _ERROR == "insufficient-driver":
        return cudaError_t.cudaErrorInsufficientDriver, 0
    return cudaError_t.cudaSuccess, 1


def cudaRuntimeGetVersion():
    return cudaError_t.cudaSuccess, int(os.environ.get("CUDA_DOUBLE_RUNTIME", "12090"))


def cudaDriverGetVersion():
    return cudaError_t.cudaSuccess, int(os.environ.get("CUDA_DOUBLE_DRIVER", "12060"))


def cudaGetDeviceProperties(device):
    name = os.environ.get("DOUBLE_GPU", "Orin (nvgpu)").encode()
    return cudaError_t.cudaSuccess, SimpleNamespace(name=name, major=8, minor=7)


def cudaStreamCreate():
    return cudaError_t.cudaSuccess, cudaStream_t(7)


def cudaStreamSynchronize(stream):
    return (cudaError_t.cudaSuccess,)


def cudaMalloc(size):
    buf = (ctypes.c_char * int(size))()
    ptr = ctypes.addressof(buf)
    _BUFFERS[ptr] = buf
    return cudaError_t.cudaSuccess, ptr


def cudaFree(ptr):
    _BUFFERS.pop(int(ptr), None)
    return (cudaError_t.cudaSuccess,)


def cudaMemcpyAsync(dst, src, count, kind, stream):
    ctypes.memmove(int(dst), int(src), int(count))
    return (cudaError_t.cudaSuccess,)
