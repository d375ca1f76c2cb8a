"""A test double of TensorRT's Python bindings (10.3 as on JetPack 6, or 11.x), for the device
rehearsal only: the surface runtime/engine.py and runtime/backends/tensorrt.py use, with
TensorRT's return conventions. An "engine" is the ONNX file's bytes behind a small JSON header; it
runs with ONNX Runtime (basic optimizations: Q/DQ as written). See tests/doubles/README.md.

Behaviour from the environment:
    TRT_DOUBLE_VERSION   "10.3.0" (default) or e.g. "11.1.0"
    TRT_DOUBLE_FAIL      one of: builder (TypeError: a driver too old for this build's CUDA),
                         network, config, context (the factory returns None: out of memory),
                         build (build_serialized_network returns None), parse (the parser refuses)
    DOUBLE_GPU           the GPU (default "Orin (nvgpu)"; nvidia-smi and cuda doubles say the same)
"""
from __future__ import annotations

import ctypes
import enum
import json
import os
import sys

import numpy as np

__version__ = os.environ.get("TRT_DOUBLE_VERSION", "10.3.0")
MAJOR = int(__version__.split(".")[0])
_FAIL = os.environ.get("TRT_DOUBLE_FAIL", "")
_GPU = os.environ.get("DOUBLE_GPU", "Orin (nvgpu)")
MAGIC = b"TRT-DOUBLE-ENGINE\n"
LOG: list[tuple[int, str]] = []          # (severity, message) of everything logged, for in-process tests
SEVERITY = "FEWIV"                        # TensorRT's log tags: [F]atal, [E]rror, [W]arning, [I]nfo, [V]erbose


def _log(severity: int, msg: str) -> None:
    """As TensorRT's own logger does: to stderr, tagged, at WARNING and above by default."""
    LOG.append((severity, msg))
    print(f"[TRT] [{SEVERITY[severity]}] {msg}", file=sys.stderr)


class Logger:
    INTERNAL_ERROR, ERROR, WARNING, INFO, VERBOSE = range(5)

    def __init__(self, min_severity=1):
        self.min_severity = min_severity

    def log(self, severity, msg):
        _log(int(severity), msg)


class NetworkDefinitionCreationFlag(enum.IntEnum):
    if MAJOR < 11:
        EXPLICIT_BATCH = 0
    STRONGLY_TYPED = 1        # 11.x: still defined, deprecated and ignored (every network is strongly typed)


class BuilderFlag(enum.IntEnum):
    TF32 = 1                  # on by default in every builder config
    if MAJOR < 11:
        FP16 = 0              # removed in 11.x
        INT8 = 2


class MemoryPoolType(enum.IntEnum):
    WORKSPACE = 0


class TensorIOMode(enum.IntEnum):
    NONE, INPUT, OUTPUT = range(3)


class DataType(enum.IntEnum):
    FLOAT, HALF, INT8, INT32 = range(4)


def nptype(dtype) -> type:
    return {DataType.FLOAT: np.float32, DataType.HALF: np.float16, DataType.INT8: np.int8,
            DataType.INT32: np.int32}[DataType(dtype)]


class Dims(tuple):
    pass


class _Tensor:
    def __init__(self, name, shape):
        self.name, self.shape = name, Dims(shape)


class INetworkDefinition:
    def __init__(self, flags):
        self.flags, self.inputs, self.outputs, self.onnx = flags, [], [], None

    @property
    def num_inputs(self):
        return len(self.inputs)

    @property
    def num_outputs(self):
        return len(self.outputs)

    def get_input(self, i):
        return self.inputs[i]


class OnnxParser:
    def __init__(self, network, logger):
        self.network, self.logger, self.errors = network, logger, []

    @property
    def num_errors(self):
        return len(self.errors)

    def get_error(self, i):
        return self.errors[i]

    def parse_from_file(self, path) -> bool:
        import onnx

        if _FAIL == "parse":
            self.errors.append("In node 3 (parseGraph): INVALID_NODE: double refuses this file")
            return False
        model = onnx.load(str(path))
        self.network.onnx = open(path, "rb").read()
        for v in model.graph.input:
            dims = [d.dim_value if d.HasField("dim_value") else -1 for d in v.type.tensor_type.shape.dim]
            self.network.inputs.append(_Tensor(v.name, dims))
        for v in model.graph.output:
            dims = [d.dim_value if d.HasField("dim_value") else -1 for d in v.type.tensor_type.shape.dim]
            self.network.outputs.append(_Tensor(v.name, dims))
        return True


class IOptimizationProfile:
    def __init__(self):
        self.shapes = {}

    def set_shape(self, name, min, opt, max):  # noqa: A002 (TensorRT's parameter names)
        if not (list(min) <= list(opt) <= list(max)):
            raise ValueError("min <= opt <= max")
        self.shapes[name] = (tuple(min), tuple(opt), tuple(max))


class ITimingCache:
    def __init__(self, blob: bytes):
        self.blob = blob

    def serialize(self):
        return memoryview(self.blob or json.dumps({"tensorrt": __version__, "gpu": _GPU}).encode())


class IBuilderConfig:
    def __init__(self):
        self.flags = {BuilderFlag.TF32}
        self.pools, self.profiles, self.cache = {}, [], None

    def clear_flag(self, flag):
        self.flags.discard(flag)

    def set_flag(self, flag):
        self.flags.add(flag)

    def get_flag(self, flag) -> bool:
        return flag in self.flags

    def set_memory_pool_limit(self, pool, size):
        self.pools[pool] = int(size)

    def add_optimization_profile(self, profile) -> int:
        self.profiles.append(profile)
        return len(self.profiles) - 1

    def create_timing_cache(self, blob):
        return ITimingCache(bytes(blob))

    def set_timing_cache(self, cache, ignore_mismatch) -> bool:
        """False (with an ERROR logged) for a cache made by another TensorRT version or GPU."""
        if cache.blob:
            try:
                made = json.loads(cache.blob)
            except ValueError:
                made = {}
            if made != {"tensorrt": __version__, "gpu": _GPU} and not ignore_mismatch:
                _log(Logger.ERROR, "Timing cache: the cache was created on a different device or TensorRT version")
                return False
        self.cache = cache
        return True

    def get_timing_cache(self):
        return self.cache or ITimingCache(b"")


class Builder:
    def __init__(self, logger):
        if _FAIL == "builder":   # what pybind11 says when the C++ factory returns nullptr
            raise TypeError("pybind11::init(): factory function returned nullptr")
        self.logger = logger

    def create_network(self, flags=0):
        return None if _FAIL == "network" else INetworkDefinition(flags)

    def create_builder_config(self):
        return None if _FAIL == "config" else IBuilderConfig()

    def create_optimization_profile(self):
        return IOptimizationProfile()

    def build_serialized_network(self, network, config):
        if _FAIL == "build":
            return None
        if MAJOR < 11 and not network.flags & (1 << NetworkDefinitionCreationFlag.STRONGLY_TYPED):
            raise AssertionError("the double builds strongly typed networks only, as the artifacts need")
        (name, (mn, opt, mx)), = config.profiles[0].shapes.items()
        header = {"input": name, "output": "logits", "min": mn, "opt": opt, "max": mx, "gpu": _GPU,
                  "tensorrt": __version__, "tf32": BuilderFlag.TF32 in config.flags}
        return memoryview(MAGIC + json.dumps(header).encode() + b"\n" + network.onnx)


class Runtime:
    def __init__(self, logger):
        self.logger = logger

    def deserialize_cuda_engine(self, blob):
        blob = bytes(blob)
        if not blob.startswith(MAGIC):
            return None
        head, _, onnx_bytes = blob[len(MAGIC):].partition(b"\n")
        header = json.loads(head)
        if header["tensorrt"] != __version__ or header["gpu"] != _GPU:
            return None      # TensorRT refuses an engine of another version or GPU
        return ICudaEngine(header, onnx_bytes)


class ICudaEngine:
    def __init__(self, header, onnx_bytes):
        import onnxruntime as ort

        self.header = header
        so = ort.SessionOptions()
        so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_BASIC
        so.log_severity_level = 3
        self.session = ort.InferenceSession(onnx_bytes, so, providers=["CPUExecutionProvider"])
        self.classes = self.session.get_outputs()[0].shape[-1]

    num_io_tensors = 2

    def get_tensor_name(self, i):
        return (self.header["input"], self.header["output"])[i]

    def get_tensor_mode(self, name):
        return TensorIOMode.INPUT if name == self.header["input"] else TensorIOMode.OUTPUT

    def get_tensor_dtype(self, name):
        return DataType.FLOAT

    def get_tensor_shape(self, name):
        if name == self.header["input"]:
            return Dims([-1, *self.header["max"][1:]])
        return Dims([-1, self.classes])

    def get_tensor_profile_shape(self, name, profile):
        return [Dims(self.header[k]) for k in ("min", "opt", "max")]

    def create_execution_context(self):
        return None if _FAIL == "context" else IExecutionContext(self)


class IExecutionContext:
    def __init__(self, engine):
        self.engine, self.shape, self.addresses = engine, None, {}

    def set_input_shape(self, name, shape) -> bool:
        mn, mx = self.engine.header["min"], self.engine.header["max"]
        if not all(a <= s <= b for a, s, b in zip(mn, shape, mx)):
            return False
        self.shape = tuple(shape)
        return True

    def get_tensor_shape(self, name):
        if name == self.engine.header["input"]:
            return Dims(self.shape)
        return Dims([self.shape[0], self.engine.classes])

    def set_tensor_address(self, name, ptr) -> bool:
        self.addresses[name] = int(ptr)
        return True

    def execute_async_v3(self, stream_handle) -> bool:
        n = int(np.prod(self.shape))
        x = np.ctypeslib.as_array((ctypes.c_float * n).from_address(self.addresses[self.engine.header["input"]]))
        out = self.engine.session.run(None, {self.engine.session.get_inputs()[0].name: x.reshape(self.shape)})[0]
        ctypes.memmove(self.addresses[self.engine.header["output"]], np.ascontiguousarray(out, np.float32).ctypes.data,
                       out.nbytes)
        return True
