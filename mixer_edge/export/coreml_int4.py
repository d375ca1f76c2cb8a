"""Core ML INT4: GPTQ's int4 codes and scales (export/int4.py) written into an ML Program as
`constexpr_blockwise_shift_scale` weights (iOS18 / macOS15), the op coremltools'
linear_quantize_weights(dtype="int4", granularity="per_block") writes; or, with --int4-format
palette, each layer's palette (export/int4_palette.py) as `constexpr_lut_to_dense` (uint indices of
the layer's bits, one float16 table per layer), the op coremltools' palettize_weights writes.

Why not linear_quantize_weights itself: it recomputes every block's scale from max |w| and rounds
to nearest, which would throw GPTQ's rounding away (measured: 9e-3 off the int4 grid the other
targets and validation use). Here each linear op's float16 weight const is replaced by the codes as
int4 data and the scales as float16, through coremltools' own graph-pass machinery; which const is
which layer is found by value (the program's float16 weight equals the layer's int4 grid), so a
layer that cannot be found fails the export instead of staying float unnoticed.
"""
from __future__ import annotations

import numpy as np

from ..calibration.palette import Palette
from ..errors import ValidationError


def write_int4(mlmodel, weights: dict, spec_version: int):
    """(ML Program with int4 weights, details) from a float16 program converted from a model whose
    Int4Linear layers are `weights` ({layer: WeightCodes | Palette})."""
    from coremltools.converters.mil import Builder as mb
    from coremltools.converters.mil.mil import types
    from coremltools.converters.mil.mil.passes.graph_pass import AbstractGraphPass
    from coremltools.models.utils import _apply_graph_pass   # what coremltools.optimize.coreml uses

    UINT = {1: types.np_uint1_dtype, 2: types.np_uint2_dtype, 3: types.np_uint3_dtype, 4: types.np_uint4_dtype,
            6: types.np_uint6_dtype, 8: np.uint8}                      # a palette's index type by its bits

    wanted = {name: q.dequantize().astype(np.float16) for name, q in weights.items()}   # (N, K) each
    placed: dict[str, str] = {}

    class Int4Weights(AbstractGraphPass):
        def apply(self, prog):
            main = prog.functions["main"]
            for op in list(main.operations):
                if op.op_type != "linear" or op.weight.op.op_type != "const":
                    continue
                w = op.weight.val                                               # (N, K) float16
                layer = _match(w, wanted, placed)
                if layer is None:
                    continue
                q, src = weights[layer], op.weight.op
                with main:
                    if isinstance(q, Palette):
                        new = mb.constexpr_lut_to_dense(
                            indices=q.indices.astype(UINT[q.bits]),             # (N, K)
                            lut=q.lut.astype(np.float16).reshape(1, 1, -1, 1),  # one table: (1, 1, 2^bits, 1)
                            before_op=op, name=f"{src.name}_lut")
                    else:
                        new = mb.constexpr_blockwise_shift_scale(
                            data=q.codes.astype(types.np_int4_dtype if q.bits == 4 else np.int8),   # (N, K)
                            scale=q.scales.astype(np.float16),                  # (N, K / block)
                            before_op=op, name=f"{src.name}_int4")
                main.replace_uses_of_var_after_op(anchor_op=new.op, old_var=op.weight, new_var=new)
                main.remove_ops([src])
                placed[layer] = src.name

    out = _apply_graph_pass(mlmodel, Int4Weights(), spec_version=spec_version, skip_model_load=True)
    missing = sorted(set(weights) - set(placed))
    if missing:
        raise ValidationError(f"Core ML int4: no linear op of the program holds the weight of {', '.join(missing)}")
    palette = any(isinstance(q, Palette) for q in weights.values())
    return out, {"tool": "mixer-edge (coremltools graph pass)",
                 "op": "constexpr_lut_to_dense" if palette else "constexpr_blockwise_shift_scale",
                 "weights": len(placed), "bits": {n: weights[n].bits for n in sorted(placed)},
                 ("tables" if palette else "scales"): "float16", "activations": "float16"}


def _match(w: np.ndarray, wanted: dict, placed: dict) -> str | None:
    """The layer whose int4 grid (in float16) this weight is, among those not placed yet."""
    for name, grid in wanted.items():
        if name not in placed and grid.shape == w.shape and np.array_equal(grid, w.astype(np.float16)):
            return name
    return None
