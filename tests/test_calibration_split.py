"""The MLP split for massive hidden units (calibration/split.py): exact in FP32, chosen from
statistics alone, and worth its place in the INT8 export. References: the unsplit module's own output,
a hand computation of the noise estimate, and the same export with the split off."""
from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest
import torch

from mixer_edge.calibration.split import (MASSIVE_SPREAD, SplitMlp, _split, choose, inject_massive_units,
                                          split_massive)
from mixer_edge.export.base import ExportSpec
from mixer_edge.export.build import export_one
from mixer_edge.export.reference import validation_data
from mixer_edge.models.mixer import Mlp


def test_a_split_mlp_computes_the_same_function():
    torch.manual_seed(0)
    mlp = Mlp(16, 64, "exact").eval()
    x = torch.randn(8, 5, 16)
    split = _split(mlp, [3, 40, 7]).eval()
    assert isinstance(split, SplitMlp)
    assert split.main.fc1.out_features == 61 and split.massive.fc1.out_features == 3
    assert torch.count_nonzero(split.massive.fc2.bias) == 0          # fc2's bias goes with the main half
    torch.testing.assert_close(split(x), mlp(x), rtol=0, atol=1e-5)  # fp32: only the order of the sum differs


def test_the_massive_group_minimises_the_hand_computed_noise():
    # 98 units at 1, two at 100 and 200, equal fc2 columns: noise ~ amax(group)^2 x columns in it.
    amax = np.array([1.0] * 98 + [100.0, 200.0])
    w = np.ones(100)
    pick = choose(amax, w)
    # by hand: whole 200^2 * 100 = 4e6; k=1: 200^2 + 100^2 * 99 = 1.03e6; k=2: 200^2 * 2 + 1 * 98 = 80,098
    assert pick["units"] == [99, 98]
    assert pick["gain"] == pytest.approx(4e6 / 80098, rel=1e-3)
    assert pick["spread"] == 200.0


def test_a_flat_layer_is_left_whole():
    rng = np.random.default_rng(0)
    amax = rng.uniform(0.5, 0.5 * MASSIVE_SPREAD * 0.9, size=256)    # spread below the threshold
    assert choose(amax, np.ones(256))["units"] == []


def test_massive_units_are_found_and_the_model_keeps_its_logits(ck, calib, val):
    model, record = inject_massive_units(ck.model, units=4, low=300, high=1000, x=calib.x)
    out, details = split_massive(model, calib.x)
    channel = [n for n in details["split"] if n.endswith("mlp_channels")]
    assert len(channel) == len(ck.model.blocks)                    # every block's channel MLP
    for i, block in enumerate(out.blocks):
        massive = block.mlp_channels.massive.fc1.out_features
        assert massive >= 4, details["layers"]                      # at least the injected ones
    with torch.no_grad():
        x = torch.from_numpy(val.x[:64])
        ref, got = model(x), out(x)
    assert float((got - ref).abs().max()) < 1e-4 * max(1.0, float(ref.abs().max()))


def test_the_trained_model_is_not_split(ck, calib):
    _, details = split_massive(ck.model, calib.x)
    assert details["split"] == [], details["layers"]


@pytest.fixture(scope="module")
def massive(ck, val, calib):
    """The digits model with 4 important hidden units per block at 300-1000x, and its validation data."""
    model, _ = inject_massive_units(ck.model, units=4, low=300, high=1000, x=calib.x)
    c = replace(ck, model=model)
    return c, replace(val, reference=validation_data(c, val.x, val.labels, val.source).reference)


@pytest.mark.parametrize("target", ["onnx", "openvino"])
def test_the_split_lifts_int8_on_massive_units(massive, calib, tmp_path, target):
    pytest.importorskip({"onnx": "onnxruntime", "openvino": "openvino"}[target])
    c, v = massive
    off = export_one(c, target, ExportSpec("int8", split=False), calib, tmp_path / "off", validation=v,
                     keep_invalid=True)
    on = export_one(c, target, ExportSpec("int8"), calib, tmp_path / "on", validation=v, keep_invalid=True)
    assert on.passed, on.problems
    recorded = on.artifact.manifest["export"]["split"]
    assert len(recorded["split"]) >= len(c.model.blocks)
    # measured by each runtime against the FP32 PyTorch logits on the held-out digits
    assert on.validation["sqnr_db"] >= off.validation["sqnr_db"] + 6.0, (on.validation, off.validation)
    assert on.validation["quantized_ops"]["status"] == "passed"


def test_token_mixing_mlps_with_massive_units_are_split_too(ck, calib, val):
    model, record = inject_massive_units(ck.model, units=4, low=300, high=1000, x=calib.x,
                                         kinds=("mlp_tokens", "mlp_channels"))
    assert {r["mlp"] for r in record} == {"mlp_tokens", "mlp_channels"}
    out, details = split_massive(model, calib.x)
    assert set(details["split"]) == {f"blocks.{i}.{k}" for i in range(len(ck.model.blocks))
                                     for k in ("mlp_tokens", "mlp_channels")}, details["layers"]
    with torch.no_grad():
        x = torch.from_numpy(val.x[:64])
        ref, got = model(x), out(x)
    assert float((got - ref).abs().max()) < 1e-4 * max(1.0, float(ref.abs().max()))


def test_a_recorded_split_is_made_again_and_merges_back_exactly(ck):
    from mixer_edge.calibration.split import merge, split_units

    units = {"blocks.0.mlp_channels": [3, 77, 500], "blocks.2.mlp_tokens": [1, 63]}
    split = split_units(ck.model, units)
    assert split.blocks[0].mlp_channels.units == (3, 77, 500)
    with torch.no_grad():
        split.blocks[0].mlp_channels.massive.fc2.bias.fill_(0.25)     # trained: the halves' biases sum
        split.blocks[0].mlp_channels.main.fc2.bias.sub_(0.25)
    merged, record = merge(split)
    assert record == {k: sorted(v) for k, v in units.items()}
    want, got = ck.model.state_dict(), merged.state_dict()
    assert set(got) == set(want)
    for k in want:
        torch.testing.assert_close(got[k], want[k], rtol=0, atol=1e-6, msg=k)
