"""OpenVINO target: an IR (model.xml + model.bin) from the PyTorch model, INT8 through NNCF.

    fp32  ov.convert_model -> ov.save_model(compress_to_fp16=False)
    fp16  the same IR with FP16 weights (a save option; execution precision is a runtime hint)
    int8  nncf.quantize with each recipe of RECIPES, keeping the one whose logits are closest to the
          FP32 IR on the calibration images (SQNR), or nncf.quantize_with_accuracy_control with
          --max-drop; --weights-only gives INT8 weights with float activations (nncf.compress_weights)

The runner compiles with an explicit precision hint and thread count and records both: the CPU
plugin's default precision is bf16 where the CPU has it, which would make FP32 checks meaningless.
"""
from __future__ import annotations

import copy
import json
import os
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from ..errors import BadInput, CalibrationError, require, unknown
from .base import Capabilities, Exported, LoadedRunner, NotRunnableHere, Status, installed, missing_status
from .validate import compare

XML, BIN = "model.xml", "model.bin"
CHUNK = 256                                  # images per inference call
PRECISION_HINTS = ("f32", "bf16", "f16")     # INFERENCE_PRECISION_HINT values the CPU plugin takes
VIRTUAL_DEVICES = ("AUTO", "HETERO", "MULTI", "BATCH")


@dataclass(frozen=True)
class Recipe:
    """One NNCF post-training setting tried for INT8. Which is best is measured, not assumed: on a
    small Mixer, model_type=TRANSFORMER (SmoothQuant on) gave 15 dB logit SQNR where defaults gave 33."""
    name: str
    model_type: str | None = None      # "transformer": LayerNorm / Add stay in float, SmoothQuant on
    preset: str | None = None          # "mixed": asymmetric activations (GELU outputs are one-sided)
    smooth_quant: bool = True          # False: SmoothQuant alphas -1 (NNCF's switch to turn it off)
    overflow_fix: bool = False         # True: 7-bit weights everywhere, safe on CPUs without VNNI

    def kwargs(self, nncf, advanced_key: str = "advanced_parameters") -> dict:
        from nncf.quantization.advanced_parameters import (AdvancedQuantizationParameters,
                                                           AdvancedSmoothQuantParameters)
        from nncf.quantization.advanced_parameters import OverflowFix

        kw, advanced = {}, {}
        if self.model_type is not None:
            kw["model_type"] = nncf.ModelType(self.model_type)
        if self.preset is not None:
            kw["preset"] = nncf.QuantizationPreset(self.preset)
        if not self.smooth_quant:
            advanced["smooth_quant_alphas"] = AdvancedSmoothQuantParameters(convolution=-1, matmul=-1)
        if self.overflow_fix:
            advanced["overflow_fix"] = OverflowFix.ENABLE
        if advanced:
            kw[advanced_key] = AdvancedQuantizationParameters(**advanced)
        return kw


# Without VNNI (AVX2 only, as on this project's build machines), the CPU plugin's u8 x s8 kernels
# saturate 16-bit intermediate sums; NNCF's overflow fix (7-bit weights) avoids that. Measured on the
# digits T/2 model here: default 22.9 dB -> 34.6 dB with the fix, transformer-no-smoothquant + fix 37.4 dB.
RECIPES = (
    Recipe("default"),
    Recipe("default-overflow-fix", overflow_fix=True),
    Recipe("transformer", model_type="transformer"),
    Recipe("transformer-no-smoothquant-overflow-fix", model_type="transformer", smooth_quant=False,
           overflow_fix=True),
)


class OpenVinoTarget:
    name = "openvino"
    capabilities = Capabilities(frozenset({"fp32", "fp16", "int8"}), ("openvino", "nncf"), "openvino",
                                "OpenVINO Runtime (CPU here; GPU/NPU elsewhere)")

    def status(self) -> Status:
        if not installed(*self.capabilities.requires):
            return missing_status(self.capabilities)
        try:
            devices = _ov().Core().available_devices
        except Exception as e:  # a broken install says why instead of failing `mixer-edge targets`
            return Status(True, False, f"OpenVINO Runtime does not start here: {e}")
        if "CPU" not in devices:
            return Status(True, False, f"no OpenVINO CPU device here (devices: {', '.join(devices) or 'none'})")
        return Status(True, True)

    def export(self, checkpoint, spec, calib, out_dir: Path) -> Exported:
        ov, nncf = _ov(), require("nncf", self.capabilities.extra)
        out_dir = Path(out_dir)
        _check_int8_request(spec, calib)
        details: dict = {"versions": {"openvino": ov.__version__, "nncf": nncf.__version__},
                         **_ignored_options(spec)}
        model = _convert(ov, checkpoint)
        if spec.precision == "int8" and spec.weights_only:
            model, details["quantization"] = _compress_weights(nncf, model)
        elif spec.precision == "int8":
            model, found = _quantize(ov, nncf, model, calib, spec)
            details.update(found)
        compress = spec.precision == "fp16"   # FP32 and INT8 are saved uncompressed, explicitly
        _tag(model, checkpoint, spec.precision)
        ov.save_model(model, str(out_dir / XML), compress_to_fp16=compress)
        details["ir"] = {"xml": XML, "bin": BIN, "compress_to_fp16": compress,
                         "input": {"name": "input", "shape": [-1, *_chw(checkpoint)]}, "output": "logits"}
        return Exported(files=(XML, BIN), details=details)

    def load_runner(self, artifact, threads: int | None = None, precision_hint: str | None = None,
                    device: str = "CPU") -> LoadedRunner:
        ov = _ov()
        hint = precision_hint or "f32"
        if hint not in PRECISION_HINTS:
            raise unknown("OpenVINO precision hint", hint, PRECISION_HINTS)
        if threads is not None and threads < 1:
            raise BadInput(f"threads must be at least 1, got {threads}")
        threads = threads or _cpu_count()
        core = ov.Core()
        _check_device(core, device)
        compiled = core.compile_model(core.read_model(str(artifact.file(XML))), device,
                                      {"INFERENCE_PRECISION_HINT": hint, "INFERENCE_NUM_THREADS": threads})
        config = {"device": device, "precision_hint": hint, "threads": threads,
                  **_applied(compiled, device)}
        shape = tuple(artifact.manifest["input"]["shape"][1:])
        run = _runner(compiled, shape, artifact.manifest["output"]["shape"][-1])
        return LoadedRunner(run, config=config, what=f"openvino {_short(ov.__version__)} {device} {hint}")

    def validation_runner(self, artifact) -> LoadedRunner:
        return self.load_runner(artifact, precision_hint="f32", device="CPU")


# ---- the IR -------------------------------------------------------------------------------------

def _ov():
    return require("openvino", OpenVinoTarget.capabilities.extra)


def _chw(checkpoint) -> list[int]:
    cfg = checkpoint.config
    return [cfg.in_chans, *cfg.img_size]


def _convert(ov, checkpoint):
    """FP32 PyTorch -> ov.Model with input "input" (batch, C, H, W) and output "logits" (batch, K).
    Only the batch is dynamic: the token count is baked into the token-mixing weights."""
    import torch

    model = copy.deepcopy(checkpoint.model).to("cpu", torch.float32).eval()  # the caller's stays as it is
    with torch.no_grad():
        m = ov.convert_model(model, example_input=torch.zeros(1, *_chw(checkpoint)))
    if len(m.inputs) != 1 or len(m.outputs) != 1:
        raise BadInput(f"the converted model has {len(m.inputs)} inputs and {len(m.outputs)} outputs; "
                       f"a classifier has one of each")
    m.reshape({m.inputs[0]: ov.PartialShape([-1, *_chw(checkpoint)])})
    m.inputs[0].get_tensor().set_names({"input"})
    m.outputs[0].get_tensor().set_names({"logits"})
    return m


def _tag(model, checkpoint, precision: str) -> None:
    """Class names and preprocessing travel inside the IR too, for runtimes that see only model.xml."""
    info = {"classes": json.dumps(list(checkpoint.classes)),
            "preprocess": json.dumps(checkpoint.preprocess.to_dict()),
            "variant": checkpoint.config.variant, "precision": precision,
            "checkpoint_sha256": checkpoint.sha256 or ""}
    for key, value in info.items():
        model.set_rt_info(value, ["mixer_edge", key])


def _ignored_options(spec) -> dict:
    """Options of other targets are noted in the manifest (and printed by the CLI), never dropped silently."""
    out = {}
    if spec.calib_method is not None:
        why = "NNCF uses its own range estimators" if spec.precision == "int8" \
            else f"{spec.precision} export does not calibrate"
        out["calib_method_ignored"] = f"--calib-method {spec.calib_method} is an ONNX Runtime / TensorRT option; {why}"
    if spec.max_drop is not None and spec.precision != "int8":
        out["max_drop_ignored"] = f"--max-drop applies to int8 only, not {spec.precision}"
    return out


# ---- INT8 ---------------------------------------------------------------------------------------

def _check_int8_request(spec, calib) -> None:
    """Fail before converting anything."""
    if spec.precision != "int8" or spec.weights_only:
        return
    if calib is None or len(calib) == 0:
        raise CalibrationError("openvino int8 needs calibration images (--calib-data); NNCF quantizes "
                               "activations from them")
    if spec.max_drop is not None:
        if spec.max_drop < 0:
            raise BadInput(f"--max-drop must be >= 0 (an absolute top-1 drop, e.g. 0.01), got {spec.max_drop}")
        if calib.labels is None:
            raise CalibrationError(f"--max-drop needs labelled data: accuracy-controlled INT8 measures top-1 on "
                                   f"the calibration set, and {calib.source} has no labels")


def _quantize(ov, nncf, model, calib, spec):
    """Quantize with every recipe, keep the one closest to the FP32 IR; details record them all."""
    reference = _infer(_compile(ov, model), calib.x)
    dataset = nncf.Dataset(list(calib.batches(1)))
    candidates, models = [], {}
    for recipe in RECIPES:
        start = time.perf_counter()
        try:
            q = nncf.quantize(model, dataset, subset_size=len(calib), **recipe.kwargs(nncf))
        except Exception as e:  # one recipe NNCF cannot apply to this graph does not end the export
            candidates.append({"name": recipe.name, "settings": asdict(recipe), "error": f"{type(e).__name__}: {e}"})
            continue
        models[recipe.name] = q
        candidates.append({"name": recipe.name, "settings": asdict(recipe),
                           **_closeness(reference, _infer(_compile(ov, q), calib.x)),
                           "seconds": round(time.perf_counter() - start, 2)})
    scored = [c for c in candidates if "error" not in c]
    if not scored:
        raise CalibrationError("NNCF could not quantize the model with any recipe: " +
                               "; ".join(f"{c['name']}: {c['error']}" for c in candidates))
    best = max(scored, key=lambda c: c["sqnr_db"])  # ties keep the earlier (simpler) recipe
    details = {"quantization": {"tool": "nncf", "api": "quantize", "subset_size": len(calib),
                                "selection": "highest logit SQNR against the FP32 IR (f32 hint) "
                                             "on the calibration images"},
               "candidates": candidates, "chosen": best["name"]}
    chosen = models[best["name"]]
    if spec.max_drop is not None:
        recipe = next(r for r in RECIPES if r.name == best["name"])
        chosen, details["accuracy_control"] = _accuracy_control(ov, nncf, model, calib, spec, recipe, reference)
        details["quantization"]["api"] = "quantize_with_accuracy_control"
    return chosen, details


def _closeness(reference: np.ndarray, logits: np.ndarray) -> dict:
    f = compare(reference, logits)
    return {k: round(f[k], 4) for k in ("sqnr_db", "top1_agreement", "cosine")}


def _accuracy_control(ov, nncf, model, calib, spec, recipe: Recipe, reference: np.ndarray):
    """nncf.quantize_with_accuracy_control with the chosen recipe: NNCF reverts layers to float until
    the top-1 on the labelled calibration images drops by at most max_drop (absolute)."""
    items = [(calib.x[i:i + 1], int(calib.labels[i])) for i in range(len(calib))]

    def top1(compiled, data):  # per-image hits let NNCF rank which layers cost accuracy
        hits = [float(np.argmax(compiled(x)[0], axis=1)[0] == y) for x, y in data]
        return float(np.mean(hits)) if hits else 0.0, hits

    start = time.perf_counter()
    q = nncf.quantize_with_accuracy_control(
        model, nncf.Dataset(list(calib.batches(1))), nncf.Dataset(items, lambda item: item[0]), top1,
        max_drop=spec.max_drop, drop_type=nncf.DropType.ABSOLUTE, subset_size=len(calib),
        **recipe.kwargs(nncf, advanced_key="advanced_quantization_parameters"))
    logits = _infer(_compile(ov, q), calib.x)
    fp32_top1 = float((reference.argmax(1) == calib.labels).mean())
    int8_top1 = float((logits.argmax(1) == calib.labels).mean())
    return q, {"max_drop": spec.max_drop, "drop_type": "absolute", "metric": "top1", "recipe": recipe.name,
               "data": calib.source, "samples": len(calib), "fp32_top1": round(fp32_top1, 4),
               "int8_top1": round(int8_top1, 4), "drop": round(fp32_top1 - int8_top1, 4),
               **_closeness(reference, logits), "seconds": round(time.perf_counter() - start, 2)}


def _compress_weights(nncf, model):
    """--weights-only: INT8 weights (asymmetric, per output channel), activations stay float."""
    mode = nncf.CompressWeightsMode.INT8_ASYM
    return nncf.compress_weights(model, mode=mode), {"tool": "nncf", "api": "compress_weights",
                                                     "mode": mode.value, "activations": "float"}


# ---- the runtime --------------------------------------------------------------------------------

def _compile(ov, model):
    """What export measures with: CPU, f32 execution, so only quantization changes the logits."""
    return ov.Core().compile_model(model, "CPU", {"INFERENCE_PRECISION_HINT": "f32",
                                                  "INFERENCE_NUM_THREADS": _cpu_count()})


def _infer(compiled, x: np.ndarray) -> np.ndarray:
    request = compiled.create_infer_request()
    return np.concatenate([np.array(request.infer({0: x[i:i + CHUNK]})[0], np.float32)
                           for i in range(0, len(x), CHUNK)])


def _runner(compiled, chw: tuple, num_classes: int):
    request = compiled.create_infer_request()  # one request: a runner serves one thread at a time

    def run(x: np.ndarray) -> np.ndarray:
        x = np.ascontiguousarray(x, dtype=np.float32)
        if x.ndim != 4 or tuple(x.shape[1:]) != tuple(chw):
            raise BadInput(f"the model takes (N, {', '.join(map(str, chw))}) float32, got shape {list(x.shape)}")
        if len(x) == 0:
            return np.zeros((0, num_classes), np.float32)
        return np.concatenate([np.array(request.infer({0: x[i:i + CHUNK]})[0], np.float32)
                               for i in range(0, len(x), CHUNK)])
    return run


def _check_device(core, device: str) -> None:
    if device.split(":")[0] in VIRTUAL_DEVICES:
        return
    available = core.available_devices            # e.g. ["CPU", "GPU.0", "GPU.1"]
    if device not in available and device not in {d.split(".")[0] for d in available}:
        raise NotRunnableHere(f"OpenVINO device {device!r} is not available here; available: {', '.join(available)}")


def _applied(compiled, device: str) -> dict:
    """What the plugin actually uses: a CPU without BF16 runs a bf16 hint in f32, say so."""
    out = {}
    try:
        out["applied_precision"] = compiled.get_property("INFERENCE_PRECISION_HINT").get_type_name()
        out["applied_threads"] = int(compiled.get_property("INFERENCE_NUM_THREADS"))
    except (RuntimeError, AttributeError, TypeError):  # not every device reports these
        pass
    return out


def _cpu_count() -> int:
    """CPUs this process may use (a container's affinity mask, not the host's count)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # macOS, Windows
        return os.cpu_count() or 1


def _short(version: str) -> str:
    return version.split("-")[0]
