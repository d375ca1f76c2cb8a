"""Core ML target: one ML Program (model.mlpackage) per precision, converted by coremltools.

    fp32  ct.convert(compute_precision=FLOAT32)
    fp16  ct.convert(compute_precision=FLOAT16), the ML Program default
    int8  W8A8 (the default): coremltools.optimize.torch's LinearQuantizer on the PyTorch model,
          calibrated on the shared calibration set (observers only, no training), finalized, then
          converted (iOS17 / macOS14 or newer: `quantize` / `dequantize` ops exist from there on);
          --weights-only: the FP16 program with int8 weights (optimize.coreml.linear_quantize_weights)

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

import contextlib
import copy
import importlib.util
import json
import operator
import platform
import warnings
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from ..errors import BadInput, CalibrationError, require, unknown
from .base import Capabilities, Exported, LoadedRunner, NotRunnableHere, Status, installed, missing_status
from .coreml_program import (DEPLOYMENT_TARGETS, INPUT, MAX_BATCH, OUTPUT, WEIGHT_OPS,  # noqa: F401
                             DeploymentTarget, _op_name, _operations, check_program)
from .validate import compare

MODEL = "model.mlpackage"
INPUT_KINDS = ("tensor", "image")
NOT_HERE = "Core ML prediction needs macOS; program checked structurally instead"
W8A8_STAND_IN = "quantized PyTorch model (coremltools.optimize.torch), not the Core ML program: needs macOS"


COMPUTE_PRECISION = {"fp32": "FLOAT32", "fp16": "FLOAT16", "int8": "FLOAT16"}  # -> ct.precision.*
COMPUTE_UNITS = {"all": "ALL", "cpu_only": "CPU_ONLY", "cpu_and_gpu": "CPU_AND_GPU",
                 "cpu_and_ne": "CPU_AND_NE"}                                   # -> ct.ComputeUnit.*

@dataclass(frozen=True)
class W8A8Recipe:
    """How LinearQuantizer is set up. Measured on the digits T/2 model (100 calibration images,
    logit SQNR against FP32 on the 179 eval images): residual adds kept float 36.1 dB, quantized
    35.0 dB (top-1 agreement 1.0 both); min_max and moving-average observers within 0.2 dB.
    min_max is the plain PTQ choice: the range of the whole calibration set, independent of order."""
    weight_dtype: str = "qint8"               # symmetric, per output channel
    activation_dtype: str = "quint8"          # LinearQuantizer's only 8-bit activation type; with the
    quantization_scheme: str = "affine"    # symmetric scheme the zero point is 0 or 128 (signed data)
    activation_observer: str = "min_max"
    weight_observer: str = "min_max"
    modules: tuple[str, ...] = ("Linear", "Conv2d")   # LayerNorm, GELU and the mean stay float
    float_ops: tuple[str, ...] = ("add",)             # residual adds: they feed LayerNorm
    calib_batch: int = 32


W8A8 = W8A8Recipe()


class CoreMLTarget:
    name = "coreml"
    capabilities = Capabilities(frozenset({"fp32", "fp16", "int8"}), ("coremltools",), "coreml",
                                "Core ML on iOS / macOS (Apple Neural Engine, GPU, CPU); runs only on macOS")

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
            quantized, details["quantization"] = _quantize_w8a8(model, calib, spec.float_layers, spec.calib_method)
        mlmodel = _convert(ct, quantized if w8a8 else model, checkpoint, spec)
        if spec.precision == "int8" and spec.weights_only:
            mlmodel, details["quantization"] = _quantize_weights(ct, mlmodel)
        _describe(mlmodel, checkpoint, spec)
        mlmodel.save(str(out_dir / MODEL))
        cfg = checkpoint.config
        details["program"] = check_program(
            out_dir / MODEL, spec.precision, spec.weights_only, chw=(cfg.in_chans, *cfg.img_size),
            num_classes=cfg.num_classes, input_kind=spec.coreml_input, deployment_target=spec.coreml_target,
            activation_quantizers=details["quantization"]["activation_quantizers"] if w8a8 else None,
            float_layers=len(spec.float_layers) if w8a8 else 0)
        details["coreml"] = {"deployment_target": spec.coreml_target, "specification_version": target.spec_version,
                             "compute_precision": COMPUTE_PRECISION[spec.precision].lower(),
                             "input": _input_record(checkpoint, spec.coreml_input), "output": OUTPUT,
                             "classes": "user_defined_metadata['classes'] (JSON); output stays logits"}
        stand_in = None
        if quantized is not None and not _predicts_here():
            import torch

            io = {"input": {"shape": ["batch", cfg.in_chans, *cfg.img_size]}, "output": {"shape": ["batch", cfg.num_classes]}}
            stand_in = LoadedRunner(_torch_runner(quantized, io),
                                    what=W8A8_STAND_IN,
                                    config={"device": "cpu", "dtype": "float32", "threads": torch.get_num_threads()})
        return Exported(files=(MODEL,), details=details, stand_in=stand_in)

    def load_runner(self, artifact, compute_units: str = "all") -> LoadedRunner:
        """The .mlpackage through Core ML: macOS only."""
        if compute_units not in COMPUTE_UNITS:
            raise unknown("Core ML compute units", compute_units, COMPUTE_UNITS)
        if not _predicts_here():
            raise NotRunnableHere(f"Core ML prediction needs macOS (this is {platform.system()})")
        ct = _ct()
        mlmodel = ct.models.MLModel(str(artifact.file(MODEL)), compute_units=getattr(ct.ComputeUnit,
                                                                                      COMPUTE_UNITS[compute_units]))
        image = artifact.manifest.get("export", {}).get("coreml", {}).get("input", {}).get("kind") == "image"
        run = _coreml_runner(mlmodel, artifact.manifest, image)
        config = {"compute_units": compute_units, "input": "image" if image else "tensor",
                  "max_batch": 1 if image else MAX_BATCH}
        return LoadedRunner(run, config=config, what=f"coremltools {ct.__version__} Core ML {compute_units}")

    def validation_runner(self, artifact) -> LoadedRunner:
        """macOS: the program itself on the CPU. Elsewhere nothing can run it: the W8A8 export hands
        its quantized PyTorch model to validation as Exported.stand_in instead."""
        if _predicts_here():
            return self.load_runner(artifact, compute_units="cpu_only")
        raise NotRunnableHere(NOT_HERE)


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
        if calib is None or len(calib) == 0:
            raise CalibrationError("coreml int8 (W8A8) needs calibration images (--calib-data); "
                                   "activation ranges are observed on them")
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
        return {"kind": "tensor", "name": INPUT, "shape": [[1, MAX_BATCH], cfg.in_chans, *cfg.img_size],
                "dtype": "float32", "preprocess": "applied by the caller"}
    h, w = cfg.img_size
    return {"kind": "image", "name": INPUT, "size": [h, w], "batch": 1, **_image_preprocessing(checkpoint.preprocess),
            "preprocess": "baked in: scale * pixel + bias; the caller resizes to the model's size"}


def _input_type(ct, checkpoint, kind: str):
    cfg = checkpoint.config
    chw = (cfg.in_chans, *cfg.img_size)
    if kind == "tensor":
        # Only the batch may vary: the number of tokens is baked into the token-mixing weights.
        return ct.TensorType(name=INPUT, shape=(ct.RangeDim(1, MAX_BATCH, default=1), *chw), dtype=np.float32)
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
    from .. import __version__

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

def _quantize_w8a8(model, calib, float_layers=(), method=None):
    """LinearQuantizer as post-training quantization: prepare; observers on, fake quantization off
    for the calibration passes (milestones [0, n, n, -1]: every observer sees float activations);
    then the input range of every quantized layer replaced by the shared estimator's (`method`,
    calibration/ranges.py), so Core ML gets the ranges every other target gets; then fake
    quantization on, observers off; finalize into a reference-quantized model."""
    import torch
    from coremltools.optimize.torch.quantization import (LinearQuantizer, LinearQuantizerConfig,
                                                         ModuleLinearQuantizerConfig)

    batches = [torch.from_numpy(np.ascontiguousarray(b, np.float32)) for b in calib.batches(W8A8.calib_batch)]
    module_cfg = ModuleLinearQuantizerConfig(
        quantization_scheme=W8A8.quantization_scheme, weight_dtype=W8A8.weight_dtype,
        activation_dtype=W8A8.activation_dtype, weight_per_channel=True,
        activation_observer=W8A8.activation_observer, weight_observer=W8A8.weight_observer,
        milestones=[0, len(batches), len(batches), -1])
    types = {getattr(torch.nn, m): module_cfg for m in W8A8.modules}
    types.update({getattr(operator, op): None for op in W8A8.float_ops})
    quantizer = LinearQuantizer(model, LinearQuantizerConfig(module_type_configs=types,
                                                             module_name_configs={n: None for n in float_layers}))
    with _quiet():
        prepared = quantizer.prepare(example_inputs=(batches[0][:1],))
        with torch.no_grad():
            for b in batches:
                quantizer.step()
                prepared(b)
            ranged = _set_input_ranges(prepared, model, calib.x, method)
            quantizer.step()          # step n: fake quantization on, observers off
        final = quantizer.finalize().eval()
    outputs_freed = _float_outputs(final)
    x = torch.from_numpy(calib.x)
    with torch.no_grad(), _quiet():
        closeness = compare(model(x).numpy(), final(x).numpy())
    quantized = [n for n, m in final.named_modules() if hasattr(m, "weight_scale")]
    acts = sum(1 for node in final.graph.nodes if node.target is torch.quantize_per_tensor)
    return final, {
        "mode": "w8a8", "tool": "coremltools.optimize.torch", "api": "LinearQuantizer",
        "procedure": "prepare; observer-only calibration passes (no training); finalize; ct.convert",
        "recipe": asdict(W8A8), "weights": f"int8 {W8A8.quantization_scheme}, per output channel",
        "activations": f"8-bit per tensor, {W8A8.quantization_scheme}; layer inputs ranged by the shared estimator",
        "calibration": ranged, "output_quantizers_removed": outputs_freed,
        "quantized_modules": quantized,
        "float_modules": [n for n, m in model.named_modules() if isinstance(m, torch.nn.LayerNorm)],
        "activation_quantizers": acts, "calibration_images": len(calib), "calibration_batches": len(batches),
        "on_calibration_images": {k: round(closeness[k], 4) for k in ("sqnr_db", "top1_agreement", "cosine")},
    }


def _float_outputs(final) -> int:
    """Drop the quantize / dequantize pairs LinearQuantizer puts on layer *outputs* (before the
    residual Add, the LayerNorm, the logits): the placement every target follows quantizes layer
    inputs only (docs/quantization.md). Measured on the MNIST T/4 model: 34.9 -> 39.1 dB logit SQNR.
    A pair is kept when its dequantized value feeds a quantized module. Returns pairs removed."""
    import torch

    graph, removed = final.graph, 0
    for node in list(graph.nodes):
        if node.target is not torch.quantize_per_tensor or len(node.users) != 1:
            continue
        dq = next(iter(node.users))
        if dq.op == "call_method" and dq.target == "dequantize" and not any(u.op == "call_module" for u in dq.users):
            dq.replace_all_uses_with(node.args[0])
            graph.erase_node(dq)
            graph.erase_node(node)
            removed += 1
    graph.lint()
    final.recompile()
    return removed


def _set_input_ranges(prepared, model, x, method) -> dict:
    """Overwrite the observed range of the fake quantizer in front of each quantized layer with
    the estimator's (lo, hi) of that layer's input, measured on the float model. Core ML's
    LinearQuantizer offers min/max observers only; this is how percentile, entropy and MSE reach it."""
    import torch

    from ..calibration import ranges
    from ..calibration.observe import input_stats

    name, estimate = ranges.method(method)
    fronts = {}
    for node in prepared.graph.nodes:
        if node.op == "call_module" and node.args and getattr(node.args[0], "op", None) == "call_module":
            fq = prepared.get_submodule(node.args[0].target)
            if hasattr(fq, "activation_post_process") and not hasattr(prepared.get_submodule(node.target), "normalized_shape"):
                fronts[node.target] = fq
    stats = input_stats(model, x, list(fronts))
    applied = {}
    for layer, fq in fronts.items():
        lo, hi = estimate(stats[layer], W8A8.quantization_scheme == "symmetric")
        obs = fq.activation_post_process
        obs.min_val.copy_(torch.tensor(float(lo)))
        obs.max_val.copy_(torch.tensor(float(hi)))
        scale, zero_point = obs.calculate_qparams()
        fq.scale.copy_(scale)
        fq.zero_point.copy_(zero_point)
        applied[layer] = [round(float(lo), 6), round(float(hi), 6)]
    return {"method": name, "estimator": ranges.describe(name), "ranges": applied}


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


@contextlib.contextmanager
def _quiet():
    from ..noise import third_party

    with warnings.catch_warnings(), third_party():
        warnings.simplefilter("ignore")
        yield


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


def _coreml_runner(mlmodel, manifest, image: bool):
    """MLModel.predict on chunks of at most MAX_BATCH; an image model gets each preprocessed tensor
    mapped back to the 8-bit image it came from (exact for images that were uint8)."""
    from ..data.preprocess import Preprocess

    k = manifest["output"]["shape"][-1]
    pre = Preprocess.from_dict(manifest["preprocess"])

    def run(x: np.ndarray) -> np.ndarray:
        x = _check_batch(x, manifest)
        if len(x) == 0:
            return np.zeros((0, k), np.float32)
        if image:
            return np.concatenate([np.asarray(mlmodel.predict({INPUT: img})[OUTPUT], np.float32).reshape(1, k)
                                   for img in _to_images(x, pre)])
        return np.concatenate([np.asarray(mlmodel.predict({INPUT: x[i:i + MAX_BATCH]})[OUTPUT], np.float32)
                               for i in range(0, len(x), MAX_BATCH)])
    return run


def _to_images(x: np.ndarray, pre):
    from PIL import Image

    mean = np.asarray(pre.mean, np.float32).reshape(1, -1, 1, 1)
    std = np.asarray(pre.std, np.float32).reshape(1, -1, 1, 1)
    pixels = np.clip(np.rint((x * std + mean) * 255.0), 0, 255).astype(np.uint8).transpose(0, 2, 3, 1)
    for p in pixels:  # (H, W, C)
        yield Image.fromarray(p[..., 0], "L") if p.shape[-1] == 1 else Image.fromarray(p, "RGB")
