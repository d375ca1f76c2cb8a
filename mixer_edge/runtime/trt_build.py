#!/usr/bin/env python3
"""trt_build.py: build the TensorRT engine of a mixer-edge TensorRT artifact on the device that
will run it (a Jetson with JetPack 6 / TensorRT 10.x, or any NVIDIA GPU with TensorRT 10.x / 11.x),
stamp the versions into the artifact's manifest, and optionally benchmark the engine.

Self-contained on purpose, like edge_bench.py beside it: it needs tensorrt and numpy, plus one of
cuda-python, torch or pycuda for GPU buffers when it runs the engine. It never needs mixer_edge.
What to install on the device, with versions: edge_bench.NEEDS["tensorrt"] (the README prints it).

    python trt_build.py ARTIFACT_DIR [--max-batch N] [--opt-batch N] [--min-batch N]
                        [--timing-cache PATH] [--workspace-mib N] [--no-build]
                        [--data SPEC [--iters N] [--warmup N] [--batch-sizes 1,8,32] [--limit N]
                         [--images held-out|all] [--reference DIR] [--device-name NAME] [--json OUT]]

How the engine is built (build_plan says it as data, for each TensorRT major version):

  * Strongly typed network, for every precision. The artifact's ONNX already carries its types:
    fp32 layers, or an fp16-typed graph with explicit Casts around its fp32 islands, or Q/DQ nodes
    for INT8. TensorRT 10.x needs NetworkDefinitionCreationFlag.STRONGLY_TYPED for that; in 11.x
    every network is strongly typed and the flag is deprecated and ignored, so none is passed.
    No FP16 / INT8 builder flag (removed in 11.x, not allowed with strong typing in 10.x) and no
    calibrator (IInt8Calibrator is deprecated since 10.1 and removed in 11.x): the same artifact
    builds on both.
  * fp32: BuilderFlag.TF32 is cleared where it exists, so "fp32" means FP32 math, as validated.
  * One optimization profile over the batch axis (min / opt / max), the only dynamic axis.
  * A timing cache (ARTIFACT/timing.cache by default) is loaded when present and saved after the
    build; one made by another TensorRT version or GPU is not used (a fresh one is started).

After the build, model.engine is written beside the ONNX and the manifest is rewritten atomically
(temp file + os.replace) with the engine's sha256 added to "files" and export.engine holding the
TensorRT version, CUDA version, GPU name and compute capability, the plan and the build time.
An engine is tied to its TensorRT version and GPU: the runner refuses an engine stamped with
another TensorRT version.

With --data, the engine is then benchmarked with edge_bench.py's measurements into its JSON schema
(edge_bench.py must sit beside this script, as it does in every artifact). mixer-edge imports this
module for the same build (`mixer-edge trt build`) and for its TensorRT runner.

Exit status, as edge_bench.py: 0 done; 2 bad input; 3 cannot run here (no tensorrt, no GPU); 4 the
engine failed the artifact's golden check (device_check, run right after every build); 130
interrupted.
"""
from __future__ import annotations

import argparse
import importlib
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

try:  # inside the mixer_edge package
    from . import edge_bench as _eb
except ImportError:
    try:  # a script in an artifact folder: every TensorRT artifact carries edge_bench.py beside it
        import edge_bench as _eb
    except ImportError:
        raise SystemExit("error: trt_build.py needs edge_bench.py beside it (every TensorRT artifact carries "
                         "both); re-export the artifact with mixer-edge export --target tensorrt") from None

SCRIPT_VERSION = "1"
ENGINE = "model.engine"
TIMING_CACHE = "timing.cache"
MIN_MAJOR = 10                     # JetPack 6.1 / 6.2 ship TensorRT 10.3; 11.x also builds these files
DEFAULT_BATCH = {"min_batch": 1, "opt_batch": 1, "max_batch": 32}
GPU_NODES = ("/dev/nvidia0", "/dev/nvgpu/igpu0", "/dev/nvhost-ctrl-gpu", "/dev/nvhost-gpu")

# One vocabulary with edge_bench: its errors, exit codes, file helpers and result types.
BadInput, NotRunnable, Backend = _eb.BenchError, _eb.NotRunnable, _eb.Backend
EXIT_OK, EXIT_BAD_INPUT, EXIT_NOT_RUN = _eb.EXIT_OK, _eb.EXIT_BAD_INPUT, _eb.EXIT_NOT_RUN
EXIT_DEVICE_CHECK, EXIT_INTERRUPTED = _eb.EXIT_DEVICE_CHECK, _eb.EXIT_INTERRUPTED
MANIFEST, sha256_file, read_manifest = _eb.MANIFEST, _eb.sha256_file, _eb.read_manifest
atomic_write_bytes, atomic_write_json = _eb.atomic_write_bytes, _eb.atomic_write_json


def engine_section(manifest: dict) -> dict:
    return (manifest.get("export") or {}).get("engine") or {}


# ---- what is here: tensorrt, a GPU, versions -----------------------------------------------------

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


def import_tensorrt():
    try:
        return importlib.import_module("tensorrt")
    except ImportError as e:
        hint = _eb.install_hint("tensorrt", "tensorrt")   # JetPack's apt on a Jetson, never pip there
        raise NotRunnable(f"tensorrt is not installed here ({e}); {hint}") from None
    except Exception as e:  # the bindings wheel without its libraries fails with OSError and friends
        raise NotRunnable(f"tensorrt does not import here: {e}") from None


def trt_major(trt) -> int:
    return int(trt.__version__.split(".")[0])


def cuda_version() -> dict:
    """The CUDA version and where it was read; None where nothing says."""
    for p in (Path("/usr/local/cuda/version.json"),):
        try:
            return {"version": json.loads(p.read_text())["cuda"]["version"], "source": str(p)}
        except (OSError, KeyError, ValueError):
            pass
    rt = _cudart()
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
    rt = _cudart()
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


def _cudart():
    for name in ("cuda.bindings.runtime", "cuda.cudart"):
        try:
            return importlib.import_module(name)
        except Exception:
            continue
    return None


# ---- the build plan: pure data, per TensorRT major version --------------------------------------

def network_flags(major: int) -> list:
    """NetworkDefinitionCreationFlag names passed to create_network."""
    if major < MIN_MAJOR:
        raise BadInput(f"TensorRT {major}.x is too old: these artifacts need TensorRT {MIN_MAJOR}.x "
                       f"(JetPack 6.1 or newer) or 11.x (strongly typed networks, explicit quantization)")
    return ["STRONGLY_TYPED"] if major == 10 else []  # 11.x: always strongly typed, flag deprecated


def plan_for(precision: str, input_name: str, chw, major: int, *, min_batch: int = 1, opt_batch: int = 1,
             max_batch: int = 32, fixed_batch: int | None = None, timing_cache=None,
             workspace_mib: int | None = None, onnx_kind: str | None = None) -> dict:
    if precision not in ("fp32", "fp16", "int8"):
        raise BadInput(f"unknown precision {precision!r}; accepted: fp32, fp16, int8")
    if fixed_batch is not None:  # a model exported with a fixed batch has one shape only
        min_batch = opt_batch = max_batch = fixed_batch
    if not 1 <= min_batch <= opt_batch <= max_batch:
        raise BadInput(f"batch sizes need 1 <= min <= opt <= max; got min {min_batch}, opt {opt_batch}, "
                       f"max {max_batch}")
    if workspace_mib is not None and workspace_mib < 1:
        raise BadInput(f"--workspace-mib must be at least 1, got {workspace_mib}")
    chw = [int(d) for d in chw]
    return {
        "tensorrt_major": major, "precision": precision, "onnx_kind": onnx_kind,
        "network": {"strongly_typed": True, "creation_flags": network_flags(major)},
        # Precision lives in the ONNX's types, never in builder flags: none are set on either major.
        "builder_flags": {"set": [], "clear": ["TF32"] if precision == "fp32" else []},
        "calibrator": None,
        "profile": {"input": input_name, "min": [min_batch, *chw], "opt": [opt_batch, *chw],
                    "max": [max_batch, *chw]},
        "timing_cache": str(timing_cache) if timing_cache is not None else TIMING_CACHE,
        "workspace_bytes": None if workspace_mib is None else int(workspace_mib) << 20,
        "engine_file": ENGINE,
    }


def build_plan(manifest: dict, major: int, *, min_batch: int | None = None, opt_batch: int | None = None,
               max_batch: int | None = None, timing_cache=None, workspace_mib: int | None = None) -> dict:
    """The parameters build_engine uses for this artifact on TensorRT `major`, as data."""
    if manifest.get("target") != "tensorrt":
        raise BadInput(f"not a TensorRT artifact: its manifest says target {manifest.get('target')!r}; "
                       f"export one with `mixer-edge export CHECKPOINT --target tensorrt`")
    shape = (manifest.get("input") or {}).get("shape")
    if not shape or len(shape) != 4:
        raise BadInput(f"manifest input shape {shape!r} is not (batch, C, H, W)")
    defaults = {**DEFAULT_BATCH, **(engine_section(manifest).get("defaults") or {})}
    asked = {"min_batch": min_batch, "opt_batch": opt_batch, "max_batch": max_batch}
    fixed = shape[0] if isinstance(shape[0], int) else None
    if fixed is not None and any(v not in (None, fixed) for v in asked.values()):
        raise BadInput(f"the model's batch is fixed at {fixed}; got {', '.join(f'{k} {v}' for k, v in asked.items() if v)}")
    batch = {k: (v if v is not None else defaults[k]) for k, v in asked.items()}
    if max_batch is not None:  # a smaller --max-batch pulls the defaults below it along
        for k in ("min_batch", "opt_batch"):
            if asked[k] is None:
                batch[k] = min(batch[k], max_batch)
    return plan_for(manifest["precision"], (manifest.get("input") or {}).get("name", "input"), shape[1:], major,
                    **batch, fixed_batch=fixed,
                    timing_cache=timing_cache, workspace_mib=workspace_mib,
                    onnx_kind=(manifest.get("export") or {}).get("onnx_kind"))


# ---- building -----------------------------------------------------------------------------------

def build_engine(onnx_path, precision: str, out_dir, min_batch: int = 1, opt_batch: int = 1, max_batch: int = 32,
                 timing_cache=None, workspace_mib: int | None = None, onnx_kind: str | None = None) -> dict:
    """Parse the ONNX, build a serialized engine into out_dir/model.engine, save the timing cache.
    Returns the engine section for the manifest. Needs tensorrt and a GPU (NotRunnable otherwise)."""
    trt = import_tensorrt()
    major = trt_major(trt)
    have_gpu, why = gpu_present()
    if not have_gpu:
        raise NotRunnable(why)
    out_dir = Path(out_dir)
    logger = trt.Logger(trt.Logger.WARNING)
    builder = trt.Builder(logger)
    flags = 0
    for name in network_flags(major):
        flags |= 1 << int(getattr(trt.NetworkDefinitionCreationFlag, name))
    network = builder.create_network(flags)
    parser = trt.OnnxParser(network, logger)
    if not parser.parse_from_file(str(onnx_path)):
        errors = "; ".join(str(parser.get_error(i)) for i in range(parser.num_errors))
        raise BadInput(f"TensorRT {trt.__version__} cannot parse {onnx_path}: {errors}")
    if network.num_inputs != 1 or network.num_outputs != 1:
        raise BadInput(f"{onnx_path} has {network.num_inputs} inputs and {network.num_outputs} outputs; "
                       f"a classifier has one of each")
    inp = network.get_input(0)
    shape = tuple(inp.shape)
    plan = plan_for(precision, inp.name, shape[1:], major, min_batch=min_batch, opt_batch=opt_batch,
                    max_batch=max_batch, fixed_batch=None if shape[0] == -1 else shape[0],
                    timing_cache=timing_cache if timing_cache is not None else out_dir / TIMING_CACHE,
                    workspace_mib=workspace_mib, onnx_kind=onnx_kind)
    config = builder.create_builder_config()
    cleared = []
    for name in plan["builder_flags"]["clear"]:
        if hasattr(trt.BuilderFlag, name):
            config.clear_flag(getattr(trt.BuilderFlag, name))
            cleared.append(name)
    if plan["workspace_bytes"] is not None:
        config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, plan["workspace_bytes"])
    profile = builder.create_optimization_profile()
    p = plan["profile"]
    profile.set_shape(p["input"], p["min"], p["opt"], p["max"])
    config.add_optimization_profile(profile)
    cache_info = _attach_timing_cache(config, Path(plan["timing_cache"]))
    t0 = time.perf_counter()
    serialized = builder.build_serialized_network(network, config)
    build_s = time.perf_counter() - t0
    if serialized is None:
        raise BadInput(f"TensorRT {trt.__version__} could not build an engine from {onnx_path} (see its log above)")
    blob = bytes(memoryview(serialized))
    engine_path = out_dir / plan["engine_file"]
    atomic_write_bytes(engine_path, blob)
    saved = bytes(memoryview(config.get_timing_cache().serialize()))
    atomic_write_bytes(plan["timing_cache"], saved)
    io = _engine_io(trt, logger, blob)
    return {"built": True, "file": plan["engine_file"], "sha256": sha256_file(engine_path), "bytes": len(blob),
            "tensorrt": trt.__version__, "tensorrt_major": major, "cuda": cuda_version(), "gpu": gpu_info(),
            "build_s": build_s, "built_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
            "flags_cleared": cleared, "timing_cache": {**cache_info, "saved_bytes": len(saved)},
            "io": io, "plan": plan, "builder": f"trt_build.py {SCRIPT_VERSION}"}


def _attach_timing_cache(config, path: Path) -> dict:
    blob = path.read_bytes() if path.is_file() else b""
    cache = config.create_timing_cache(blob) if blob else None
    # ignore_mismatch=False: timings from another TensorRT version or GPU are never used.
    if cache is not None and config.set_timing_cache(cache, ignore_mismatch=False) is not False:
        return {"path": str(path), "loaded_bytes": len(blob)}
    config.set_timing_cache(config.create_timing_cache(b""), ignore_mismatch=False)
    info = {"path": str(path), "loaded_bytes": 0}
    if blob:
        info["note"] = f"{path} was made by another TensorRT version or GPU; started a fresh cache"
    return info


def _engine_io(trt, logger, blob: bytes) -> list:
    """The built engine's I/O tensors, read back from the serialized engine (it must deserialize)."""
    engine = trt.Runtime(logger).deserialize_cuda_engine(blob)
    if engine is None:
        raise BadInput("TensorRT built an engine it cannot deserialize")
    return [{"name": n, "mode": str(engine.get_tensor_mode(n)).split(".")[-1],
             "dtype": str(engine.get_tensor_dtype(n)).split(".")[-1], "shape": list(engine.get_tensor_shape(n))}
            for n in (engine.get_tensor_name(i) for i in range(engine.num_io_tensors))]


def build_artifact(folder, *, min_batch: int | None = None, opt_batch: int | None = None,
                   max_batch: int | None = None, timing_cache=None, workspace_mib: int | None = None) -> dict:
    """Build ARTIFACT/model.engine from the artifact's ONNX and rewrite its manifest (atomically)
    with the engine in "files" and export.engine stamped. Returns the engine section."""
    folder = Path(folder)
    manifest = read_manifest(folder)
    trt = import_tensorrt()
    plan = build_plan(manifest, trt_major(trt), min_batch=min_batch, opt_batch=opt_batch, max_batch=max_batch,
                      timing_cache=timing_cache if timing_cache is not None else folder / TIMING_CACHE,
                      workspace_mib=workspace_mib)
    onnx_file = (manifest.get("export") or {}).get("file", "model.onnx")
    p = plan["profile"]
    info = build_engine(_eb.listed(folder, manifest, onnx_file), manifest["precision"], folder, min_batch=p["min"][0],
                        opt_batch=p["opt"][0], max_batch=p["max"][0], timing_cache=plan["timing_cache"],
                        workspace_mib=workspace_mib, onnx_kind=plan["onnx_kind"])
    stamp_engine(folder, manifest, info)
    return info


def stamp_engine(folder, manifest: dict, info: dict) -> dict:
    """Record a built engine in the artifact's manifest: its file entry (sha256) in "files",
    export.engine = info, the TensorRT / CUDA versions; rewritten atomically. Returns the manifest."""
    folder = Path(folder)
    engine_file = folder / info["file"]
    entry = {"path": info["file"], "sha256": sha256_file(engine_file), "bytes": engine_file.stat().st_size}
    if entry["sha256"] != info["sha256"]:
        raise BadInput(f"{engine_file} changed while its manifest entry was written; rebuild it")
    manifest["files"] = [e for e in manifest["files"] if e["path"] != info["file"]] + [entry]
    manifest.setdefault("export", {})["engine"] = {**info, "defaults": engine_section(manifest).get("defaults")}
    manifest.setdefault("versions", {}).update({"tensorrt": info["tensorrt"], "cuda": info["cuda"]["version"]})
    atomic_write_json(folder / MANIFEST, manifest)
    return manifest


# ---- running ------------------------------------------------------------------------------------

def check_engine_version(stamped: str | None, runtime_version: str) -> None:
    """Engines run only on the TensorRT version that built them."""
    if stamped is not None and stamped != runtime_version:
        raise BadInput(f"engine built with TensorRT {stamped}, this runtime is {runtime_version}: rebuild with "
                       f"`mixer-edge trt build DIR` (or `python trt_build.py DIR` on the device)")


class _CudaPython:
    name = "cuda-python"

    def __init__(self):
        rt = _cudart()
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
    """The cuda-python install line for this device's CUDA major (edge_bench.CUDA_PYTHON), or all of them."""
    version = cuda_version()["version"]
    major = int(version.split(".")[0]) if version else None
    if major in _eb.CUDA_PYTHON:
        return f"for this device's CUDA {version}: {_eb.CUDA_PYTHON[major]}"
    return "cuda-python of the device's CUDA major: " + "; ".join(f"CUDA {m}: {line}"
                                                                  for m, line in _eb.CUDA_PYTHON.items())


class EngineRunner:
    """A deserialized engine: np.ndarray (N, C, H, W) float32 -> logits (N, K), in chunks of at most
    the profile's max batch."""

    def __init__(self, engine_path, stamped_version: str | None = None):
        trt = import_tensorrt()
        check_engine_version(stamped_version, trt.__version__)
        have_gpu, why = gpu_present()
        if not have_gpu:
            raise NotRunnable(why)
        engine_path = Path(engine_path)
        if not engine_path.is_file():
            raise BadInput(f"engine {engine_path} not found; build it with `mixer-edge trt build DIR`")
        self.buffers = gpu_buffers()
        self.logger = trt.Logger(trt.Logger.WARNING)
        self.engine = trt.Runtime(self.logger).deserialize_cuda_engine(engine_path.read_bytes())
        if self.engine is None:
            raise BadInput(f"TensorRT {trt.__version__} cannot deserialize {engine_path} (built for another "
                           f"TensorRT or GPU?): rebuild with `mixer-edge trt build DIR`")
        self.context = self.engine.create_execution_context()
        names = [self.engine.get_tensor_name(i) for i in range(self.engine.num_io_tensors)]
        ins = [n for n in names if self.engine.get_tensor_mode(n) == trt.TensorIOMode.INPUT]
        outs = [n for n in names if n not in ins]
        if len(ins) != 1 or len(outs) != 1:
            raise BadInput(f"engine {engine_path} has inputs {ins} and outputs {outs}; expected one of each")
        self.input, self.output = ins[0], outs[0]
        self.in_dtype = np.dtype(trt.nptype(self.engine.get_tensor_dtype(self.input)))
        self.out_dtype = np.dtype(trt.nptype(self.engine.get_tensor_dtype(self.output)))
        _, _, max_shape = self.engine.get_tensor_profile_shape(self.input, 0)
        self.max_batch = int(max_shape[0])
        self.version = trt.__version__
        gpu = gpu_info()
        self.config = {"provider": "TensorRT", "engine": engine_path.name, "max_batch": self.max_batch,
                       "buffers": self.buffers.name, "input_dtype": str(self.in_dtype), "gpu": gpu["name"]}
        self.what = f"tensorrt {trt.__version__} engine on {gpu['name'] or 'NVIDIA GPU'}"

    def __call__(self, x: np.ndarray) -> np.ndarray:
        x = np.ascontiguousarray(x, dtype=self.in_dtype)
        if x.ndim != 4:
            raise BadInput(f"the runner takes (N, C, H, W) images, got shape {list(x.shape)}")
        if len(x) == 0:
            return np.zeros((0, int(self.engine.get_tensor_shape(self.output)[-1])), np.float32)
        return np.concatenate([self._run(x[i:i + self.max_batch]) for i in range(0, len(x), self.max_batch)])

    def _run(self, chunk: np.ndarray) -> np.ndarray:
        ctx, buf = self.context, self.buffers
        if not ctx.set_input_shape(self.input, tuple(chunk.shape)):
            raise BadInput(f"input shape {list(chunk.shape)} is outside the engine's profile")
        out = np.empty(tuple(ctx.get_tensor_shape(self.output)), self.out_dtype)
        d_in, d_out = buf.buffer("in", chunk.nbytes), buf.buffer("out", out.nbytes)
        buf.h2d(d_in, chunk)
        ctx.set_tensor_address(self.input, d_in)
        ctx.set_tensor_address(self.output, d_out)
        if not ctx.execute_async_v3(buf.handle):
            raise RuntimeError("TensorRT execute_async_v3 failed (see its log above)")
        buf.d2h(out, d_out)
        buf.sync()
        return out.astype(np.float32, copy=False)


def load_tensorrt(folder, manifest: dict, opt=None) -> Backend:
    """edge_bench's backend for target "tensorrt": load the engine the manifest lists."""
    if opt is not None and any(getattr(opt, k, None) is not None for k in ("threads", "precision_hint", "provider")):
        raise BadInput("--threads, --precision-hint and --provider do not apply to TensorRT engines")
    eng = engine_section(manifest)
    if not eng.get("built"):
        raise NotRunnable(f"the engine is not built ({eng.get('reason', 'no engine in the manifest')}); "
                          f"build it on this device: python trt_build.py {folder}")
    runner = EngineRunner(_eb.listed(folder, manifest, eng["file"]), eng.get("tensorrt"))
    return Backend(runner, runner.config, runner.what, {"tensorrt": runner.version})


# ---- command line -------------------------------------------------------------------------------

def build_parser(add_help: bool = True) -> argparse.ArgumentParser:
    """The script's options; `mixer-edge trt build` takes the very same (argparse parents)."""
    p = argparse.ArgumentParser(prog="trt_build.py", description=__doc__.split("\n\n")[0], add_help=add_help)
    p.add_argument("artifact", help="TensorRT artifact folder (with manifest.json and model.onnx)")
    p.add_argument("--min-batch", type=int, default=None, help="optimization profile minimum batch (default 1)")
    p.add_argument("--opt-batch", type=int, default=None, help="batch TensorRT tunes kernels for (default 1)")
    p.add_argument("--max-batch", type=int, default=None, help="largest batch the engine takes (default 32)")
    p.add_argument("--timing-cache", default=None, help="timing cache file (default ARTIFACT/timing.cache)")
    p.add_argument("--workspace-mib", type=int, default=None, help="builder workspace limit (default TensorRT's)")
    p.add_argument("--no-build", action="store_true", help="benchmark the engine already built")
    p.add_argument("--data", default=None, help="benchmark on this data after building (edge_bench.py's DATA)")
    p.add_argument("--iters", type=int, default=100, help="timed calls at batch 1 (default 100)")
    p.add_argument("--warmup", type=int, default=10, help="untimed calls (default 10)")
    p.add_argument("--batch-sizes", default="1,8,32", help="throughput batch sizes (default 1,8,32)")
    p.add_argument("--limit", type=int, default=None, help="use only the first N evaluation images")
    p.add_argument("--images", default="held-out", choices=_eb.SELECTIONS, help="as edge_bench.py")
    p.add_argument("--reference", default=None, help="FP32 artifact folder for top-1 agreement")
    p.add_argument("--device-name", default=None, help="name of this device in reports")
    p.add_argument("--json", default=None, help="write the benchmark JSON here (atomically)")
    return p


def bench(folder, args) -> dict:
    """Benchmark the built engine with edge_bench's measurements; returns its result document."""
    settings = _eb.Settings(warmup=args.warmup, iters=args.iters, batch_sizes=_eb.parse_batch_sizes(args.batch_sizes))
    data = _eb.read_data(args.data)
    entry, versions = _eb.bench_artifact(folder, data, settings, _eb.Options(), args.images, args.limit,
                                         args.reference)
    doc = _eb.document([entry], _eb.device_info(args.device_name),
                       {**_eb.base_versions(), **versions, "trt_build": SCRIPT_VERSION}, settings,
                       "trt_build.py", args.data)
    print(_eb.format_table(doc))
    if args.json:
        atomic_write_json(args.json, doc)
    return doc


def run(argv=None) -> int:
    return run_parsed(build_parser().parse_args(argv))


def run_parsed(args) -> int:
    if args.no_build and not args.data:
        raise BadInput("--no-build only makes sense with --data (benchmark the engine already built)")
    if not args.no_build:
        info = build_artifact(args.artifact, min_batch=args.min_batch, opt_batch=args.opt_batch,
                              max_batch=args.max_batch, timing_cache=args.timing_cache,
                              workspace_mib=args.workspace_mib)
        p = info["plan"]["profile"]
        print(f"built {Path(args.artifact) / info['file']} ({info['bytes'] / 1e6:.1f} MB) in {info['build_s']:.1f} s: "
              f"TensorRT {info['tensorrt']}, CUDA {info['cuda']['version']}, {info['gpu']['name']} "
              f"(sm {info['gpu']['compute_capability']}), batch {p['min'][0]}..{p['max'][0]} (opt {p['opt'][0]})")
        if not verify_engine(args.artifact):
            return EXIT_DEVICE_CHECK
    if args.data:
        doc = bench(args.artifact, args)
        if doc["results"][0]["status"] != "ok":
            print(f"error: not run: {doc['results'][0]['reason']}", file=sys.stderr)
            return EXIT_NOT_RUN
        return _eb.check_exit(doc["results"][0])
    return EXIT_OK


def verify_engine(folder) -> bool:
    """The freshly built engine against the artifact's golden set (edge_bench.device_check); prints
    the outcome. False when it failed; True when it passed or could not be checked (says why)."""
    manifest = read_manifest(folder)
    backend = load_tensorrt(folder, manifest)
    check = _eb.device_check(folder, manifest, backend.run, _eb.batch_axis(manifest))
    if check["status"] == "failed":
        print(f"error: device check failed: {check['reason']}", file=sys.stderr)
        return False
    print(f"device check {check['status']}: " + (check.get("reason") or
          f"logit SQNR {check['sqnr_db']} dB against FP32 PyTorch on {check['n']} golden images "
          f"(threshold {check['threshold_sqnr_db']} dB)"))
    return True


INTERRUPTED = "interrupted; the manifest was not changed unless the build finished"


def main(argv=None) -> int:
    return _eb.error_boundary(lambda: run(argv), _eb.ERRORS, INTERRUPTED)


if __name__ == "__main__":
    sys.exit(main())
