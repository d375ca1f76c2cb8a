"""`--int4-format palette` (export/int4_palette.py, Core ML): the bits spread over the layers stay
within a uniform 4-bit palette's bytes (counted here by hand), the layers paid with fewer bits are
the least sensitive ones (each sensitivity recomputed here), the program holds the stand-in's
weights (read back through coremltools' MIL reader), and only Core ML takes the format."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from mixer_edge.errors import BadInput
from mixer_edge.export import int4, int4_palette
from mixer_edge.export.base import ExportSpec
from mixer_edge.export.build import export_one
from mixer_edge.runtime.claims import model_facts

SPEC = ExportSpec("int4", int4_format="palette", coreml_target="iOS18")


@pytest.fixture(scope="module")
def prepared(ck, calib):
    return int4.prepare(ck, SPEC, calib)


def test_bits_fit_the_uniform_4bit_budget_by_hand(ck, prepared):
    _, details = prepared
    bits = details["int4"]["bits"]
    shapes = {n: m.weight.numel() for n, m in ck.model.named_modules() if n in bits}
    by_hand = lambda b: sum((shapes[n] * b[n] + 7) // 8 + 2 * 2 ** b[n] for n in shapes)   # noqa: E731
    budget = by_hand(dict.fromkeys(shapes, 4))
    assert by_hand(bits) <= budget == details["int4"]["budget_bytes"]
    assert all(b == int4_palette.TOKEN_BITS for n, b in bits.items() if ".mlp_tokens." in n), bits
    assert set(bits.values()) <= {int4_palette.TOKEN_BITS, 4, int4_palette.LOW_BITS}


def test_the_layers_given_fewer_bits_are_the_least_sensitive(ck, calib, prepared):
    _, details = prepared
    bits = details["int4"]["bits"]
    low = {n for n, b in bits.items() if b == int4_palette.LOW_BITS}
    assert low, bits     # the T/2's 6-bit token mixing is paid by one channel-mixing layer (measured)
    channel = [n for n in bits if ".mlp_channels." in n]
    # each channel layer alone on a 3-bit k-means palette, the logits' squared error: recomputed here
    x = torch.from_numpy(calib.x[:int4_palette.SENSITIVITY_IMAGES])
    ref = ck.model.eval()(x).detach()
    errors = {}
    for n in channel:
        lin = dict(ck.model.named_modules())[n]
        keep = lin.weight.detach().clone()
        w = keep.double().numpy()
        table = np.sort(np.unique(np.asarray(int4_palette.palettize(w, None, 3).lut)))
        with torch.no_grad():
            lin.weight.copy_(torch.from_numpy(table[np.abs(w[..., None] - table).argmin(-1)]).float())
            errors[n] = float(((ck.model(x) - ref) ** 2).sum())
            lin.weight.copy_(keep)
    ranked = sorted(channel, key=errors.get)
    assert low == set(ranked[:len(low)]), (low, errors)


def test_coreml_palette_program_holds_the_stand_ins_weights(ck, calib, val, prepared, tmp_path):
    pytest.importorskip("coremltools")
    import coremltools as ct
    from coremltools.converters.mil.frontend.milproto.load import load as milproto_load
    from coremltools.models.utils import _convert_model_spec_to_pymil_prog

    o = export_one(ck, "coreml", SPEC, calib, tmp_path, validation=val)
    assert o.passed, o.problems
    assert o.validation["top1"] >= o.validation["reference_top1"] - 0.01
    mlmodel = ct.models.MLModel(str(o.dest / "model.mlpackage"), skip_model_load=True)
    prog = _convert_model_spec_to_pymil_prog(mlmodel, mlmodel.get_spec().specificationVersion, milproto_load)
    found = [op.lut.val.reshape(-1)[op.indices.val.astype(np.int64)].astype(np.float32)   # (N, K)
             for op in prog.functions["main"].operations if op.op_type == "constexpr_lut_to_dense"]
    grid = [m.weight.detach().numpy() for m in prepared[0].model.modules() if isinstance(m, int4.Int4Linear)]
    assert len(found) == len(grid) > 0
    for g in grid:   # each layer's palette weights, exactly (float16 tables)
        assert any(f.shape == g.shape and np.array_equal(f, g) for f in found)
    assert o.artifact.manifest["export"]["int4"]["format"] == "palette"
    assert o.artifact.manifest["export"]["quantization"]["op"] == "constexpr_lut_to_dense"
    # the runtime's own reader (no coremltools) sees the palettized weights too
    facts = model_facts(o.artifact.path, o.artifact.manifest)
    assert facts.precision == "int4", facts.evidence


@pytest.mark.parametrize("target", ["onnx", "openvino", "tensorrt"])
def test_only_coreml_takes_the_palette(ck, calib, val, target, tmp_path):
    with pytest.raises(BadInput, match="palette: Core ML only"):
        export_one(ck, target, SPEC, calib, tmp_path, validation=val)
