"""The structural check of a saved Core ML program (its protobuf spec, no runtime needed, so it
runs on Linux): op types, quantized weights and activations, compute dtypes, deployment target,
input and output. The facts it checks against (deployment targets, weight ops) live here too."""
from __future__ import annotations

from collections import Counter
from dataclasses import dataclass

from ..errors import ValidationError, require
from ..noise import third_party
from .qdq import MatMulOp

INPUT, OUTPUT = "input", "logits"
MAX_BATCH = 64                      # the largest batch the tensor input takes
# The tensor input's batch sizes, as enumerated shapes: Core ML runs a range-shaped input (RangeDim)
# on the Neural Engine only at its default shape, but every enumerated shape may go there. Powers of
# two: any batch splits exactly into them (100 = 64 + 32 + 4), so nothing is padded.
BATCHES = (1, 2, 4, 8, 16, 32, 64)


@dataclass(frozen=True)
class DeploymentTarget:
    spec_version: int          # the Core ML specification version ct.target.<name> stands for
    int8_activations: bool     # `quantize` / `dequantize` (W8A8) exist from iOS17 / macOS14 on
    int4_weights: bool = False  # per-block int4 (constexpr_blockwise_shift_scale) from iOS18 / macOS15 on


DEPLOYMENT_TARGETS = {         # --coreml-target NAME -> ct.target.NAME
    "iOS16": DeploymentTarget(7, False),
    "iOS17": DeploymentTarget(8, True),
    "iOS18": DeploymentTarget(9, True, True),
    "macOS13": DeploymentTarget(7, False),
    "macOS14": DeploymentTarget(8, True),
    "macOS15": DeploymentTarget(9, True, True),
}

# Ops whose output is an int8 weight expanded at load time (iOS16/17 and iOS18 spellings).
QUANTIZED_WEIGHT_OPS = ("constexpr_affine_dequantize", "constexpr_blockwise_shift_scale", "constexpr_lut_to_dense")
WEIGHT_OPS = ("linear", "conv")     # the ops that carry the MACs, and whose weights are quantized
PALETTE_INDICES = {"UINT1", "UINT2", "UINT3", "UINT4", "UINT6", "UINT8"}   # constexpr_lut_to_dense's index types
FLOAT16, FLOAT32 = "FLOAT16", "FLOAT32"



def check_program(mlpackage_path, precision: str, weights_only: bool, *, chw=None, num_classes: int | None = None,
                  input_kind: str = "tensor", deployment_target: str | None = None,
                  activation_quantizers: int | None = None, float_layers: int = 0) -> dict:
    """Read the saved program (its protobuf spec, no runtime) and check that it is what was asked
    for: quantized weights and activations, compute dtype, deployment target, input and output as
    the manifest describes them. Every violation is collected, then one ValidationError lists them."""
    spec = _ct().utils.load_spec(str(mlpackage_path))
    if spec.WhichOneof("Type") != "mlProgram":
        raise ValidationError(f"{mlpackage_path} holds a {spec.WhichOneof('Type')}, not an ML Program")
    facts = _program_facts(spec)
    problems = _precision_problems(facts, precision, weights_only, activation_quantizers, float_layers)
    if deployment_target is not None:
        version = DEPLOYMENT_TARGETS[deployment_target].spec_version
        if spec.specificationVersion != version:
            problems.append(f"specification version {spec.specificationVersion}, expected {version} "
                            f"for {deployment_target}")
    problems += _io_problems(facts, chw, num_classes, input_kind)
    if problems:
        raise ValidationError(f"Core ML program {mlpackage_path} is not what was asked for: " + "; ".join(problems))
    return {**facts, "compute_dtype": (FLOAT32 if precision == "fp32" else FLOAT16).lower(),
            "specification_version": spec.specificationVersion, "passed": True}


def _program_facts(spec) -> dict:
    """Op counts, compute dtypes, where each linear / conv weight comes from, inputs and outputs."""
    from coremltools.proto import MIL_pb2

    dtype = MIL_pb2.DataType.Name
    ops = list(_operations(spec))
    by_output = {o.name: op for op in ops for o in op.outputs}
    tensors = [(op, dtype(o.type.tensorType.dataType)) for op in ops for o in op.outputs
               if o.type.WhichOneof("type") == "tensorType"]
    return {
        "ops": dict(sorted(Counter(op.type for op in ops).items())),
        "compute": dict(Counter(t for op, t in tensors if op.type in (*WEIGHT_OPS, "layer_norm"))),
        "float_tensors": dict(Counter(t for _, t in tensors if t in (FLOAT16, FLOAT32))),
        "weights": {"sources": dict(Counter(_source(op, "weight", by_output) for op in ops if op.type in WEIGHT_OPS)),
                    "stored": dict(Counter(_stored_dtype(op, by_output, dtype) for op in ops
                                           if op.type in QUANTIZED_WEIGHT_OPS))},
        "activation_quantize_dtypes": sorted({t for op, t in tensors if op.type == "quantize"}),
        **_io_record(spec, by_output),
    }


def _precision_problems(facts: dict, precision: str, weights_only: bool, activation_quantizers,
                        float_layers: int = 0) -> list[str]:
    counts, sources = Counter(facts["ops"]), facts["weights"]["sources"]
    w8a8, int8 = precision == "int8" and not weights_only, precision == "int8"
    float_weights = sum(n for k, n in sources.items() if k not in QUANTIZED_WEIGHT_OPS)
    problems = []
    if not sources:
        problems.append("no linear or conv op")
    if precision == "int4":     # the MLP weights in 4 bits, the stem and head float (export/int4.py)
        if float_weights != float_layers:
            problems.append(f"int4 asked with {float_layers} layers kept float, but {float_weights} linear/conv "
                            f"weights are float (weight sources: {sources})")
        stored = set(facts["weights"]["stored"])
        if not (stored and stored <= PALETTE_INDICES) and ("INT4" not in stored or stored - {"INT4", "INT8"}):
            problems.append(f"quantized weights stored as {facts['weights']['stored']}, neither 4-bit blocks (8-bit "
                            f"token mixing) nor palette indices")
        if counts["quantize"] or counts["dequantize"]:
            problems.append("int4 (weight-only) program quantizes activations")
    if int8 and float_weights != float_layers:
        problems.append(f"int8 asked with {float_layers} layers kept float, but the weights of {float_weights} "
                        f"linear/conv ops are not quantized (weight sources: {sources})")
    if int8 and set(facts["weights"]["stored"]) - {"INT8", "UINT8"}:
        problems.append(f"quantized weights stored as {facts['weights']['stored']}, not 8-bit")
    if not int8 and precision != "int4" and any(counts[t] for t in QUANTIZED_WEIGHT_OPS):
        problems.append(f"{precision} program has quantized weight ops")
    if w8a8 and not (counts["quantize"] and counts["dequantize"]):
        problems.append(f"W8A8 asked but the program has {counts['quantize']} quantize and "
                        f"{counts['dequantize']} dequantize ops")
    if w8a8 and set(facts["activation_quantize_dtypes"]) - {"INT8", "UINT8"}:
        problems.append(f"activation quantize ops produce {facts['activation_quantize_dtypes']}, not 8-bit")
    if w8a8 and activation_quantizers is not None and counts["quantize"] != activation_quantizers:
        problems.append(f"{counts['quantize']} quantize ops in the program but {activation_quantizers} "
                        f"activation quantizers in the quantized PyTorch model")
    if not w8a8 and precision != "int4" and (counts["quantize"] or counts["dequantize"]):
        problems.append(f"{'weight-only int8' if int8 else precision} program quantizes activations")
    want = FLOAT32 if precision == "fp32" else FLOAT16
    if set(facts["compute"]) != {want}:
        problems.append(f"{precision} asks for {want.lower()} compute; linear/conv/layer_norm outputs are "
                        f"{facts['compute']}")
    if precision == "fp32" and facts["float_tensors"].get(FLOAT16):
        problems.append(f"fp32 program has {facts['float_tensors'][FLOAT16]} float16 tensors")
    return problems


def _operations(spec):
    """Every op of the main function, nested blocks included."""
    fn = spec.mlProgram.functions["main"]
    stack = [fn.block_specializations[fn.opset]]
    while stack:
        block = stack.pop()
        for op in block.operations:
            yield op
            stack.extend(op.blocks)


def _op_name(op) -> str:
    return op.attributes["name"].immediateValue.tensor.strings.values[0]


def _source(op, key: str, by_output) -> str:
    """The type of the op that produces an op's input (a linear / conv's "weight" or "x"), looking
    through casts."""
    arg = op.inputs[key].arguments[0]
    if arg.HasField("value"):
        return "inline const"
    src = by_output.get(arg.name)
    while src is not None and src.type == "cast":
        src = by_output.get(src.inputs["x"].arguments[0].name)
    return "input" if src is None else src.type


def matmul_ops(mlpackage_path) -> list:
    """Every linear / conv of a saved program and whether its inputs are quantized: the weight from
    a quantized-weight op, the data from a `dequantize` (the W8A8 form)."""
    spec = _ct().utils.load_spec(str(mlpackage_path))
    ops = list(_operations(spec))
    by_output = {o.name: op for op in ops for o in op.outputs}
    return [MatMulOp(_op_name(op), op.type, _source(op, "weight", by_output) in QUANTIZED_WEIGHT_OPS,
                     _source(op, "x", by_output) == "dequantize") for op in ops if op.type in WEIGHT_OPS]


def _stored_dtype(op, by_output, dtype) -> str:
    """The integer type a quantized-weight op stores its data in (an attribute or a const input)."""
    for key in ("quantized_data", "data", "indices"):
        if key in op.attributes:
            return dtype(op.attributes[key].type.tensorType.dataType)
        if key in op.inputs:
            arg = op.inputs[key].arguments[0]
            if arg.HasField("value"):                  # iOS18 programs hold it inline
                return dtype(arg.value.type.tensorType.dataType)
            src = by_output.get(arg.name)
            if src is not None and "val" in src.attributes:
                return dtype(src.attributes["val"].type.tensorType.dataType)
    return "unknown"


def _io_record(spec, by_output) -> dict:
    """The model's declared input(s) and output(s); an output's shape from the op that makes it."""
    from coremltools.proto import FeatureTypes_pb2

    array_dtype = FeatureTypes_pb2.ArrayFeatureType.ArrayDataType.Name
    inputs = []
    for f in spec.description.input:
        kind = f.type.WhichOneof("Type")
        if kind == "imageType":
            t = f.type.imageType
            inputs.append({"name": f.name, "kind": "image", "height": t.height, "width": t.width,
                           "color": FeatureTypes_pb2.ImageFeatureType.ColorSpace.Name(t.colorSpace)})
        else:
            t = f.type.multiArrayType
            ranges = [[r.lowerBound, r.upperBound] for r in t.shapeRange.sizeRanges]
            enumerated = [list(s.shape) for s in t.enumeratedShapes.shapes]
            inputs.append({"name": f.name, "kind": "tensor", "shape": list(t.shape), "ranges": ranges,
                           "enumerated": enumerated, "dtype": array_dtype(t.dataType)})
    outputs = []
    for f in spec.description.output:
        op = by_output.get(f.name)
        dims = [] if op is None else [d.constant.size if d.WhichOneof("dimension") == "constant" else None
                                      for o in op.outputs if o.name == f.name for d in o.type.tensorType.dimensions]
        outputs.append({"name": f.name, "kind": f.type.WhichOneof("Type"), "shape": dims,
                        "dtype": array_dtype(f.type.multiArrayType.dataType)})
    return {"inputs": inputs, "outputs": outputs}


def _io_problems(io: dict, chw, num_classes, input_kind: str) -> list[str]:
    """Input and output as the manifest describes them: "input" (batch, C, H, W), "logits" (batch, K)."""
    problems = []
    if [i["name"] for i in io["inputs"]] != [INPUT]:
        problems.append(f"inputs are {[i['name'] for i in io['inputs']]}, expected [{INPUT!r}]")
    elif io["inputs"][0]["kind"] != input_kind:
        problems.append(f"input is an {io['inputs'][0]['kind']}, --coreml-input asked for {input_kind}")
    elif chw is not None:
        i, (c, h, w) = io["inputs"][0], chw
        if input_kind == "tensor":
            if i["shape"][1:] != [c, h, w] or i["dtype"] != "FLOAT32":
                problems.append(f"input {i['shape']} {i['dtype']}, expected (batch, {c}, {h}, {w}) FLOAT32")
            if i["ranges"]:
                problems.append(f"input shape ranges {i['ranges']}: a range-shaped batch runs on the Neural Engine "
                                f"only at its default; expected the enumerated batches {list(BATCHES)}")
            if i["enumerated"] != [[b, c, h, w] for b in BATCHES]:
                problems.append(f"input shapes {i['enumerated']}, expected batches {list(BATCHES)} of ({c}, {h}, {w})")
        elif (i["height"], i["width"], i["color"]) != (h, w, "GRAYSCALE" if c == 1 else "RGB"):
            problems.append(f"image input {i['height']}x{i['width']} {i['color']}, expected {h}x{w} "
                            f"{'GRAYSCALE' if c == 1 else 'RGB'}")
    if [o["name"] for o in io["outputs"]] != [OUTPUT]:
        problems.append(f"outputs are {[o['name'] for o in io['outputs']]}, expected [{OUTPUT!r}]")
    else:
        o = io["outputs"][0]
        if o["dtype"] != "FLOAT32":
            problems.append(f"output {OUTPUT} is {o['dtype']}, expected FLOAT32")
        if num_classes is not None and (len(o["shape"]) != 2 or o["shape"][1] != num_classes):
            problems.append(f"output {OUTPUT} has shape {o['shape']}, expected (batch, {num_classes})")
    return problems


def _ct():
    with third_party():   # on Linux its import prints "Failed to load _MLModelProxy" eight times
        return require("coremltools", "coreml")
