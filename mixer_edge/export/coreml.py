"""Core ML target: one ML Program (model.mlpackage) per precision, converted by coremltools.

    fp32  ct.convert(compute_precision=FLOAT32)
    fp16  ct.convert(compute_precision=FLOAT16), the ML Program default
    int8  W8A8 (the default): coremltools.optimize.torch's LinearQuantizer on the PyTorch model,
          calibrated on the shared calibration set (observers only, no training), finalized, then
          converted (iOS17 / macOS14 or newer: `quantize` / `dequantize` ops exist from there on);
          --weights-only: the FP16 program with int8 weights (optimize.coreml.linear_quantize_weights)
    int4  the FP16 program with the MLPs' GPTQ int4 weights as constexpr_blockwise_shift_scale, or
          with --int4-format palette their palettes as constexpr_lut_to_dense (export/coreml_int4.py;
          iOS18 / macOS15 or newer), activations float16

Input "input": a tensor (batch 1..64, C, H, W) float32, or with --coreml-input image an image whose
preprocessing ((x / 255 - mean) / std) is baked in as ImageType scale / bias. Output "logits"
(batch, K). Class names go into the model's user_defined_metadata, not ct.ClassifierConfig: a
classifier replaces the logits with a classLabel + probabilities dict, which every runner, the
manifest and the validation tolerances (on logits) would have to special-case.

Core ML predicts only on macOS. On Linux every program is checked structurally (check_program:
op types, quantized weights, activation quantize ops, compute dtypes, input and output), and the
W8A8 export is validated by running its quantized PyTorch model; the others record why validation
was skipped. coremltools is imported inside functions only.
"""
from __future__ import annotations

import copy
import importlib.util
import json
import platform
from pathlib import Path

import numpy as np

from .. import __version__
from ..calibration.policy import learned_ranges
from ..errors import BadInput, CalibrationError, NotRunnable, require, unknown
from ..runtime.backends import coreml as coreml_backend
from .artifact import EDGE_BENCH
from .base import Capabilities, Exported, LoadedRunner, Status, installed, missing_status, runtime_runner
from .coreml_program import (BATCHES, DEPLOYMENT_TARGETS, INPUT, MAX_BATCH, OUTPUT, WEIGHT_OPS, DeploymentTarget,
                             _op_name, _operations, check_program, matmul_ops)
from .coreml_int4 import write_int4
from .coreml_w8a8 import _quiet, quantize_w8a8
from .int4 import codes as int4_codes
from .int4 import float_layers as int4_layers_float
from .int8 import needs_calibration

MODEL = "model.mlpackage"
INPUT_KINDS = ("tensor", "image")
NOT_HERE = "Core ML prediction needs macOS; program checked structurally instead"
W8A8_STAND_IN = "quantized PyTorch model (coremltools.optimize.torch), not the Core ML program: needs macOS"
INT4_STAND_IN = ("the int4-weight PyTorch model in float32 (its weights are the program's, matched by value), not the "
                 "Core ML program: needs macOS")


COMPUTE_PRECISION = {"fp32": "FLOAT32", "fp16": "FLOAT16", "int8": "FLOAT16", "int4": "FLOAT16"}  # -> ct.precision.*
COMPUTE_UNITS = {"all": "ALL", "cpu_only": "CPU_ONLY", "cpu_and_gpu": "CPU_AND_GPU",
                 "cpu_and_ne": "CPU_AND_NE"}                                   # -> ct.ComputeUnit.*

class CoreMLTarget:
    int4_formats = ("blocks", "palette")   # --int4-format: export/int4_palette.py (other targets: blocks)
    name = "coreml"
    capabilities = Capabilities(frozenset({"fp32", "fp16", "int8", "int4"}), ("coremltools",), "coreml",
                                "Core ML on iOS / macOS (Apple Neural Engine, GPU, CPU); runs only on macOS")
    backend = coreml_backend
    model_file = MODEL
    simulation = "tensorrt"   # W8A8 is symmetric (LinearQuantizer's symmetric scheme), like TensorRT's
    launchers = (EDGE_BENCH,)

    def status(self) -> Status:
        if not installed(*self.capabilities.requires):
            return missing_status(self.capabilities)
        if not _predicts_here():
            return Status(True, False, f"needs macOS (this is {platform.system()}): conversion and structural checks only")
        return Status(True, True)

    def export(self, checkpoint, spec, calib, out_dir: Path) -> Exported:
        target = _check_request(checkpoint, spec, calib)
        ct = _ct()
        out_dir = Path(out_dir)
        w8a8 = spec.precision == "int8" and not spec.weights_only
        details: dict = {"versions": {"coremltools": ct.__version__}, **_ignored_options(spec)}
        model = copy.deepcopy(checkpoint.model).to("cpu").float().eval()  # the caller's stays as it is
        quantized = None
        if w8a8:
            quantized, details["quantization"] = quantize_w8a8(model, calib, spec.float_layers, spec.calib_method,
                                                               learned=learned_ranges(checkpoint))
        mlmodel = _convert(ct, quantized if w8a8 else model, checkpoint, spec)
        if spec.precision == "int8" and spec.weights_only:
            mlmodel, details["quantization"] = _quantize_weights(ct, mlmodel)
        if spec.precision == "int4":
            with _quiet():   # coremltools' pass-pipeline progress bars
                mlmodel, details["quantization"] = write_int4(mlmodel, int4_codes(model), target.spec_version)
        _describe(mlmodel, checkpoint, spec)
        mlmodel.save(str(out_dir / MODEL))
        cfg = checkpoint.config
        details["program"] = check_program(
            out_dir / MODEL, spec.precision, spec.weights_only, chw=(cfg.in_chans, *cfg.img_size),
            num_classes=cfg.num_classes, input_kind=spec.coreml_input, deployment_target=spec.coreml_target,
            activation_quantizers=details["quantization"]["activation_quantizers"] if w8a8 else None,
            float_layers=len(spec.float_layers) if w8a8 else
            len(int4_layers_float(model)) if spec.precision == "int4" else 0)
        details["coreml"] = {"deployment_target": spec.coreml_target, "specification_version": target.spec_version,
                             "compute_precision": COMPUTE_PRECISION[spec.precision].lower(),
                             "input": _input_record(checkpoint, spec.coreml_input), "output": OUTPUT,
                             "classes": "user_defined_metadata['classes'] (JSON); output stays logits"}
        stand_in = None   # what validates a quantized program here: the PyTorch model whose weights it holds
        if not _predicts_here() and (quantized is not None or spec.precision == "int4"):
            import torch

            io = {"input": {"shape": ["batch", cfg.in_chans, *cfg.img_size]}, "output": {"shape": ["batch", cfg.num_classes]}}
            stand_in = LoadedRunner(_torch_runner(model if quantized is None else quantized, io),
                                    what=W8A8_STAND_IN if quantized is not None else INT4_STAND_IN,
                                    config={"device": "cpu", "dtype": "float32", "threads": torch.get_num_threads()})
        return Exported(files=(MODEL,), details=details, stand_in=stand_in)

    def load_runner(self, artifact, compute_units: str = "all") -> LoadedRunner:
        """The .mlpackage through Core ML, by the runtime's backend (runtime/backends/coreml.py):
        macOS only; a batch is split into the program's declared batch shapes."""
        if compute_units.lower() not in COMPUTE_UNITS:
            raise unknown("Core ML compute units", compute_units, COMPUTE_UNITS)
        if not _predicts_here():
            raise NotRunnable(f"Core ML prediction needs macOS (this is {platform.system()})")
        return runtime_runner(self.backend, artifact, chunk=MAX_BATCH, compute_units=COMPUTE_UNITS[compute_units.lower()])

    def validation_runner(self, artifact) -> LoadedRunner:
        """macOS: the program itself on the CPU. Elsewhere nothing can run it: the W8A8 export hands
        its quantized PyTorch model to validation as Exported.stand_in instead."""
        if _predicts_here():
            return self.load_runner(artifact, compute_units="cpu_only")
        raise NotRunnable(NOT_HERE)

    def matmul_ops(self, path) -> list:
        return matmul_ops(path)


# ---- the request --------------------------------------------------------------------------------

def _ct():
    with _quiet():   # on Linux its import prints "Failed to load _MLModelProxy" eight times
        return require("coremltools", CoreMLTarget.capabilities.extra)


def _predicts_here() -> bool:
    """Core ML's runtime ships with macOS; coremltools' native predict module exists only there."""
    return platform.system() == "Darwin" and importlib.util.find_spec("coremltools.libcoremlpython") is not None


def _check_request(checkpoint, spec, calib) -> DeploymentTarget:
    """Fail before converting anything."""
    if spec.coreml_input not in INPUT_KINDS:
        raise unknown("--coreml-input", spec.coreml_input, INPUT_KINDS)
    if spec.coreml_target not in DEPLOYMENT_TARGETS:
        raise unknown("Core ML deployment target (--coreml-target)", spec.coreml_target, DEPLOYMENT_TARGETS)
    target = DEPLOYMENT_TARGETS[spec.coreml_target]
    if spec.precision == "int8" and not spec.weights_only:
        if not target.int8_activations:
            newer = ", ".join(n for n, t in DEPLOYMENT_TARGETS.items() if t.int8_activations)
            raise BadInput(f"coreml int8 (W8A8: int8 activations) needs deployment target iOS17 / macOS14 or "
                           f"newer, got --coreml-target {spec.coreml_target}; use one of {newer}, or "
                           f"--weights-only for int8 weights with float activations")
        if needs_calibration(checkpoint, spec) and (calib is None or len(calib) == 0):
            raise CalibrationError("coreml int8 (W8A8) needs calibration images (--calib-data); "
                                   "activation ranges are observed on them")
    if spec.precision == "int4" and not target.int4_weights:
        newer = ", ".join(n for n, t in DEPLOYMENT_TARGETS.items() if t.int4_weights)
        raise BadInput(f"coreml int4 (4-bit weights: per block or palettized) needs deployment target iOS18 / macOS15 or newer, got "
                       f"--coreml-target {spec.coreml_target}; use one of {newer}")
    if spec.coreml_input == "image":
        _image_preprocessing(checkpoint.preprocess)  # raises when it cannot be baked in
    return target


def _ignored_options(spec) -> dict:
    """Options of other targets are noted in the manifest (and printed by the CLI), never dropped silently."""
    out = {}
    if spec.calib_method is not None and (spec.precision != "int8" or spec.weights_only):
        out["calib_method_ignored"] = f"--calib-method {spec.calib_method} applies to W8A8 int8 only"
    if spec.weights_only and spec.precision != "int8":
        out["weights_only_ignored"] = f"--weights-only applies to int8 only, not {spec.precision}"
    return out


# ---- conversion ---------------------------------------------------------------------------------

def _image_preprocessing(pre) -> dict:
    """ImageType computes scale * pixel + bias with ONE scale for all channels, so our
    (pixel / 255 - mean) / std fits only when every channel has the same std."""
    std = list(pre.std) * (pre.channels if len(pre.std) == 1 else 1)
    mean = list(pre.mean) * (pre.channels if len(pre.mean) == 1 else 1)
    if len(set(std)) != 1:
        raise BadInput(f"--coreml-input image cannot bake preprocessing with per-channel std {list(pre.std)} "
                       f"(Core ML's ImageType has one scale for all channels); use --coreml-input tensor")
    if pre.channels not in (1, 3):
        raise BadInput(f"--coreml-input image needs 1 (grayscale) or 3 (RGB) channels, got {pre.channels}; "
                       f"use --coreml-input tensor")
    return {"scale": 1.0 / (255.0 * std[0]), "bias": [-m / std[0] for m in mean],
            "color_layout": "GRAYSCALE" if pre.channels == 1 else "RGB"}


def _input_record(checkpoint, kind: str) -> dict:
    cfg = checkpoint.config
    if kind == "tensor":
        return {"kind": "tensor", "name": INPUT, "shape": ["batch", cfg.in_chans, *cfg.img_size],
                "batches": list(BATCHES), "dtype": "float32", "preprocess": "applied by the caller",
                "batch_note": "enumerated shapes, each one eligible for the Neural Engine; a runner splits other "
                              "batch sizes into them"}
    h, w = cfg.img_size
    return {"kind": "image", "name": INPUT, "size": [h, w], "batch": 1, **_image_preprocessing(checkpoint.preprocess),
            "preprocess": "baked in: scale * pixel + bias; the caller resizes to the model's size"}


def _input_type(ct, checkpoint, kind: str):
    cfg = checkpoint.config
    chw = (cfg.in_chans, *cfg.img_size)
    if kind == "tensor":
        # Only the batch may vary (the number of tokens is baked into the token-mixing weights), and as
        # enumerated shapes: the Neural Engine runs every one of them, a RangeDim only its default.
        shapes = ct.EnumeratedShapes(shapes=[(b, *chw) for b in BATCHES], default=(1, *chw))
        return ct.TensorType(name=INPUT, shape=shapes, dtype=np.float32)
    p = _image_preprocessing(checkpoint.preprocess)
    gray = p["color_layout"] == "GRAYSCALE"
    return ct.ImageType(name=INPUT, shape=(1, *chw), scale=p["scale"], bias=p["bias"][0] if gray else p["bias"],
                        color_layout=getattr(ct.colorlayout, p["color_layout"]))


def _convert(ct, model, checkpoint, spec):
    """torch.jit.trace on a (1, C, H, W) example, then ct.convert to an ML Program."""
    import torch

    cfg = checkpoint.config
    example = torch.zeros(1, cfg.in_chans, *cfg.img_size)
    with torch.no_grad(), _quiet():   # torch.jit.trace's deprecation notices, coremltools' progress bars
        traced = torch.jit.trace(model, example)
        return ct.convert(traced, inputs=[_input_type(ct, checkpoint, spec.coreml_input)],
                          outputs=[ct.TensorType(name=OUTPUT, dtype=np.float32)], convert_to="mlprogram",
                          minimum_deployment_target=getattr(ct.target, spec.coreml_target),
                          compute_precision=getattr(ct.precision, COMPUTE_PRECISION[spec.precision]))


def _describe(mlmodel, checkpoint, spec) -> None:
    """Metadata a device app reads: what the model is, its class names and preprocessing (JSON)."""
    cfg = checkpoint.config
    mlmodel.author = f"mixer-edge {__version__}"
    mlmodel.short_description = (f"MLP-Mixer {cfg.variant} image classifier, {cfg.num_classes} classes, "
                                 f"{spec.precision}{' weights-only' if spec.weights_only else ''}")
    mlmodel.input_description[INPUT] = ("image; preprocessing baked in" if spec.coreml_input == "image" else
                                        f"(batch, {cfg.in_chans}, {cfg.img_size[0]}, {cfg.img_size[1]}) float32, "
                                        f"preprocessed as user_defined_metadata['preprocess'] says")
    mlmodel.output_description[OUTPUT] = "logits (batch, classes); names in user_defined_metadata['classes']"
    meta = mlmodel.user_defined_metadata
    for key, value in {"classes": json.dumps(list(checkpoint.classes)),
                       "preprocess": json.dumps(checkpoint.preprocess.to_dict()),
                       "variant": cfg.variant, "precision": spec.precision,
                       "weights_only": json.dumps(bool(spec.weights_only)), "input": spec.coreml_input,
                       "checkpoint_sha256": checkpoint.sha256 or ""}.items():
        meta[key] = value


# ---- INT8 ---------------------------------------------------------------------------------------

def _quantize_weights(ct, mlmodel):
    """--weights-only: every linear / conv weight to int8 (symmetric, per output channel), whatever
    its size (coremltools' default skips weights under 2048 elements, i.e. most of a small model);
    biases and LayerNorm parameters stay float16, as do all activations."""
    import coremltools.optimize.coreml as cto

    op_cfg = cto.OpLinearQuantizerConfig(mode="linear_symmetric", dtype="int8", granularity="per_channel",
                                         weight_threshold=1)
    names = _weight_const_names(mlmodel.get_spec())
    with _quiet():
        out = cto.linear_quantize_weights(mlmodel, config=cto.OptimizationConfig(
            op_name_configs={n: op_cfg for n in names}))
    return out, {"mode": "weights_only", "tool": "coremltools.optimize.coreml", "api": "linear_quantize_weights",
                 "config": {"mode": "linear_symmetric", "dtype": "int8", "granularity": "per_channel"},
                 "weights": len(names), "activations": "float16"}


def _weight_const_names(spec) -> list[str]:
    """Names of the const ops that hold the weight of a linear / conv op."""
    ops = list(_operations(spec))
    by_output = {o.name: op for op in ops for o in op.outputs}
    names = []
    for op in ops:
        if op.type in WEIGHT_OPS:
            src = by_output.get(op.inputs["weight"].arguments[0].name)
            if src is not None and src.type == "const":
                names.append(_op_name(src))
    return names


# ---- runners ------------------------------------------------------------------------------------

def _check_batch(x, manifest) -> np.ndarray:
    chw = tuple(manifest["input"]["shape"][1:])
    x = np.ascontiguousarray(x, dtype=np.float32)
    if x.ndim != 4 or tuple(x.shape[1:]) != chw:
        raise BadInput(f"the model takes (N, {', '.join(map(str, chw))}) float32, got shape {list(x.shape)}")
    return x


def _torch_runner(model, manifest):
    import torch

    k = manifest["output"]["shape"][-1]

    def run(x: np.ndarray) -> np.ndarray:
        x = _check_batch(x, manifest)
        if len(x) == 0:
            return np.zeros((0, k), np.float32)
        with torch.no_grad(), _quiet():  # torch deprecates quantize_per_tensor; the reference model uses it
            return np.concatenate([model(torch.from_numpy(x[i:i + 256])).numpy() for i in range(0, len(x), 256)])
    return run
