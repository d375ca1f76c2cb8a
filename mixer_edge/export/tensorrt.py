"""TensorRT target: a TensorRT-ready ONNX per precision (fp32; FP16-typed with fp32 islands;
explicit Q/DQ int8 from export/qdq.py), validated here with ONNX Runtime, its engine built on the
device by the runtime's engine builder (runtime/engine.py, `trt_build.py` in every TensorRT
artifact; an engine is tied to its TensorRT version and GPU). The rules the files follow, and why,
are in docs/quantization.md (Q/DQ placement) and docs/tensorrt.md (FP16 islands, engine build);
check_explicit_quantization and check_fp16_model state them as code.
"""
from __future__ import annotations

import tempfile
from pathlib import Path

import numpy as np

from ..calibration import ranges
from ..errors import BadInput, CalibrationError, MissingDependency, NotRunnable, ValidationError
from ..runtime import engine
from ..runtime.backends import onnxruntime as ort_backend
from ..runtime.backends import tensorrt as trt_backend
from ..runtime.backends.cuda import gpu_present
from ..runtime.engine_cli import run_parsed
from ..runtime.signing import verify
from ..runtime.needs import install_hint
from .artifact import EDGE_BENCH, TRT_BUILD, load_artifact
from .base import Capabilities, Exported, LoadedRunner, Status, installed, missing_status, runtime_runner
from .fp16_typed import check_fp16_model, to_fp16_typed
from .int4 import OPSET as INT4_OPSET
from .int4 import qdq_int4
from .int4 import summary as int4_summary
from .int8 import needs_calibration, place_qdq
from .onnx_io import EXPORTER, add_metadata, export_fp32_onnx, onnx_versions, save_onnx
from .qdq import onnx_file_matmuls
from .tensorrt_rules import check_explicit_quantization

MODEL = "model.onnx"
ONNX_KINDS = {"fp32": "fp32", "fp16": "fp16-typed", "int8": "explicit-qdq", "int4": "fp16-typed-int4-weights"}
MAX_OPSET = 20   # the newest ONNX opset TensorRT 10.0-10.5's parser reads (JetPack 6: 10.3)


# ---- the three ONNX kinds ------------------------------------------------------------------------

def _write_fp32(model, ck, calib, spec) -> tuple:
    return model, {}


def _write_fp16(model, ck, calib, spec) -> tuple:
    m16, details = to_fp16_typed(model, None if calib is None else calib.x)
    problems = check_fp16_model(m16, details["large_tensors"])
    if problems:
        raise ValidationError("the fp16 TensorRT ONNX breaks the FP16 rules: " + "; ".join(problems))
    notes = [] if calib is not None else [
        "no calibration set: large activations were not scanned; only LayerNorm / ReduceMean are kept fp32"]
    return m16, {"fp16": details, "notes": notes}


def _write_int8(model, ck, calib, spec) -> tuple:
    q, details = place_qdq(model, ck, calib, "tensorrt", spec)
    problems = check_explicit_quantization(q)
    if problems:
        raise ValidationError("the int8 TensorRT ONNX breaks the explicit-quantization rules: " + "; ".join(problems))
    return q, {"qdq": details}


def _write_int4(model, ck, calib, spec) -> tuple:
    """INT4 weight-only, as TensorRT 10 takes it (ModelOpt's W4A16 for TensorRT): the FP16-typed
    graph with each MLP weight an int4 initializer behind a blocked DequantizeLinear with float16
    scales (export/int4.py), opset 21. The GEMMs run in FP16 on int4 weights."""
    m16, details = _write_fp16(model, ck, calib, spec)
    q = qdq_int4(m16, ck.model)
    return q, {**details, "int4": {**int4_summary(q), "activations": "fp16 (weight-only int4)",
                                   "opset_note": f"opset {INT4_OPSET}: DequantizeLinear's block_size; the engine "
                                                 f"build needs a TensorRT whose ONNX parser reads it"}}


_PRECISIONS = {"fp32": _write_fp32, "fp16": _write_fp16, "int8": _write_int8, "int4": _write_int4}


# ---- engine building (on a device with tensorrt + GPU) -------------------------------------------

def runs_here() -> tuple[bool, str]:
    """(can an engine be built and run here, why not). No heavy import unless a GPU is present."""
    have_gpu, why_gpu = gpu_present()
    if not installed("tensorrt"):
        reason = (f"needs tensorrt and an NVIDIA GPU: tensorrt is not installed here, the engine is built on the "
                  f"device ({install_hint(trt_backend.NEEDS, 'tensorrt')})")
        return False, reason + ("" if have_gpu else f"; {why_gpu}")
    if not have_gpu:
        return False, f"needs an NVIDIA GPU: {why_gpu}; the engine is built on the device"
    try:
        trt_backend.import_tensorrt()
    except NotRunnable as e:
        return False, str(e)
    return True, ""


def build_artifact_engine(args) -> int:
    """`mixer-edge trt build`: trt_build.py's own run (runtime/engine_cli.py) on parsed options."""
    art = load_artifact(args.artifact)   # not an artifact, or tampered: BadInput
    if art.target != "tensorrt":
        raise BadInput(f"{args.artifact} is a {art.target!r} artifact, not a TensorRT one; export one with "
                       f"`mixer-edge export CHECKPOINT --target tensorrt`")
    if args.verify_key is not None:   # an altered or unsigned artifact: refused before anything else is asked for
        verify(args.artifact, args.verify_key)
    if not installed("tensorrt"):
        # TensorRT comes from the device's own packages (JetPack's apt on a Jetson), not from a pip
        # extra that cannot fit every device: the runtime's table says how.
        raise MissingDependency(f"tensorrt is not installed here; {install_hint(trt_backend.NEEDS, 'tensorrt')}")
    return run_parsed(args)


def _engine_at_export(folder: Path, precision: str) -> dict:
    """The engine, built now where this machine can (tensorrt and a GPU); else, or when the build
    cannot start here (a driver too old for this TensorRT build, out of GPU memory), the artifact
    without it, saying why: it is built on the device."""
    defaults = dict(engine.DEFAULT_BATCH)
    ok, why = runs_here()
    if ok:
        try:
            info = engine.build_engine(folder / MODEL, precision, folder, **defaults, onnx_kind=ONNX_KINDS[precision])
            return {**info, "defaults": defaults}
        except NotRunnable as e:
            why = f"the engine could not be built here: {e}"
    return {"built": False, "reason": why, "defaults": defaults,
            "build_on_device": "python trt_build.py ARTIFACT_DIR (or mixer-edge trt build ARTIFACT_DIR)"}


# ---- the target ----------------------------------------------------------------------------------

class TensorRTTarget:
    name = "tensorrt"
    # requires: what is needed HERE to produce and validate the artifact. The engine build needs
    # tensorrt on the device, installed as the runtime backend's NEEDS says (the README prints it).
    capabilities = Capabilities(frozenset({"fp32", "fp16", "int8", "int4"}), ("onnx", "onnxruntime"), "onnx",
                                "TensorRT 10.x / 11.x on an NVIDIA GPU or Jetson (engine built on the device)")
    backend = trt_backend
    model_file = MODEL
    simulation = "tensorrt"
    launchers = (EDGE_BENCH, TRT_BUILD)

    def status(self) -> Status:
        if not installed(*self.capabilities.requires):
            return missing_status(self.capabilities)
        ok, why = runs_here()
        return Status(True, ok, "" if ok else f"{why}; export writes the TensorRT-ready ONNX, validated with "
                                              f"ONNX Runtime")

    def export(self, checkpoint, spec, calib, out_dir: Path) -> Exported:
        notes = _check_spec(checkpoint, spec, calib)
        out = Path(out_dir)
        with tempfile.TemporaryDirectory(prefix="mixer-edge-trt-") as tmp:
            model = export_fp32_onnx(checkpoint.model, Path(tmp) / "fp32.onnx", spec.opset)
        model, details = _PRECISIONS[spec.precision](model, checkpoint, calib, spec)
        save_onnx(add_metadata(model, checkpoint), out / MODEL)
        built = _engine_at_export(out, spec.precision)
        versions = onnx_versions()
        if built.get("built"):
            versions.update({"tensorrt": built["tensorrt"], "cuda": built["cuda"]["version"]})
        files = (MODEL, *((built["file"],) if built.get("built") else ()))
        return Exported(files=files, details={
            "file": MODEL, "onnx_kind": ONNX_KINDS[spec.precision],
            "opset": INT4_OPSET if spec.precision == "int4" else spec.opset,
            "exporter": EXPORTER, "dynamic_axes": {"input": ["batch"]},
            **details, "notes": notes + details.get("notes", []), "engine": built, "versions": versions})

    def load_runner(self, artifact) -> LoadedRunner:
        """The TensorRT engine itself; NotRunnable without an engine, tensorrt or a GPU."""
        return runtime_runner(self.backend, artifact)   # the device runtime's loader (engine listed, hashed)

    def validation_runner(self, artifact) -> LoadedRunner:
        """The engine when it was built here; otherwise ONNX Runtime on the same model.onnx."""
        if trt_backend.engine_section(artifact.manifest).get("built"):
            return self.load_runner(artifact)
        return ort_validation_runner(artifact.file(MODEL), artifact.precision)

    def matmul_ops(self, path) -> list:
        return onnx_file_matmuls(path)


def ort_validation_runner(path, precision: str) -> LoadedRunner:
    """ONNX Runtime (CPU) on the TensorRT-ready ONNX, as validation here. INT8 runs with basic
    optimizations only: Q/DQ execute as written (round to int8, float GEMM), the arithmetic of
    TensorRT's INT32-accumulating kernels. With all optimizations ONNX Runtime fuses them into its
    CPU integer kernels, which saturate on CPUs without VNNI: 22.8 dB logit SQNR instead of 39.2 dB
    on the digits model (MinMax, an AVX2 machine), which would misreport what TensorRT computes."""
    basic = precision in ("int8", "int4")   # int4: DequantizeLinear as written, not MatMulNBits on int8 activations
    backend = ort_backend.session(path, optimization="basic" if basic else "all")

    def run(x: np.ndarray) -> np.ndarray:
        x = np.ascontiguousarray(x, np.float32)
        if x.ndim != 4:
            raise BadInput(f"the runner takes (N, C, H, W) images, got shape {list(x.shape)}")
        return np.concatenate([backend.run(x[i:i + 256]) for i in range(0, max(len(x), 1), 256)])

    config = {**backend.config, "graph_optimization": "basic (Q/DQ executed as written, not fused into integer kernels)"
              if basic else "all", "stands_in_for": "the TensorRT engine, not built here"}
    return LoadedRunner(run=run, config=config,
                        what=f"{backend.what} (TensorRT-ready ONNX; engine not built here)")


def _check_spec(ck, spec, calib) -> list[str]:
    """Fail early on what cannot work; note (never drop silently) options that do not apply."""
    notes = []
    if spec.opset > MAX_OPSET:
        raise BadInput(f"ONNX opset {spec.opset} is newer than TensorRT 10.3's parser reads (JetPack 6; opsets 9 to "
                       f"{MAX_OPSET}); export the TensorRT target with opset {MAX_OPSET} or older")
    if spec.precision == "int8":
        if spec.weights_only:
            raise BadInput("TensorRT int8 is W8A8 explicit quantization; weights-only int8 is a Core ML option")
        if needs_calibration(ck, spec) and (calib is None or len(calib) == 0):
            raise CalibrationError("tensorrt int8 needs a calibration set for its activation scales; got none")
        ranges.method(spec.calib_method)
    elif spec.calib_method is not None:
        notes.append(f"--calib-method {spec.calib_method} applies to int8 only; {spec.precision} does not use it")
    if calib is not None:
        want = (ck.config.in_chans, *ck.config.img_size)
        if tuple(calib.x.shape[1:]) != want:
            raise CalibrationError(f"calibration images have shape {list(calib.x.shape[1:])} but the model takes "
                                   f"{list(want)} (channels, height, width)")
    return notes
