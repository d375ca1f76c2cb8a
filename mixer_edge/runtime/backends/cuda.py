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

GPU_NODES = ("/dev/nvidia0", "/dev/nvgpu/igpu0", "/dev/nvhost-ctrl-gpu", "/dev/nvhost-gpu")
# cuda-python's major must be the device's CUDA major (it carries its own CUDA runtime). A Python
# older than the newest release's floor makes pip take an older release of the same major.
CUDA_PYTHON = {11: 'pip install "cuda-python>=11.8,<12"', 12: 'pip install "cuda-python>=12,<13"',
               13: 'pip install "cuda-python>=13,<14"'}


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
    """The CUDA version and where it was read; None where nothing says."""
    for p in (Path("/usr/local/cuda/version.json"),):
        try:
            return {"version": json.loads(p.read_text())["cuda"]["version"], "source": str(p)}
        except (OSError, KeyError, ValueError):
            pass
    rt = cudart()
    if rt is not None:
        err, v = rt.cudaRuntimeGetVersion()
        if int(err) == 0:
            return {"version": f"{v // 1000}.{v % 1000 // 10}", "source": "cuda-python cudaRuntimeGetVersion"}
    if "torch" in sys.modules and getattr(sys.modules["torch"].version, "cuda", None):
        return {"version": sys.modules["torch"].version.cuda, "source": "torch.version.cuda"}
    out = _smi(["nvidia-smi"])
    if out and "CUDA Version:" in out:
        return {"version": out.split("CUDA Version:")[1].split()[0], "source": "nvidia-smi (driver's CUDA)"}
    return {"version": None, "source": "not found"}


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
        if int(err) != 0:
            raise RuntimeError(f"CUDA error {err}")
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
    name = "pycuda"

    def __init__(self):
        import pycuda.autoinit  # noqa: F401  (creates a context on device 0)
        import pycuda.driver as cuda

        self.cuda = cuda
        self.stream = cuda.Stream()
        self.handle = self.stream.handle
        self.allocs: dict = {}

    def buffer(self, key: str, nbytes: int) -> int:
        alloc, size = self.allocs.get(key, (None, 0))
        if size < nbytes:
            self.allocs[key] = (self.cuda.mem_alloc(nbytes), nbytes)
        return int(self.allocs[key][0])

    def h2d(self, ptr: int, arr: np.ndarray) -> None:
        self.cuda.memcpy_htod_async(ptr, arr, self.stream)

    def d2h(self, arr: np.ndarray, ptr: int) -> None:
        self.cuda.memcpy_dtoh_async(arr, ptr, self.stream)

    def sync(self) -> None:
        self.stream.synchronize()


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
    """The cuda-python install line for this device's CUDA major (CUDA_PYTHON), or all of them."""
    version = cuda_version()["version"]
    major = int(version.split(".")[0]) if version else None
    if major in CUDA_PYTHON:
        return f"for this device's CUDA {version}: {CUDA_PYTHON[major]}"
    return "cuda-python of the device's CUDA major: " + "; ".join(f"CUDA {m}: {line}"
                                                                  for m, line in CUDA_PYTHON.items())
