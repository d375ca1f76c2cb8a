"""What a TensorRT engine needs around it: whether there is an NVIDIA GPU, the CUDA and GPU it is,
and GPU buffers from the first library that works (cuda-python, a CUDA build of torch, pycuda).
Nothing here imports a CUDA library at module import time."""
from __future__ import annotations

import importlib
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np

from ..errors import NotRunnable
from ..system import is_jetson

GPU_NODES = ("/dev/nvidia0", "/dev/nvgpu/igpu0", "/dev/nvhost-ctrl-gpu", "/dev/nvhost-gpu")
# cuda-python links its own CUDA runtime of its major.minor (cuda.bindings shares the toolkit's
# version), which needs a driver at least that new: cuda-python 12.9 on JetPack 6's CUDA 12.6 can
# fail with cudaErrorInsufficientDriver. So on a Jetson it is pinned to the device's minor
# (JETPACK_6); elsewhere to the driver's major (the driver of an x86 host usually supports a newer
# minor than the toolkit installed). The fallbacks, a CUDA build of torch (on a Jetson, NVIDIA's
# JetPack wheel) or pycuda, use the device's own CUDA libraries.
CUDA_PYTHON = {11: 'pip install "cuda-python>=11.8,<12"', 12: 'pip install "cuda-python>=12,<13"',
               13: 'pip install "cuda-python>=13,<14"'}
JETPACK_6 = 'pip install "cuda-python>=12.6,<12.7"'   # JetPack 6.1 / 6.2: CUDA 12.6
HOST_FALLBACKS = "or the fallbacks: a CUDA build of torch, or pycuda (pip install pycuda)"
BUFFER_FALLBACKS = ("or the fallbacks: a CUDA build of torch (on a Jetson, NVIDIA's JetPack 6 wheel from "
                    "https://pypi.jetson-ai-lab.dev/jp6/cu126) or pycuda (pip install pycuda)")


def gpu_present() -> tuple[bool, str]:
    """(is there an NVIDIA GPU, how we know / why not), without importing any CUDA library."""
    for node in GPU_NODES:
        if os.path.exists(node):
            return True, node
    smi = shutil.which("nvidia-smi")
    if smi:
        try:
            r = subprocess.run([smi, "-L"], capture_output=True, text=True, timeout=20)
            if r.returncode == 0 and "GPU" in r.stdout:
                return True, "nvidia-smi -L: " + r.stdout.strip().splitlines()[0]
        except (OSError, subprocess.SubprocessError):
            pass
    return False, ("no NVIDIA GPU here (no /dev/nvidia0, no Jetson /dev/nvgpu, "
                   + ("nvidia-smi lists none)" if smi else "no nvidia-smi)"))


def cuda_version() -> dict:
    """The device's CUDA version and where it was read: the installed toolkit's version.json, else
    the driver's CUDA (cudaDriverGetVersion, nvidia-smi); None where nothing says. Not cuda-python's
    cudaRuntimeGetVersion: that is the runtime cuda-python was built with (12.9 on a 12.6 device),
    recorded beside as "cuda_python_runtime"."""
    out = {"version": None, "source": "not found"}
    rt = cudart()
    for p in (Path("/usr/local/cuda/version.json"),):
        try:
            out = {"version": json.loads(p.read_text())["cuda"]["version"], "source": str(p)}
        except (OSError, KeyError, ValueError):
            pass
    if out["version"] is None and rt is not None:
        err, v = rt.cudaDriverGetVersion()
        if int(err) == 0 and v:
            out = {"version": _cuda_text(v), "source": "cuda-python cudaDriverGetVersion (the driver's CUDA)"}
    if out["version"] is None:
        smi = _smi(["nvidia-smi"])
        if smi and "CUDA Version:" in smi:
            out = {"version": smi.split("CUDA Version:")[1].split()[0], "source": "nvidia-smi (the driver's CUDA)"}
    if out["version"] is None and "torch" in sys.modules and getattr(sys.modules["torch"].version, "cuda", None):
        out = {"version": sys.modules["torch"].version.cuda, "source": "torch.version.cuda"}
    if rt is not None:
        err, v = rt.cudaRuntimeGetVersion()
        if int(err) == 0:
            out["cuda_python_runtime"] = _cuda_text(v)
    return out


def _cuda_text(v: int) -> str:
    """12060 -> "12.6": CUDA's version integers are 1000 * major + 10 * minor."""
    return f"{v // 1000}.{v % 1000 // 10}"


def gpu_info() -> dict:
    """GPU name and compute capability: nvidia-smi, else cuda-python, else the Jetson board name."""
    out = _smi(["nvidia-smi", "--query-gpu=name,compute_cap", "--format=csv,noheader"])
    if out and "," in out:
        name, cc = (s.strip() for s in out.splitlines()[0].rsplit(",", 1))
        return {"name": name, "compute_capability": cc, "source": "nvidia-smi"}
    rt = cudart()
    if rt is not None:
        err, prop = rt.cudaGetDeviceProperties(0)
        if int(err) == 0:
            name = prop.name.decode(errors="replace").rstrip("\x00") if isinstance(prop.name, bytes) else str(prop.name)
            return {"name": name, "compute_capability": f"{prop.major}.{prop.minor}", "source": "cuda-python"}
    board = Path("/proc/device-tree/model")
    if board.is_file():
        return {"name": board.read_text(errors="replace").strip("\x00 \n"), "compute_capability": None,
                "source": str(board)}
    return {"name": None, "compute_capability": None, "source": "not found"}


def _smi(cmd) -> str | None:
    if not shutil.which(cmd[0]):
        return None
    try:
        r = subprocess.run(cmd, capture_output=True, text=True, timeout=20)
    except (OSError, subprocess.SubprocessError):
        return None
    return r.stdout if r.returncode == 0 else None


def cudart():
    """cuda-python's runtime module (cuda.bindings.runtime from 12.x on, cuda.cudart before), or None."""
    for name in ("cuda.bindings.runtime", "cuda.cudart"):
        try:
            return importlib.import_module(name)
        except Exception:
            continue
    return None


# ---- GPU buffers ----------------------------------------------------------------------------------

class _CudaPython:
    name = "cuda-python"

    def __init__(self):
        rt = cudart()
        if rt is None:
            raise ImportError("no module cuda.bindings.runtime or cuda.cudart")
        self.rt = rt
        (count,) = self._ok(rt.cudaGetDeviceCount())
        if not count:
            raise RuntimeError("cuda-python sees no CUDA device")
        (self.stream,) = self._ok(rt.cudaStreamCreate())
        self.handle = int(self.stream)
        self.ptrs: dict = {}

    def _ok(self, result):
        err, *values = result if isinstance(result, tuple) else (result,)
        if int(err) != 0:   # cudaError_t: its name says what went wrong (cudaErrorInsufficientDriver, ...)
            raise RuntimeError(f"CUDA error {int(err)} ({getattr(err, 'name', 'unknown')})")
        return values

    def buffer(self, key: str, nbytes: int) -> int:
        ptr, size = self.ptrs.get(key, (None, 0))
        if size < nbytes:
            if ptr is not None:
                self._ok(self.rt.cudaFree(ptr))
            (ptr,) = self._ok(self.rt.cudaMalloc(nbytes))
            self.ptrs[key] = (ptr, nbytes)
        return int(self.ptrs[key][0])

    def h2d(self, ptr: int, arr: np.ndarray) -> None:
        kind = self.rt.cudaMemcpyKind.cudaMemcpyHostToDevice
        self._ok(self.rt.cudaMemcpyAsync(ptr, arr.ctypes.data, arr.nbytes, kind, self.stream))

    def d2h(self, arr: np.ndarray, ptr: int) -> None:
        kind = self.rt.cudaMemcpyKind.cudaMemcpyDeviceToHost
        self._ok(self.rt.cudaMemcpyAsync(arr.ctypes.data, ptr, arr.nbytes, kind, self.stream))

    def sync(self) -> None:
        self._ok(self.rt.cudaStreamSynchronize(self.stream))


class _Torch:
    name = "torch"

    def __init__(self):
        import torch

        if not torch.cuda.is_available():
            raise RuntimeError("torch sees no CUDA device")
        self.torch = torch
        self.stream = torch.cuda.Stream()
        self.handle = self.stream.cuda_stream
        self.bufs: dict = {}      # key -> uint8 CUDA tensor
        self.by_ptr: dict = {}    # device pointer -> that tensor

    def buffer(self, key: str, nbytes: int) -> int:
        t = self.bufs.get(key)
        if t is None or t.numel() < nbytes:
            t = self.bufs[key] = self.torch.empty(nbytes, dtype=self.torch.uint8, device="cuda")
            self.by_ptr = {b.data_ptr(): b for b in self.bufs.values()}
        return t.data_ptr()

    def _tensor(self, ptr: int):
        return self.by_ptr[ptr]

    def h2d(self, ptr: int, arr: np.ndarray) -> None:
        src = self.torch.from_numpy(np.ascontiguousarray(arr).view(np.uint8).reshape(-1))
        with self.torch.cuda.stream(self.stream):
            self._tensor(ptr)[:arr.nbytes].copy_(src)

    def d2h(self, arr: np.ndarray, ptr: int) -> None:
        with self.torch.cuda.stream(self.stream):
            arr.view(np.uint8).reshape(-1)[:] = self._tensor(ptr)[:arr.nbytes].cpu().numpy()

    def sync(self) -> None:
        self.stream.synchronize()


class _PyCuda:
    """pycuda's async copies need page-locked host memory (with pageable memory CUDA stages the copy
    and it may run synchronously): every copy goes through a pinned host buffer of its device buffer."""
    name = "pycuda"

    def __init__(self):
        import pycuda.autoinit  # noqa: F401  (creates a context on device 0)
        import pycuda.driver as cuda

        self.cuda = cuda
        self.stream = cuda.Stream()
        self.handle = self.stream.handle
        self.allocs: dict = {}     # key -> (device allocation, bytes)
        self.pinned: dict = {}     # device pointer -> its page-locked host buffer (uint8)
        self.pending: list = []    # (destination array, pinned buffer) filled in at sync

    def buffer(self, key: str, nbytes: int) -> int:
        alloc, size = self.allocs.get(key, (None, 0))
        if size < nbytes:
            alloc = self.cuda.mem_alloc(nbytes)
            self.allocs[key] = (alloc, nbytes)
            self.pinned[int(alloc)] = self.cuda.pagelocked_empty(nbytes, np.uint8)
        return int(alloc)

    def h2d(self, ptr: int, arr: np.ndarray) -> None:
        pinned = self.pinned[ptr][:arr.nbytes]
        pinned[:] = np.ascontiguousarray(arr).view(np.uint8).reshape(-1)
        self.cuda.memcpy_htod_async(ptr, pinned, self.stream)

    def d2h(self, arr: np.ndarray, ptr: int) -> None:
        pinned = self.pinned[ptr][:arr.nbytes]
        self.cuda.memcpy_dtoh_async(pinned, ptr, self.stream)
        self.pending.append((arr, pinned))

    def sync(self) -> None:
        self.stream.synchronize()
        for arr, pinned in self.pending:   # the copies have landed in the pinned buffers
            arr.view(np.uint8).reshape(-1)[:] = pinned
        self.pending.clear()


BUFFER_LIBRARIES = (("cuda-python", _CudaPython), ("torch", _Torch), ("pycuda", _PyCuda))


def gpu_buffers():
    """The first GPU buffer library that works here; NotRunnable naming what each one lacked."""
    why = []
    for name, cls in BUFFER_LIBRARIES:
        try:
            return cls()
        except Exception as e:  # ImportError, no device, a driver too old for the library
            why.append(f"{name}: {e}")
    raise NotRunnable("no GPU buffer library works here (" + "; ".join(why) + f"); {cuda_python_hint()}")


def cuda_python_hint() -> str:
    """The cuda-python install line for this device (JetPack 6: pinned to CUDA 12.6; else the CUDA
    major, CUDA_PYTHON), or every line, and the fallbacks."""
    version = cuda_version()["version"]
    major = int(version.split(".")[0]) if version else None
    jetson = is_jetson()
    if jetson and version and version.startswith("12.6"):
        line = f"for this device's CUDA {version} (JetPack 6): {JETPACK_6}"
    elif major in CUDA_PYTHON:   # an x86 host's CUDA 12.6 is no JetPack: its driver's major
        line = f"for this device's CUDA {version}: {CUDA_PYTHON[major]}"
    else:
        line = "cuda-python of the device's CUDA: " + "; ".join(
            [f"JetPack 6: {JETPACK_6}", *(f"CUDA {m}: {cmd}" for m, cmd in CUDA_PYTHON.items())])
    return f"{line}; {BUFFER_FALLBACKS if jetson else HOST_FALLBACKS}"
