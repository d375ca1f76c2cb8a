"""What every INT4 (4-bit weight) export shares around its target's own file format: which layers
get 4-bit weights, their GPTQ codes from the calibration images (calibration/int4.py), and the ONNX
graph that stores them as DequantizeLinear int4 blocks (ONNX Runtime, TensorRT, OpenVINO read it).

    layers      every Linear of the token- and channel-mixing MLPs (over 99 % of a Mixer's weights);
                the patch stem and the head stay float, as ONNX Runtime's MatMulNBitsQuantizer and
                NNCF's compress_weights leave a model's first and last layers (NNCF: at 8 bits)
    bits        4 for the channel-mixing MLPs, 8 (one scale per output) for the token-mixing ones:
                3-5 % of the weights but, at 4 bits, most of the error (T/4 on MNIST: 28.2 dB logit
                SQNR with only the token-mixing MLPs at 4 bits, 48.7 dB with only the channel-mixing
                ones: a token-mixing weight multiplies every channel of its token); measured in
                docs/quantization.md, "4-bit weights"
    prepare     a copy of the model whose MLP Linears are Int4Linear: the weight on its int4 grid
                (so PyTorch, validation and every file compute the same weights) and the codes;
                with --int4-format palette (Core ML only) palettes instead (export/int4_palette.py)
    qdq_int4    an fp32 ONNX graph with those weights as int4 initializers + blocked
                DequantizeLinear (opset 21), the form ONNX Runtime fuses into MatMulNBits and
                TensorRT 10 takes as int4 weight-only quantization

Activations are not quantized in the file: ONNX Runtime (MatMulNBits, accuracy level 4) and
OpenVINO's CPU plugin quantize them to int8 per block on the fly, TensorRT and Core ML compute them
in float (docs/quantization.md, "4-bit weights").
"""
from __future__ import annotations

import copy
from dataclasses import replace

import numpy as np
import torch
from torch import nn

from ..calibration.int4 import BLOCK, WeightCodes, check_block, gptq, layer_block, output_error, round_to_nearest
from ..calibration.observe import module_tensors
from ..errors import BadInput, CalibrationError, require
from ..progress import progress
from . import int4_palette
from .base import INT4_FORMATS
from .qdq import layer_name, quant_nodes

OPSET = 21               # DequantizeLinear with block_size and int4 tensors


class Int4Linear(nn.Linear):
    """A Linear whose weight lies on an int4 grid (WeightCodes) or a palette (calibration/palette.py),
    with its codes: what the files store."""

    def __init__(self, linear: nn.Linear, q):
        super().__init__(linear.in_features, linear.out_features, bias=linear.bias is not None)
        with torch.no_grad():
            self.weight.copy_(torch.from_numpy(q.dequantize()))
            if linear.bias is not None:
                self.bias.copy_(linear.bias)
        self.int4 = q


def applies(spec) -> bool:
    return spec.precision == "int4"


TOKEN_MIXING_BITS = (8, 4)   # the choices; 8 the default (ExportSpec.int4_token_bits), see the docstring


def bits_for(layer: str, token_bits: int = 8) -> int:
    return token_bits if ".mlp_tokens." in layer else 4


def layers(model) -> list[str]:
    """Module paths of the Linears that get 4-bit weights: every token- and channel-mixing MLP's."""
    return [n for n, m in model.named_modules() if isinstance(m, nn.Linear)
            and (".mlp_tokens." in n or ".mlp_channels." in n)]


def codes(model) -> dict[str, WeightCodes]:
    """{layer: its codes} of a prepared model."""
    return {n: m.int4 for n, m in model.named_modules() if isinstance(m, Int4Linear)}


def hessians(model, x: np.ndarray, names) -> dict[str, np.ndarray]:
    """H = X^T X (K, K) of each named Linear's input over images x, every token a row of X."""
    h: dict[str, np.ndarray] = {}
    for inputs in module_tensors(model, x, names, inputs=True)():
        for n, v in inputs.items():                                    # v: (B, rows, K)
            rows = v.reshape(-1, v.shape[-1]).astype(np.float64)
            h[n] = rows.T @ rows if n not in h else h[n] + rows.T @ rows
    return h


def prepare(checkpoint, spec, calib):
    """(checkpoint with Int4Linear layers, details) for an INT4 export; others pass through."""
    if not applies(spec):
        return checkpoint, {}
    if calib is None or len(calib) == 0:
        raise CalibrationError("--precision int4 needs calibration data (--calib-data SPEC): GPTQ rounds each "
                               "layer's weights against its inputs on those images")
    block = check_block(spec.int4_block)
    if spec.int4_token_bits not in TOKEN_MIXING_BITS:
        raise BadInput(f"--int4-token-bits must be one of {', '.join(map(str, TOKEN_MIXING_BITS))}, got "
                       f"{spec.int4_token_bits}")
    if spec.int4_format not in INT4_FORMATS:
        raise BadInput(f"--int4-format must be one of {', '.join(INT4_FORMATS)}, got {spec.int4_format!r}")
    model = copy.deepcopy(checkpoint.model).eval()
    names = layers(model)
    h = hessians(model, calib.x, names)
    modules = dict(model.named_modules())
    if spec.int4_format == "palette":
        weights, details = int4_palette.palettes(model, names, h, calib.x)
    else:
        weights, details = _blocks(modules, names, h, spec, block)
    for n, q in weights.items():
        parent, attr = n.rsplit(".", 1)
        setattr(modules[parent], attr, Int4Linear(modules[n], q))
    details = {**details, "format": spec.int4_format, "layers": len(names), "float_layers": float_layers(model),
               "calibration_images": int(len(calib.x)), "calibration_sha256": calib.sha256}
    return replace(checkpoint, model=model), {"int4": details}


def _blocks(modules, names, h, spec, block) -> tuple[dict[str, WeightCodes], dict]:
    """({layer: GPTQ's block-wise codes}, details)."""
    out, gains = {}, {}
    for n in progress(names, desc="int4: GPTQ, layer by layer", leave=False):   # one column at a time: slow on large layers
        w = modules[n].weight.detach().double().numpy()                 # (N, K)
        bits = bits_for(n, spec.int4_token_bits)
        b = w.shape[1] if bits == 8 and ".mlp_tokens." in n else layer_block(w.shape[1], block)   # 8: per output
        q = gptq(w, h[n], b, bits)
        rtn = round_to_nearest(w, b, bits)
        # the measured gain over rounding to nearest, on the calibration inputs (the objective GPTQ lowers)
        gains[n] = round(10 * np.log10(output_error(w, rtn.dequantize(), h[n]) /
                                       max(output_error(w, q.dequantize(), h[n]), 1e-30)), 2)
        out[n] = q
    details = {"weights": "int4, symmetric, one float32 scale per block of inputs" + (
                   "; the token-mixing MLPs int8, one scale per output" if spec.int4_token_bits == 8 else ""),
               "block": block, "token_mixing_bits": spec.int4_token_bits,
               "bits": {n: bits_for(n, spec.int4_token_bits) for n in names},
               "rounding": "GPTQ on the calibration images' layer inputs",
               "per_channel": [n for n in names if bits_for(n, spec.int4_token_bits) == 4 and modules[n].in_features % block],
               "gptq_gain_db": gains}
    return out, details


def float_layers(model) -> list[str]:
    """The Linear / Conv2d layers an INT4 export leaves float: the patch stem and the head."""
    mlp = set(layers(model))
    return [n for n, m in model.named_modules() if isinstance(m, (nn.Linear, nn.Conv2d)) and n not in mlp]


def qdq_int4(onnx_model, model):
    """A copy of an fp32 ONNX graph of `model` (a prepared one) with every Int4Linear's MatMul weight
    as an int4 initializer (K, N) + float32 scales (K / block, N) + DequantizeLinear(axis 0,
    block_size), or per output channel (N,) with axis 1 where one block spans K, at opset OPSET. The graph's float weight must equal the codes times their scales:
    a mismatch (a layer mapped to the wrong MatMul) fails here, not on a device."""
    onnx = require("onnx", "onnx")
    from onnx import helper, numpy_helper, version_converter

    # opset 17 -> 21 by ONNX's converter (ReduceMean's axes become an input at 18, ...)
    out = version_converter.convert_version(onnx_model, OPSET)
    g = out.graph
    inits = {i.name: i for i in g.initializer}
    weights = codes(model)
    found, new_nodes = set(), {}
    for node in quant_nodes(out):
        layer = layer_name(node.name)
        if layer not in weights:
            continue
        if node.op_type != "MatMul" or node.input[1] not in inits:
            raise CalibrationError(f"int4: layer {layer} is a {node.op_type} without a constant weight in the graph")
        q = weights[layer]
        w = numpy_helper.to_array(inits[node.input[1]])                 # (K, N): the MatMul's B
        want = q.dequantize().T.astype(w.dtype)                         # float32, or float16 (TensorRT)
        if w.shape != want.shape or not np.allclose(w, want, rtol=1e-3 if w.dtype == np.float16 else 1e-6, atol=1e-7):
            raise CalibrationError(f"int4: the graph's weight of {layer} is not its int4 grid")
        # Short tensor names (w<i>.q codes, w<i>.s scales, w<i> the weight): each name is stored with its
        # tensor and node, and a 4-bit file is small enough for 100 bytes a layer to be 0.4 % of it.
        tag = f"w{len(found)}"
        codes_t = q.codes.T.copy()                                      # (K, N)
        g.initializer.append(int4_tensor(onnx, f"{tag}.q", codes_t) if q.bits == 4 else
                             numpy_helper.from_array(codes_t.astype(np.int8), f"{tag}.q"))
        blocked = q.scales.shape[1] > 1                                 # else one scale per output: per axis
        # (K/block, N) | (N,), in the weight's float type: the DequantizeLinear's output type
        scale = np.ascontiguousarray(q.scales.T if blocked else q.scales[:, 0], w.dtype)
        g.initializer.append(numpy_helper.from_array(scale, f"{tag}.s"))
        new_nodes[node.name] = helper.make_node("DequantizeLinear", [f"{tag}.q", f"{tag}.s"], [tag], name=f"{tag}.dq",
                                                **({"axis": 0, "block_size": q.block} if blocked else {"axis": 1}))
        node.input[1] = tag
        found.add(layer)
    missing = sorted(set(weights) - found)
    if missing:
        raise CalibrationError(f"int4: no MatMul in the graph for {', '.join(missing)}")
    nodes = []
    for node in g.node:                                                 # each DQ right before its MatMul
        if node.name in new_nodes:
            nodes.append(new_nodes[node.name])
        nodes.append(node)
    del g.node[:]
    g.node.extend(nodes)
    used = {i for n in g.node for i in n.input}
    kept = [i for i in g.initializer if i.name in used]                 # the float weights are gone
    del g.initializer[:]
    g.initializer.extend(kept)
    return out


def int4_tensor(onnx, name: str, codes: np.ndarray):
    """An INT4 TensorProto of codes in [-8, 7] (int8 array), packed two to a byte in raw_data, the first
    element in the low nibble (ONNX's layout, TensorRT's too): half a byte per weight in the file."""
    flat = (codes.astype(np.int8).reshape(-1) & 0x0F).astype(np.uint8)
    if len(flat) % 2:
        flat = np.append(flat, np.uint8(0))
    t = onnx.TensorProto(name=name, data_type=onnx.TensorProto.INT4, dims=list(codes.shape))
    t.raw_data = (flat[0::2] | (flat[1::2] << 4)).astype(np.uint8).tobytes()
    return t


def summary(onnx_model) -> dict:
    """How many MatMul weights the graph stores in 4 and in 8 bits, for the manifest."""
    onnx = require("onnx", "onnx")
    by_type = {i.name: i.data_type for i in onnx_model.graph.initializer}
    dq = [n.input[0] for n in onnx_model.graph.node if n.op_type == "DequantizeLinear"]
    return {"int4_weights": sum(by_type.get(t) == onnx.TensorProto.INT4 for t in dq),
            "int8_weights": sum(by_type.get(t) == onnx.TensorProto.INT8 for t in dq)}


__all__ = ["BLOCK", "Int4Linear", "applies", "codes", "float_layers", "layers", "prepare", "qdq_int4", "summary"]
