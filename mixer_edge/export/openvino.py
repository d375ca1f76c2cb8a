"""OpenVINO target: an IR (model.xml + model.bin) from the PyTorch model, INT8 through NNCF.

    fp32  ov.convert_model -> ov.save_model(compress_to_fp16=False)
    fp16  the same IR with FP16 weights (a save option; execution precision is a runtime hint: bf16
          by default on a CPU with BF16, f32 elsewhere, runtime/backends/openvino.default_hint)
    int8  the shared Q/DQ graph of export/qdq.py (OpenVINO flavor: symmetric int8 activations with
          one-sided inputs recentred, per-channel int8 weights), converted to IR: OpenVINO turns each Q/DQ pair into a
          FakeQuantize and runs the MatMuls in int8, like an NNCF-quantized model, but with the
          ranges, smoothing and float layers every other target gets (docs/quantization.md);
          --weights-only gives INT8 weights with float activations (nncf.compress_weights)
    int4  the ONNX graph of export/int4.py (GPTQ int4 weights as blocked DequantizeLinear), read by
          OpenVINO's ONNX frontend into i4 constants decompressed on the way to each MatMul: the
          form NNCF's compress_weights writes, run by the CPU plugin with its int4 kernels

The runner compiles with an explicit precision hint and thread count and records both: the CPU
plugin's default precision is bf16 where the CPU has it, which would make FP32 checks meaningless.
Validation runs the runtime's default hint, so an FP16 artifact is checked as it runs here.
"""
from __future__ import annotations

import copy
import json
import tempfile
from pathlib import Path

from ..errors import BadInput, CalibrationError, require, unknown
from ..noise import third_party
from ..offline import no_telemetry
from ..runtime.backends import openvino as ov_backend
from ..runtime.backends.openvino import PRECISION_HINTS
from .artifact import EDGE_BENCH
from .base import Capabilities, Exported, LoadedRunner, Status, installed, missing_status, runtime_runner
from .int4 import qdq_int4
from .int4 import summary as int4_summary
from .int8 import needs_calibration, place_qdq
from .onnx_io import export_fp32_onnx, save_onnx
from .qdq import MatMulOp

XML, BIN = "model.xml", "model.bin"


class OpenVinoTarget:
    name = "openvino"
    capabilities = Capabilities(frozenset({"fp32", "fp16", "int8", "int4"}), ("openvino", "nncf"), "openvino",
                                "OpenVINO Runtime (CPU here; GPU/NPU elsewhere)")
    backend = ov_backend
    model_file = XML
    simulation = "openvino"
    launchers = (EDGE_BENCH,)
    # W8A8 keeps the head in float here. OpenVINO's low-precision passes fuse the head's input
    # quantization into the final LayerNorm / token-mean kernels (the runtime model shows an MVN with
    # an int8 output): B/16 ran at 13 dB logit SQNR against 36 dB for the very same Q/DQ graph in
    # ONNX Runtime, and at 36 dB with only the head in float (0.0001 % of its MACs: no time lost).
    float_by_rule = {"head": "OpenVINO fuses the head's input quantization into the final LayerNorm and token "
                             "mean, which cost B/16 23 dB of logit SQNR (13 vs 36 dB for the same Q/DQ graph in "
                             "ONNX Runtime); the head is a negligible share of the MACs"}

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
        _check_int8_request(checkpoint, spec, calib)
        details: dict = {"versions": {"openvino": ov.__version__, "nncf": nncf.__version__},
                         **_ignored_options(spec)}
        if spec.precision == "int8" and not spec.weights_only:
            model, details["qdq"] = _quantize(ov, checkpoint, calib, spec)
        elif spec.precision == "int4":
            model, details["int4"] = _int4(ov, checkpoint)
        else:
            model = _convert(ov, checkpoint)
        if spec.precision == "int8" and spec.weights_only:
            model, details["quantization"] = _compress_weights(nncf, model)
        compress = spec.precision == "fp16"   # FP32 and INT8 are saved uncompressed, explicitly
        _tag(model, checkpoint, spec.precision)
        ov.save_model(model, str(out_dir / XML), compress_to_fp16=compress)
        details["ir"] = {"xml": XML, "bin": BIN, "compress_to_fp16": compress,
                         "input": {"name": "input", "shape": [-1, *_chw(checkpoint)]}, "output": "logits"}
        return Exported(files=(XML, BIN), details=details)

    def load_runner(self, artifact, threads: int | None = None, precision_hint: str | None = None,
                    device: str = "CPU") -> LoadedRunner:
        """The runtime's OpenVINO backend (runtime/backends/openvino.py): an explicit precision
        hint (unless asked: f32, bf16 for FP16 on a CPU with BF16; default_hint there) and thread
        count, both recorded with what the plugin applied."""
        _ov()   # a missing openvino names the pip extra
        if precision_hint is not None and precision_hint not in PRECISION_HINTS:
            raise unknown("OpenVINO precision hint", precision_hint, PRECISION_HINTS)
        if threads is not None and threads < 1:
            raise BadInput(f"threads must be at least 1, got {threads}")
        return runtime_runner(self.backend, artifact, threads=threads, precision_hint=precision_hint,
                              provider=device)

    def validation_runner(self, artifact) -> LoadedRunner:
        return self.load_runner(artifact, device="CPU")   # the default hint: as it runs on this machine

    def matmul_ops(self, path) -> list:
        return matmul_ops(path)


# ---- the IR -------------------------------------------------------------------------------------

def _ov():
    no_telemetry()   # convert_model and NNCF would send usage events otherwise (mixer_edge/offline.py)
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
    """Options that do not apply are noted in the manifest (and printed by the CLI), never dropped silently."""
    if spec.calib_method is not None and spec.precision != "int8":
        return {"calib_method_ignored": f"--calib-method {spec.calib_method}: {spec.precision} export does "
                                        f"not calibrate"}
    return {}


# ---- INT8 ---------------------------------------------------------------------------------------

def _check_int8_request(checkpoint, spec, calib) -> None:
    """Fail before converting anything."""
    if not needs_calibration(checkpoint, spec):
        return
    if calib is None or len(calib) == 0:
        raise CalibrationError("openvino int8 needs calibration images (--calib-data) for its activation ranges")


def _quantize(ov, checkpoint, calib, spec):
    """The shared Q/DQ graph, OpenVINO flavor, read by OpenVINO's ONNX frontend."""
    with tempfile.TemporaryDirectory(prefix="mixer-edge-ov-int8-") as tmp:
        fp32 = export_fp32_onnx(checkpoint.model, Path(tmp) / "fp32.onnx")
        q, details = place_qdq(fp32, checkpoint, calib, "openvino", spec)
        save_onnx(q, Path(tmp) / "int8.onnx")
        model = ov.convert_model(str(Path(tmp) / "int8.onnx"))
    model.inputs[0].get_tensor().set_names({"input"})
    model.outputs[0].get_tensor().set_names({"logits"})
    return model, details


def _int4(ov, checkpoint):
    """The int4 ONNX graph (export/int4.py), read by OpenVINO's ONNX frontend: each blocked int4
    DequantizeLinear becomes an i4 Constant -> Convert -> Multiply(scale) on the way to its MatMul."""
    with tempfile.TemporaryDirectory(prefix="mixer-edge-ov-int4-") as tmp:
        fp32 = export_fp32_onnx(checkpoint.model, Path(tmp) / "fp32.onnx")
        q = qdq_int4(fp32, checkpoint.model)
        save_onnx(q, Path(tmp) / "int4.onnx")
        model = ov.convert_model(str(Path(tmp) / "int4.onnx"))
    model.inputs[0].get_tensor().set_names({"input"})
    model.outputs[0].get_tensor().set_names({"logits"})
    four = sum(op.get_type_name() == "Constant" and op.get_element_type().get_type_name() in ("i4", "u4")
               for op in model.get_ordered_ops())
    return model, {**int4_summary(q), "ir_int4_constants": four,
                   "runs_as": "int4 weights decompressed in the CPU plugin's MatMul kernels; activations "
                              "quantized to int8 per group at run time where the CPU plugin does it "
                              "(DYNAMIC_QUANTIZATION_GROUP_SIZE)"}


# How an IR feeds its matrix multiplies. A quantized weight is a low-precision constant decompressed
# on its way (Convert, Subtract the zero point, Multiply the scale), or a FakeQuantize; a quantized
# activation is a FakeQuantize (the ONNX frontend's form of a Q/DQ pair), perhaps reshaped after.
IR_MATMULS = ("MatMul", "Convolution")
WEIGHT_PATH = ("Convert", "Subtract", "Multiply", "Reshape", "Transpose", "Unsqueeze")
ACTIVATION_PATH = ("Reshape", "Transpose")
LOW_PRECISION = ("i8", "u8", "i4", "u4")


def matmul_ops(xml_path) -> list:
    """Every MatMul / Convolution of an IR file as written, and whether its inputs are quantized."""
    model = _ov().Core().read_model(str(xml_path))
    return [MatMulOp(op.get_friendly_name(), op.get_type_name(),
                     _source(op.input_value(1), WEIGHT_PATH) in ("low-precision constant", "FakeQuantize"),
                     _source(op.input_value(0), ACTIVATION_PATH) == "FakeQuantize")
            for op in model.get_ordered_ops() if op.get_type_name() in IR_MATMULS]


def _source(value, through) -> str:
    """The type of the op a tensor comes from, following input 0 through the ops in `through`."""
    node = value.get_node()
    while node.get_type_name() in through:
        node = node.input_value(0).get_node()
    if node.get_type_name() == "Constant" and node.get_element_type().get_type_name() in LOW_PRECISION:
        return "low-precision constant"
    return node.get_type_name()


def _compress_weights(nncf, model):
    """--weights-only: INT8 weights (asymmetric, per output channel), activations stay float."""
    mode = nncf.CompressWeightsMode.INT8_ASYM
    with third_party():   # NNCF's progress bars
        compressed = nncf.compress_weights(model, mode=mode)
    return compressed, {"tool": "nncf", "api": "compress_weights", "mode": mode.value, "activations": "float"}
