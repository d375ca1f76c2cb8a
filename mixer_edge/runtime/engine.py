"""The TensorRT engine of an artifact, built on the device that will run it (a Jetson with JetPack 6 /
TensorRT 10.x, or any NVIDIA GPU with TensorRT 10.x / 11.x), its versions stamped into the manifest,
then checked against the artifact's golden set. build_plan says how, as data, per TensorRT major:

  * Strongly typed network, for every precision. The artifact's ONNX already carries its types:
    fp32 layers, or an fp16-typed graph with explicit Casts around its fp32 islands, or Q/DQ nodes
    for INT8. TensorRT 10.x needs NetworkDefinitionCreationFlag.STRONGLY_TYPED for that; in 11.x
    every network is strongly typed and the flag is deprecated and ignored, so none is passed.
    No FP16 / INT8 builder flag (removed in 11.x, not allowed with strong typing in 10.x) and no
    calibrator (IInt8Calibrator is deprecated since 10.1 and removed in 11.x): the same artifact
    builds on both.
  * BuilderFlag.TF32 is cleared for every precision where it exists (it is on by default, strongly
    typed networks included): the FP32 layers of an fp32 engine, and the FP32 islands of fp16 and
    int8 engines (LayerNorm, the layers kept float), compute in FP32, as export validated them
    (trtexec's --noTF32).
  * One optimization profile over the batch axis (min / opt / max), the only dynamic axis.
  * A timing cache (ARTIFACT/timing.cache by default) is loaded when present and saved after the
    build, with a sidecar (timing.cache.json: TensorRT version, GPU) that says where it was made;
    one made by another TensorRT version or GPU is never handed to TensorRT (a fresh one is started).

After the build, model.engine is written beside the ONNX and the manifest is rewritten atomically
(temp file + os.replace) with the engine's sha256 added to "files" and export.engine holding the
TensorRT version, CUDA version, GPU name and compute capability, the plan and the build time.
The engine is run by backends/tensorrt.py.
"""
from __future__ import annotations

import json
import time
from pathlib import Path

from .artifact import MANIFEST, atomic_write_bytes, atomic_write_json, batch_axis, listed, read_manifest, sha256_file
from .backends import tensorrt as trt_backend
from .backends.cuda import cuda_version, gpu_info, gpu_present
from .backends.tensorrt import engine_section, import_tensorrt, trt_major
from .errors import BadInput, NotRunnable
from .golden import device_check

BUILDER_VERSION = "1"
ENGINE = "model.engine"
TIMING_CACHE = "timing.cache"
MIN_MAJOR = 10                     # JetPack 6.1 / 6.2 ship TensorRT 10.3; 11.x also builds these files
DEFAULT_BATCH = {"min_batch": 1, "opt_batch": 1, "max_batch": 32}
TENSORRT_WHEELS = 'pip install "tensorrt-cu12>=10,<12" for CUDA 12, "tensorrt-cu13>=10,<12" for CUDA 13'


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
    if precision not in ("fp32", "fp16", "int8", "int4"):
        raise BadInput(f"unknown precision {precision!r}; accepted: fp32, fp16, int8, int4")
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
        # Precision lives in the ONNX's types, never in builder flags: none are set on either major;
        # TF32 (on by default) is cleared for every precision, so float layers compute in FP32.
        "builder_flags": {"set": [], "clear": ["TF32"]},
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
    builder = _builder(trt, logger)
    flags = 0
    for name in network_flags(major):
        flags |= 1 << int(getattr(trt.NetworkDefinitionCreationFlag, name))
    network = _made(builder.create_network(flags), "Builder.create_network", trt)
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
                    timing_cache=timing_cache if timing_cache is not None else TIMING_CACHE,
                    workspace_mib=workspace_mib, onnx_kind=onnx_kind)
    config = _made(builder.create_builder_config(), "Builder.create_builder_config", trt)
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
    cache_path = out_dir / plan["timing_cache"]     # relative to the artifact unless given absolute
    cache_info = {"path": plan["timing_cache"], **_attach_timing_cache(config, cache_path, trt.__version__)}
    t0 = time.perf_counter()
    serialized = builder.build_serialized_network(network, config)
    build_s = time.perf_counter() - t0
    if serialized is None:
        raise BadInput(f"TensorRT {trt.__version__} could not build an engine from {onnx_path} (see its log above)")
    blob = bytes(memoryview(serialized))
    engine_path = out_dir / plan["engine_file"]
    atomic_write_bytes(engine_path, blob)
    saved = bytes(memoryview(config.get_timing_cache().serialize()))
    atomic_write_bytes(cache_path, saved)
    atomic_write_json(_cache_sidecar(cache_path), _cache_maker(trt.__version__))
    io = _engine_io(trt, logger, blob)
    return {"built": True, "file": plan["engine_file"], "sha256": sha256_file(engine_path), "bytes": len(blob),
            "tensorrt": trt.__version__, "tensorrt_major": major, "cuda": cuda_version(), "gpu": gpu_info(),
            "build_s": build_s, "built_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
            "flags_cleared": cleared, "timing_cache": {**cache_info, "saved_bytes": len(saved)},
            "io": io, "plan": plan, "builder": f"trt_build.py {BUILDER_VERSION}"}


def _builder(trt, logger):
    """trt.Builder, or NotRunnable when it cannot start: on a driver older than the CUDA this
    TensorRT build was made for, the bindings raise TypeError ("factory function returned nullptr")."""
    try:
        return _made(trt.Builder(logger), "Builder", trt)
    except TypeError as e:
        raise NotRunnable(f"TensorRT {trt.__version__} cannot start a builder here ({e}): the NVIDIA driver is older "
                          f"than the CUDA this TensorRT build needs. On an x86-64 host install the wheel of the "
                          f"driver's CUDA major ({TENSORRT_WHEELS}); on a Jetson, JetPack's own python3-libnvinfer") from None


def _made(obj, what: str, trt):
    """A TensorRT factory's result: they return None where the C++ call failed (out of GPU memory)."""
    if obj is None:
        raise NotRunnable(f"TensorRT {trt.__version__} {what} returned None: out of GPU memory? Close other GPU "
                          f"programs, or lower --max-batch / --workspace-mib, and build again")
    return obj


def _cache_sidecar(path: Path) -> Path:
    return path.with_name(path.name + ".json")


def _cache_maker(tensorrt_version: str) -> dict:
    """What a timing cache is tied to: the TensorRT version and the GPU it timed."""
    gpu = gpu_info()
    return {"tensorrt": tensorrt_version, "gpu": gpu["name"], "compute_capability": gpu["compute_capability"]}


def _attach_timing_cache(config, path: Path, tensorrt_version: str) -> dict:
    """Load the cache at path when its sidecar says it was made by this TensorRT on this GPU; a
    cache of another TensorRT version or GPU is never handed to TensorRT (it would log an error
    during a good build, and its timings do not apply): a fresh cache is started instead."""
    blob = path.read_bytes() if path.is_file() else b""
    made = None
    if blob and _cache_sidecar(path).is_file():
        try:
            made = json.loads(_cache_sidecar(path).read_text())
        except (OSError, ValueError):
            made = None
    if blob and made == _cache_maker(tensorrt_version):
        cache = config.create_timing_cache(blob)
        # ignore_mismatch=False: TensorRT itself refuses timings of another version or GPU too.
        if config.set_timing_cache(cache, ignore_mismatch=False) is not False:
            return {"loaded_bytes": len(blob)}
    config.set_timing_cache(config.create_timing_cache(b""), ignore_mismatch=False)
    if not blob:
        return {"loaded_bytes": 0}
    return {"loaded_bytes": 0, "note": f"{path.name} was made by another TensorRT version or GPU "
                                       f"({'unknown' if made is None else made}); started a fresh cache"}


def _engine_io(trt, logger, blob: bytes) -> list:
    """The built engine's I/O tensors, read back from the serialized engine (it must deserialize)."""
    engine = _made(trt.Runtime(logger), "Runtime", trt).deserialize_cuda_engine(blob)
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
    manifest = read_manifest(folder, rebuilt=(ENGINE,))   # a missing or corrupt old engine is what a rebuild mends
    trt = import_tensorrt()
    plan = build_plan(manifest, trt_major(trt), min_batch=min_batch, opt_batch=opt_batch, max_batch=max_batch,
                      timing_cache=timing_cache, workspace_mib=workspace_mib)
    onnx_file = (manifest.get("export") or {}).get("file", "model.onnx")
    p = plan["profile"]
    info = build_engine(listed(folder, manifest, onnx_file), manifest["precision"], folder, min_batch=p["min"][0],
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


def verify_engine(folder) -> dict:
    """The freshly built engine against the artifact's golden set (golden.device_check): passed,
    failed with the figures, or skipped with the reason (an engine that builds but cannot run here:
    no GPU buffer library works with this driver; the build itself stands)."""
    manifest = read_manifest(folder)
    try:
        backend = trt_backend.load(folder, manifest)
    except NotRunnable as why:
        return {"status": "skipped", "reason": f"the engine was built but cannot run here: {why}"}
    return device_check(folder, manifest, backend.run, batch_axis(manifest))
