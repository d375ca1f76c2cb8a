"""What a model file says about itself, read from the file with the standard library alone: the
precision it computes in, its input and output shapes, how many of its matrix multiplies it
quantizes and, for ONNX, the class names and preprocessing in its metadata.

Why not the runtimes' own readers: a device has only numpy, Pillow and its runtime (no `onnx`
package, ONNX Runtime does not expose the graph, coremltools takes seconds to import and does not
run off macOS), and these facts must be read wherever an artifact is read, whatever is installed.
Three small readers do it: a minimal protocol-buffer field walk (ONNX ModelProto, the Core ML
Model spec inside an .mlpackage) and xml.etree for OpenVINO's IR. They read a file the manifest
lists and hashes, after its sha256 was checked (artifact.read_manifest); the counting rules are
those of the export's structural check (export/qdq.py, export/openvino.py, export/coreml_program.py),
and tests compare the two on real artifacts.
"""
from __future__ import annotations

import json
import xml.etree.ElementTree as ET
from collections import Counter
from dataclasses import dataclass

from .errors import BadInput


@dataclass(frozen=True)
class ModelFacts:
    """What a model file says. Shapes: a tuple per axis, None where the axis is dynamic (or, for a
    Core ML program, flexible); None as a whole where the file does not say."""
    file: str                       # the file read, relative to the artifact folder
    format: str                     # ONNX, OpenVINO IR, Core ML program
    precision: str                  # fp32 | fp16 | int8
    evidence: str                   # why that precision, in words ("18 QuantizeLinear nodes", ...)
    input_shape: tuple | None
    output_shape: tuple | None
    matmuls: tuple = ()             # per matrix multiply: (weight quantized, data input quantized)
    classes: tuple | None = None    # ONNX metadata "classes"
    preprocess: dict | None = None  # ONNX metadata "preprocess"

    def quantized(self, weights_only: bool) -> int:
        """Matrix multiplies quantized as export/int8.quantized_ops_check counts them: the weight,
        and (unless weights only) the data input too."""
        return sum(w and (weights_only or a) for w, a in self.matmuls)


# ---- protocol buffers: just enough to walk fields -------------------------------------------------

def _varint(buf, i: int) -> tuple[int, int]:
    value = shift = 0
    while True:
        byte = buf[i]
        i += 1
        value |= (byte & 0x7F) << shift
        if byte < 0x80:
            return value, i
        shift += 7
        if shift > 63:
            raise ValueError("varint longer than 10 bytes")


def fields(buf):
    """(field number, value) of every field of one message: an int for varints and fixed-width
    numbers, a memoryview for length-delimited fields (strings, bytes, messages, packed lists)."""
    buf, i = memoryview(buf), 0
    while i < len(buf):
        key, i = _varint(buf, i)
        number, wire = key >> 3, key & 7
        if wire == 0:
            value, i = _varint(buf, i)
        elif wire == 1 or wire == 5:
            size = 8 if wire == 1 else 4
            value, i = int.from_bytes(buf[i:i + size], "little"), i + size
        elif wire == 2:
            size, i = _varint(buf, i)
            value, i = buf[i:i + size], i + size
        else:   # groups (3, 4) are not in these schemas
            raise ValueError(f"unexpected wire type {wire} of field {number}")
        if i > len(buf):
            raise ValueError("a field runs past the end of its message")
        yield number, value


def _all(buf, number: int) -> list:
    return [v for n, v in fields(buf) if n == number]


def _one(buf, number: int, default=None):
    found = _all(buf, number)
    return found[-1] if found else default   # protobuf: the last occurrence of a field wins


def _text(value) -> str:
    return bytes(value).decode("utf-8", "replace")


def _ints(values) -> list[int]:
    """A repeated integer field, packed (one length-delimited value) or not."""
    out = []
    for v in values:
        if isinstance(v, int):
            out.append(v)
        else:
            i = 0
            while i < len(v):
                n, i = _varint(v, i)
                out.append(n)
    return [n - (1 << 64) if n >= 1 << 63 else n for n in out]   # int64 two's complement


def _read(path, what: str, reader):
    try:
        return reader(path.read_bytes())
    except (ValueError, IndexError, KeyError, TypeError, UnicodeDecodeError, ET.ParseError) as e:
        raise BadInput(f"{path.name} is not a readable {what}: {e}") from None


# ---- ONNX -------------------------------------------------------------------------------------------

Q_DQ = ("QuantizeLinear", "DequantizeLinear")
MATMUL_OPS = ("Conv", "MatMul", "Gemm")
INTEGER_OPS = ("QLinearConv", "QLinearMatMul", "QGemm", "ConvInteger", "MatMulInteger", "MatMulIntegerToFloat")
ONNX_FLOAT16 = 10
ONNX_4BIT = (21, 22)   # TensorProto.UINT4, INT4: 4-bit weights (export/int4.py)


def read_onnx(path, name: str) -> ModelFacts:
    return _read(path, "ONNX model", lambda blob: _onnx_facts(blob, name))


def _onnx_facts(blob, name: str) -> ModelFacts:
    # ModelProto: graph 7, metadata_props 14 (key 1, value 2). GraphProto: node 1, initializer 5,
    # input 11, output 12. NodeProto: input 1, output 2, op_type 4, attribute 5 (name 1, i 3).
    graph = _one(blob, 7)
    if graph is None:
        raise ValueError("no graph")
    meta = {_text(_one(p, 1, b"")): _text(_one(p, 2, b"")) for p in _all(blob, 14)}
    nodes, initializers, inputs, outputs = [], [], [], []
    for number, value in fields(graph):
        if number == 1:
            nodes.append(value)
        elif number == 5:
            initializers.append(value)
        elif number == 11:
            inputs.append(value)
        elif number == 12:
            outputs.append(value)
    ops = [(_text(_one(n, 4, b"")), [_text(v) for v in _all(n, 1)], [_text(v) for v in _all(n, 2)], n)
           for n in nodes]
    counts = Counter(op for op, *_ in ops)
    weights = {_text(_one(t, 8, b"")) for t in initializers}
    half = sum(_one(t, 2, 0) == ONNX_FLOAT16 for t in initializers) + sum(
        1 for op, _, _, n in ops if op == "Cast"
        and any(_text(_one(a, 1, b"")) == "to" and _one(a, 3) == ONNX_FLOAT16 for a in _all(n, 5)))
    four = sum(_one(t, 2, 0) in ONNX_4BIT for t in initializers)
    if four:
        precision, evidence = "int4", f"{four} 4-bit weight initializers, {counts['DequantizeLinear']} DequantizeLinear nodes"
    elif any(counts[o] for o in (*Q_DQ, *INTEGER_OPS)):
        precision = "int8"
        evidence = ", ".join(f"{counts[o]} {o}" for o in (*Q_DQ, *INTEGER_OPS) if counts[o]) + " nodes"
    elif half:
        precision, evidence = "fp16", f"{half} float16 weights and casts"
    else:
        precision, evidence = "fp32", "no quantize nodes, no float16 weights"
    dq_out = {out for op, _, outs, _ in ops if op == "DequantizeLinear" for out in outs}
    matmuls = tuple((True, True) if op in INTEGER_OPS else (len(ins) > 1 and ins[1] in dq_out, ins[0] in dq_out)
                    for op, ins, _, _ in ops if op in (*MATMUL_OPS, *INTEGER_OPS))
    data_inputs = [v for v in inputs if _text(_one(v, 1, b"")) not in weights]   # old IRs list weights as inputs
    return ModelFacts(name, "ONNX", precision, evidence, _onnx_shape(data_inputs), _onnx_shape(outputs), matmuls,
                      _json_meta(meta, "classes", list), _json_meta(meta, "preprocess", dict))


def _onnx_shape(values) -> tuple | None:
    """The first ValueInfoProto's tensor shape: name 1, type 2 -> tensor_type 1 -> shape 2 -> dim 1
    (dim_value 1, dim_param 2)."""
    if not values:
        return None
    tensor = _one(_one(values[0], 2, b""), 1, b"")
    shape = _one(tensor, 2)
    if shape is None:
        return None
    return tuple(_one(d, 1) for d in _all(shape, 1))   # dim_param (a name) or nothing: dynamic (None)


def _json_meta(meta: dict, key: str, kind):
    try:
        value = json.loads(meta[key])
    except (KeyError, ValueError):
        return None
    return value if isinstance(value, kind) else None


# ---- OpenVINO IR ------------------------------------------------------------------------------------

# How an IR feeds its matrix multiplies (export/openvino.py: the same rule through OpenVINO's API,
# where a Const is called Constant).
IR_MATMULS = ("MatMul", "Convolution")
WEIGHT_PATH = ("Convert", "Subtract", "Multiply", "Reshape", "Transpose", "Unsqueeze")
ACTIVATION_PATH = ("Reshape", "Transpose")
LOW_PRECISION = ("i8", "u8", "i4", "u4")
IR_4BIT = ("i4", "u4")


def read_ir(path, name: str) -> ModelFacts:
    return _read(path, "OpenVINO IR", lambda blob: _ir_facts(ET.fromstring(blob), name))


def _ir_facts(net, name: str) -> ModelFacts:
    layers = {layer.get("id"): layer for layer in net.iter("layer")}
    # (to-layer, to-port) -> from-layer: what feeds each input port
    feeds = {(e.get("to-layer"), e.get("to-port")): e.get("from-layer") for e in net.iter("edge")}

    def const_type(layer) -> str:
        return (layer.find("data").get("element_type") or "") if layer.find("data") is not None else ""

    def source(layer, index: int, through) -> str:
        node = _ir_input(layer, index, feeds, layers)
        while node is not None and node.get("type") in through:
            node = _ir_input(node, 0, feeds, layers)
        if node is None:
            return "nothing"
        if node.get("type") == "Const" and const_type(node) in LOW_PRECISION:
            return "low-precision constant"
        return node.get("type")

    types = Counter(layer.get("type") for layer in layers.values())
    consts = Counter(const_type(layer) for layer in layers.values() if layer.get("type") == "Const")
    low = sum(consts[t] for t in LOW_PRECISION)
    four = sum(consts[t] for t in IR_4BIT)
    if four:
        precision, evidence = "int4", f"{four} 4-bit constants"
    elif types["FakeQuantize"] or low:
        precision, evidence = "int8", f"{types['FakeQuantize']} FakeQuantize ops, {low} low-precision constants"
    elif consts["f16"]:
        precision, evidence = "fp16", f"{consts['f16']} f16 constants"
    else:
        precision, evidence = "fp32", "no FakeQuantize, no low-precision or f16 constants"
    matmuls = tuple((source(layer, 1, WEIGHT_PATH) in ("low-precision constant", "FakeQuantize"),
                     source(layer, 0, ACTIVATION_PATH) == "FakeQuantize")
                    for layer in layers.values() if layer.get("type") in IR_MATMULS)
    params = [layer for layer in layers.values() if layer.get("type") == "Parameter"]
    results = [layer for layer in layers.values() if layer.get("type") == "Result"]
    in_shape = None
    if params and params[0].find("data") is not None and params[0].find("data").get("shape") is not None:
        in_shape = tuple(_ir_dim(d) for d in params[0].find("data").get("shape").split(",") if d.strip())
    out_shape = None
    if results:
        port = results[0].find("input/port")
        out_shape = None if port is None else tuple(_ir_dim(d.text) for d in port.findall("dim"))
    return ModelFacts(name, "OpenVINO IR", precision, evidence, in_shape, out_shape, matmuls)


def _ir_input(layer, index: int, feeds: dict, layers: dict):
    """The layer feeding input `index` of `layer` (its index-th input port, in the order listed)."""
    ports = layer.findall("input/port")
    if index >= len(ports):
        return None
    return layers.get(feeds.get((layer.get("id"), ports[index].get("id"))))


def _ir_dim(text: str):
    text = (text or "").strip()
    return None if text in ("?", "-1", "") or not text.lstrip("-").isdigit() else int(text)


# ---- Core ML ML Program -------------------------------------------------------------------------------

# export/coreml_program.py: ops whose output is an int8 weight expanded at load time; the ops with
# the MACs; MIL data types.
QUANTIZED_WEIGHT_OPS = ("constexpr_affine_dequantize", "constexpr_blockwise_shift_scale", "constexpr_lut_to_dense")
WEIGHT_OPS = ("linear", "conv")
MIL_FLOAT16 = 10
MIL_4BIT = (25, 35)    # MIL DataType INT4, UINT4: per-block 4-bit weights (export/coreml_int4.py)
MIL_PALETTE = (35, 36, 37, 38, 39)   # UINT4, UINT2, UINT1, UINT6, UINT3: palette indices (--int4-format palette)
GRAYSCALE = (10, 40)   # ImageFeatureType.ColorSpace: GRAYSCALE, GRAYSCALE_FLOAT16 (RGB 20, BGR 30)


def _inline_dtype(op, key: str):
    """The MIL data type of an op's input held inline (Argument -> Binding.value -> ValueType ->
    TensorType.dataType), None when the input is a name."""
    args = {_text(_one(e, 1, b"")): _one(e, 2, b"") for e in _all(op, 2)}
    value = _one(_one(args.get(key, b""), 1, b""), 2)
    return None if value is None else _one(_one(_one(value, 2, b""), 1, b""), 1)


def read_mlprogram(path, name: str) -> ModelFacts:
    return _read(path, "Core ML program", lambda blob: _mlprogram_facts(blob, name))


def _mlprogram_facts(blob, name: str) -> ModelFacts:
    # Model: description 2 (input 1, output 10), mlProgram 502 (functions 2: map name -> Function).
    # Function: opset 2, block_specializations 3 (map opset -> Block). Block: operations 3.
    # Operation: type 1, inputs 2 (map name -> Argument: arguments 1 -> Binding: name 1, value 2),
    # outputs 3 (NamedValueType: name 1, type 2 -> tensorType 1 -> dataType 1, dimensions 3), blocks 4.
    program = _one(blob, 502)
    if program is None:
        raise ValueError("not an ML Program")
    functions = {_text(_one(e, 1, b"")): _one(e, 2, b"") for e in _all(program, 2)}
    main = functions["main"]
    blocks = {_text(_one(e, 1, b"")): _one(e, 2, b"") for e in _all(main, 3)}
    ops, stack = [], [blocks[_text(_one(main, 2, b""))]]
    while stack:
        for op in _all(stack.pop(), 3):
            ops.append(op)
            stack.extend(_all(op, 4))
    kinds = [_text(_one(op, 1, b"")) for op in ops]
    by_output = {_text(_one(o, 1, b"")): i for i, op in enumerate(ops) for o in _all(op, 3)}
    counts = Counter(kinds)
    half = sum(_one(_one(_one(o, 2, b""), 1, b""), 1) == MIL_FLOAT16 for op in ops for o in _all(op, 3))
    quantizers = sum(counts[t] for t in (*QUANTIZED_WEIGHT_OPS, "quantize", "dequantize"))
    four = sum(_inline_dtype(op, "data") in MIL_4BIT or _inline_dtype(op, "indices") in MIL_PALETTE
               for op, kind in zip(ops, kinds) if kind in QUANTIZED_WEIGHT_OPS)
    if four:
        precision, evidence = "int4", f"{four} {'/'.join(QUANTIZED_WEIGHT_OPS)} ops with 4-bit (or sub-byte palette) data"
    elif quantizers:
        precision = "int8"
        evidence = ", ".join(f"{counts[t]} {t}" for t in (*QUANTIZED_WEIGHT_OPS, "quantize", "dequantize")
                             if counts[t]) + " ops"
    elif half:
        precision, evidence = "fp16", f"{half} float16 tensors"
    else:
        precision, evidence = "fp32", "no quantized or float16 ops"

    def source(op, key: str) -> str:
        args = {_text(_one(e, 1, b"")): _one(e, 2, b"") for e in _all(op, 2)}
        binding = _one(args.get(key, b""), 1)
        if binding is None or _one(binding, 2) is not None:
            return "inline const"
        src = by_output.get(_text(_one(binding, 1, b"")))
        while src is not None and kinds[src] == "cast":
            cast_args = {_text(_one(e, 1, b"")): _one(e, 2, b"") for e in _all(ops[src], 2)}
            src = by_output.get(_text(_one(_one(cast_args.get("x", b""), 1, b""), 1, b"")))
        return "input" if src is None else kinds[src]

    matmuls = tuple((source(op, "weight") in QUANTIZED_WEIGHT_OPS, source(op, "x") == "dequantize")
                    for op, kind in zip(ops, kinds) if kind in WEIGHT_OPS)
    description = _one(blob, 2, b"")
    inputs, outputs = _all(description, 1), _all(description, 10)
    out_shape = _mlprogram_output(ops, by_output, blocks, main, outputs)
    return ModelFacts(name, "Core ML program", precision, evidence, _feature_shape(inputs), out_shape, matmuls)


def _feature_shape(features) -> tuple | None:
    """A FeatureDescription's shape (type 3): multiArrayType 5 (shape 1) or imageType 4 (width 1,
    height 2, colorSpace 3); the batch axis is flexible (enumerated shapes), so None."""
    if not features:
        return None
    kind = _one(features[0], 3, b"")
    array, image = _one(kind, 5), _one(kind, 4)
    if array is not None:
        shape = _ints(_all(array, 1))
        return (None, *shape[1:]) if shape else None
    if image is not None:
        channels = 1 if _one(image, 3, 0) in GRAYSCALE else 3
        return (None, channels, _one(image, 2, 0), _one(image, 1, 0))
    return None


def _mlprogram_output(ops, by_output, blocks, main, outputs) -> tuple | None:
    """The output's shape from the op that makes it (a program's description may leave it out)."""
    if not outputs:
        return None
    name = _text(_one(outputs[0], 1, b""))
    block = blocks[_text(_one(main, 2, b""))]
    produced = [_text(v) for v in _all(block, 2)]
    if name not in produced and produced:
        name = produced[0]
    index = by_output.get(name)
    if index is None:
        return None
    for o in _all(ops[index], 3):
        if _text(_one(o, 1, b"")) == name:
            dims = _all(_one(_one(o, 2, b""), 1, b""), 3)   # Dimension: constant 1 (size 1) | unknown 2
            return tuple(_one(_one(d, 1, b""), 1, 0) if _one(d, 1) is not None else None for d in dims)
    return None
