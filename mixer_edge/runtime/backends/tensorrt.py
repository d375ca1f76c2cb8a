"""TensorRT: a serialized engine, built on this device from the artifact's ONNX (runtime/engine.py),
run with GPU buffers from backends/cuda.py. An engine runs only on the TensorRT version and GPU
that built it."""
from __future__ import annotations

import importlib
from pathlib import Path

import numpy as np

from ..artifact import listed
from ..errors import BadInput, NotRunnable
from ..needs import PILLOW, Need, install_hint
from .base import Backend, Options
from .cuda import CUDA_PYTHON, JETPACK_6, gpu_buffers, gpu_info, gpu_present

LIBRARY = "tensorrt"
JETSON = "a Jetson (JetPack 6.1 / 6.2), for the system python3 (3.10; pip: `sudo apt-get install python3-pip`)"
X86 = "an x86-64 Linux host whose NVIDIA driver supports CUDA {major} (r{driver} or newer; nvidia-smi shows it)"
NEEDS = (   # what edge_bench.py / trt_build.py import on a TensorRT device besides the standard library
    Need("tensorrt", "sudo apt-get install python3-libnvinfer",
         "on a Jetson: JetPack 6.1 / 6.2's TensorRT 10.3 bindings, for the system python3 (3.10); never "
         "pip there: PyPI's aarch64 wheels are built for Arm servers, not Jetson", JETSON),
    Need("tensorrt", 'pip install "tensorrt-cu12>=10,<12"',
         "on an x86-64 Linux machine with an NVIDIA GPU whose driver supports CUDA 12 (r535 or newer): "
         "NVIDIA's wheel with its CUDA 12 libraries. Plain `tensorrt` now installs the CUDA 13 build, "
         "which needs driver r580 or newer (nvidia-smi shows the driver's CUDA)", X86.format(major=12, driver=535)),
    Need("tensorrt", 'pip install "tensorrt-cu13>=10,<12"',
         "on an x86-64 Linux machine whose driver supports CUDA 13 (r580 or newer)", X86.format(major=13, driver=580)),
    Need("cuda", JETPACK_6,
         "GPU buffers, pinned to the device's CUDA 12.6 on JetPack 6 (a newer 12.x carries a CUDA runtime "
         f"JetPack's driver may refuse); on an x86 host, the driver's CUDA major ({CUDA_PYTHON[12]}, "
         f"{CUDA_PYTHON[13]}). A CUDA build of torch (on a Jetson, NVIDIA's JetPack wheel) or pycuda also serves",
         JETSON),
    Need("cuda", CUDA_PYTHON[12], "GPU buffers, of the driver's CUDA major", X86.format(major=12, driver=535)),
    Need("cuda", CUDA_PYTHON[13], "GPU buffers, of the driver's CUDA major", X86.format(major=13, driver=580)),
    Need("numpy", 'pip install "numpy>=1.24,<2"',
         "JetPack 6's NVIDIA Python wheels (its torch among them) are built against NumPy 1"),
    Need("PIL", PILLOW, "decodes image files and resizes images of another size"),
)


def import_tensorrt():
    try:
        return importlib.import_module("tensorrt")
    except ImportError as e:
        hint = install_hint(NEEDS, "tensorrt")   # JetPack's apt on a Jetson, never pip there
        raise NotRunnable(f"tensorrt is not installed here ({e}); {hint}") from None
    except Exception as e:  # the bindings wheel without its libraries fails with OSError and friends
        raise NotRunnable(f"tensorrt does not import here: {e}") from None


def trt_major(trt) -> int:
    return int(trt.__version__.split(".")[0])


def engine_section(manifest: dict) -> dict:
    return (manifest.get("export") or {}).get("engine") or {}


def check_engine_version(stamped: str | None, runtime_version: str) -> None:
    """Engines run only on the TensorRT version that built them."""
    if stamped is not None and stamped != runtime_version:
        raise BadInput(f"engine built with TensorRT {stamped}, this runtime is {runtime_version}: rebuild with "
                       f"`mixer-edge trt build DIR` (or `python trt_build.py DIR` on the device)")


class EngineRunner:
    """A deserialized engine: np.ndarray (N, C, H, W) float32 -> logits (N, K), in chunks of at most
    the profile's max batch; a chunk below its min batch is padded (repeating its images) and the
    padding's answers dropped, so every image count runs whatever the profile."""

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
        runtime = trt.Runtime(self.logger)
        if runtime is None:
            raise NotRunnable(f"TensorRT {trt.__version__} Runtime returned None: out of GPU memory?")
        self.engine = runtime.deserialize_cuda_engine(engine_path.read_bytes())
        if self.engine is None:
            raise BadInput(f"TensorRT {trt.__version__} cannot deserialize {engine_path} (built for another "
                           f"TensorRT or GPU?): rebuild with `mixer-edge trt build DIR`")
        self.context = self.engine.create_execution_context()
        if self.context is None:
            raise NotRunnable(f"TensorRT {trt.__version__} create_execution_context returned None: out of GPU "
                              f"memory? Close other GPU programs, or rebuild with a smaller --max-batch")
        names = [self.engine.get_tensor_name(i) for i in range(self.engine.num_io_tensors)]
        ins = [n for n in names if self.engine.get_tensor_mode(n) == trt.TensorIOMode.INPUT]
        outs = [n for n in names if n not in ins]
        if len(ins) != 1 or len(outs) != 1:
            raise BadInput(f"engine {engine_path} has inputs {ins} and outputs {outs}; expected one of each")
        self.input, self.output = ins[0], outs[0]
        self.in_dtype = np.dtype(trt.nptype(self.engine.get_tensor_dtype(self.input)))
        self.out_dtype = np.dtype(trt.nptype(self.engine.get_tensor_dtype(self.output)))
        min_shape, _, max_shape = self.engine.get_tensor_profile_shape(self.input, 0)
        self.min_batch, self.max_batch = int(min_shape[0]), int(max_shape[0])
        self.version = trt.__version__
        gpu = gpu_info()
        self.config = {"provider": "TensorRT", "engine": engine_path.name, "max_batch": self.max_batch,
                       "batch_range": [self.min_batch, self.max_batch],
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
        n = len(chunk)
        if n < self.min_batch:   # repeat the chunk's images up to the profile's minimum
            chunk = np.ascontiguousarray(chunk[np.arange(self.min_batch) % n])
        return self._execute(chunk)[:n]

    def _execute(self, chunk: np.ndarray) -> np.ndarray:
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


def load(folder, manifest: dict, opt: Options | None = None) -> Backend:
    """The engine the manifest lists (built on this device, hashed in the manifest)."""
    if opt is not None and any(getattr(opt, k, None) is not None for k in ("threads", "precision_hint", "provider")):
        raise BadInput("--threads, --precision-hint and --provider do not apply to TensorRT engines")
    eng = engine_section(manifest)
    if not eng.get("built"):
        raise NotRunnable(f"the engine is not built yet: build it on this device with `python3 trt_build.py "
                          f"{folder}` (at export: {eng.get('reason', 'no engine in the manifest')})")
    runner = EngineRunner(listed(folder, manifest, eng["file"]), eng.get("tensorrt"))
    return Backend(runner, runner.config, runner.what, {"tensorrt": runner.version})
