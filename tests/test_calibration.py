"""The quantization recipe's pieces against independent references: range estimators against
numpy and a brute-force search, smoothing and recentring against the unmodified model's FP32
logits (exact transforms: tolerance 1e-5), quantization parameters against hand computation."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from mixer_edge.calibration import ranges
from mixer_edge.calibration.policy import layer_macs
from mixer_edge.calibration.observe import channel_amax
from mixer_edge.calibration.smoothing import folds, inject_outliers, smooth
from mixer_edge.errors import UnknownName

EXACT = 1e-5   # max |logit diff| a function-preserving transform may introduce (float32 rounding)


def logits(model, x):
    with torch.no_grad():
        return model(torch.from_numpy(x)).numpy()


# ---- range estimators ------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def gaussian_with_outlier():
    rng = np.random.default_rng(0)
    x = np.concatenate([rng.normal(0, 1, 200_000), [50.0]])
    return x, ranges.from_array(x)


def test_minmax_and_percentile_match_numpy(gaussian_with_outlier):
    x, st = gaussian_with_outlier
    assert ranges.minmax(st, symmetric=False) == (x.min(), x.max())
    assert ranges.minmax(st, symmetric=True) == (-50.0, 50.0)
    width = 2 * 50.0 / ranges.HIST_BINS
    lo, hi = ranges.percentile(st, symmetric=False)
    assert abs(hi - np.percentile(x, 99.99)) <= width and abs(lo - np.percentile(x, 0.01)) <= width
    _, a = ranges.percentile(st, symmetric=True)
    assert abs(a - np.percentile(np.abs(x), 99.99)) <= width


def test_entropy_clips_the_outlier_keeps_the_body(gaussian_with_outlier):
    _, st = gaussian_with_outlier
    _, a = ranges.entropy(st, symmetric=True)
    assert 2.5 < a < 8.0   # about 4 sigma


def _true_mse(x, lo, hi, steps):
    """Quantize the samples themselves onto the grid and measure: the reference for the estimator."""
    step = (hi - lo) / steps
    q = np.clip(np.round((x - lo) / step), 0, steps) * step + lo
    return float(np.mean((x - q) ** 2))


@pytest.mark.parametrize("symmetric", [True, False])
def test_mse_estimator_near_the_brute_force_optimum(gaussian_with_outlier, symmetric):
    x, st = gaussian_with_outlier
    lo, hi = ranges.mse(st, symmetric)
    steps = 254 if symmetric else 255
    chosen = _true_mse(x, lo, hi, steps)
    grid = np.linspace(1.0, 50.0, 400)
    brute = min(_true_mse(x, -a, a, steps) if symmetric else _true_mse(x, x.min(), a, steps) for a in grid)
    assert chosen <= 1.10 * brute, (lo, hi, chosen, brute)
    assert chosen < 0.9 * _true_mse(x, *ranges.minmax(st, symmetric), steps)   # better than min/max


def test_uniform_data_is_not_clipped():
    x = np.random.default_rng(1).uniform(-1, 1, 100_000)
    lo, hi = ranges.mse(ranges.from_array(x), symmetric=True)
    assert hi >= 0.95 and lo == -hi


def test_unknown_method_names_the_accepted_ones():
    assert ranges.method(None)[0] == ranges.DEFAULT_METHOD == "mse"
    with pytest.raises(UnknownName, match="entropy, minmax, mse, percentile"):
        ranges.method("kl")


def test_activation_qparams_by_hand():
    from mixer_edge.export.qdq import activation_qparams, weight_qparams

    scale, zp = activation_qparams(-0.17, 7.36, symmetric=False)
    assert scale == pytest.approx(7.53 / 255) and zp == round(-128 + 0.17 / (7.53 / 255))
    scale, zp = activation_qparams(-0.17, 7.36, symmetric=True)
    assert scale == pytest.approx(7.36 / 127) and zp == 0
    assert activation_qparams(0.5, 2.0, symmetric=False)[0] == pytest.approx(2.0 / 255)  # zero stays exact
    w = np.array([[1.0, -4.0], [0.5, 2.0]])                  # (K, N): MatMul, output axis 1
    np.testing.assert_allclose(weight_qparams(w, 1, 127), [1 / 127, 4 / 127])


# ---- smoothing and the outlier model ----------------------------------------------------------------

def test_outlier_model_is_function_preserving_with_real_outliers(ck, val):
    model, where = inject_outliers(ck.model, seed=3)
    assert np.abs(logits(model, val.x) - logits(ck.model, val.x)).max() <= EXACT
    assert len(where) == len(folds(model)) == ck.config.num_layers + 1
    assert all(30 <= f <= 100 for w in where for f in w["factors"])
    spread = {n: float(a.max() / np.median(a)) for n, a in channel_amax(model, val.x, [f.norm for f in folds(model)]).items()}
    plain = {n: float(a.max() / np.median(a)) for n, a in channel_amax(ck.model, val.x, list(spread)).items()}
    assert all(spread[n] > 5 * plain[n] for n in spread), (spread, plain)


@pytest.mark.parametrize("alpha", [0.0, 0.5, 1.0])
def test_smoothing_is_exact(ck, calib, val, alpha):
    for model in (ck.model, inject_outliers(ck.model)[0]):
        smoothed, details = smooth(model, calib.x, alpha)
        assert np.abs(logits(smoothed, val.x) - logits(model, val.x)).max() <= EXACT
        assert len(details["folds"]) == ck.config.num_layers + 1
    assert all(not torch.equal(p, q) for p, q in zip(ck.model.norm.parameters(), smoothed.norm.parameters())) or alpha == 0


def test_smoothing_undoes_the_outliers(ck, calib):
    """SmoothQuant's scale is invariant to a function-preserving rescaling of the same channels, so
    the smoothed outlier model is the smoothed plain model (what makes the outlier case solvable)."""
    a = dict(smooth(ck.model, calib.x, 0.5)[0].named_parameters())
    b = dict(smooth(inject_outliers(ck.model)[0], calib.x, 0.5)[0].named_parameters())
    for name in a:
        torch.testing.assert_close(a[name], b[name], rtol=1e-4, atol=1e-6)


def test_smoothing_leaves_the_caller_model_alone(ck, calib):
    before = {k: v.clone() for k, v in ck.model.state_dict().items()}
    smooth(ck.model, calib.x, 0.5)
    assert all(torch.equal(before[k], v) for k, v in ck.model.state_dict().items())


def test_recentring_is_exact(ck, calib, val):
    """TensorRT's one-sided inputs shifted to zero mean, the shift folded into the bias: without
    quantization the graph computes the same logits."""
    from mixer_edge.export import int8, qdq

    graph = int8.fp32_onnx(ck.model)
    acts, _ = qdq.quant_inputs(graph)
    stats = qdq.activation_stats(graph, calib.x, acts)
    act_ranges = {t: ranges.mse(stats[t], True) for t in acts}
    shifted_graph, _, shifted = qdq.recentre(graph, act_ranges, lambda t: ranges.mse(stats[t], False))
    assert len(shifted) >= 4   # GELU outputs are one-sided: every fc2 input qualifies on this model
    assert {"fc2" in name for name in shifted} >= {True}, shifted
    np.testing.assert_allclose(int8.run_graph(shifted_graph, val.x), int8.run_graph(graph, val.x), atol=EXACT)


def test_recentring_is_exact_where_the_exporter_shares_a_bias(ck, calib, val):
    """Equal biases (here every fc2 bias zero, as an MLP split's second half has) are one initializer
    in the exported graph, fed to the other Adds through Identity nodes: recentring one fc2 must not
    move the bias of the others (it did: TensorRT's flavor of a split model fell to 12 dB)."""
    import copy

    from mixer_edge.export import int8, qdq

    model = copy.deepcopy(ck.model)
    with torch.no_grad():
        for block in model.blocks:
            block.mlp_channels.fc2.bias.zero_()
    graph = int8.fp32_onnx(model)
    users = {}
    for n in graph.graph.node:
        for i in n.input:
            users[i] = users.get(i, 0) + 1
    assert any(users.get(i.name, 0) > 1 for i in graph.graph.initializer if "fc2.bias" in i.name)
    acts, _ = qdq.quant_inputs(graph)
    stats = qdq.activation_stats(graph, calib.x, acts)
    act_ranges = {t: ranges.mse(stats[t], True) for t in acts}
    shifted_graph, _, shifted = qdq.recentre(graph, act_ranges, lambda t: ranges.mse(stats[t], False))
    assert sum("mlp_channels/fc2" in name for name in shifted) >= 2, shifted
    np.testing.assert_allclose(int8.run_graph(shifted_graph, val.x), int8.run_graph(graph, val.x), atol=EXACT)


def test_layer_names_match_module_paths(ck):
    from mixer_edge.export import int8, qdq

    names = qdq.layers(int8.fp32_onnx(ck.model))
    assert names == list(layer_macs(ck.model))
    assert names[0] == "stem.proj" and names[-1] == "head" and "blocks.3.mlp_channels.fc2" in names


def test_layer_macs_by_hand(ck):
    cfg = ck.config   # T/2 on 8x8: 16 tokens, C 128, D_S 64, D_C 512
    macs = layer_macs(ck.model)
    assert macs["blocks.0.mlp_tokens.fc1"] == cfg.num_tokens * cfg.tokens_mlp_dim * cfg.hidden_dim
    assert macs["blocks.0.mlp_channels.fc2"] == cfg.channels_mlp_dim * cfg.hidden_dim * cfg.num_tokens
    assert macs["head"] == cfg.hidden_dim * cfg.num_classes
    assert macs["stem.proj"] == cfg.hidden_dim * cfg.in_chans * cfg.patch_size ** 2 * cfg.num_tokens


def test_recentring_uses_the_weight_grid_and_keeps_zero_exact(ck, calib):
    """With weight_qmax, each recentred bias is b + c * colsum(W on its per-channel int8 grid), the
    weights the engine multiplies (by hand here), and c is a whole number of the shifted tensor's
    grid steps, so x = 0 stays exactly representable."""
    from onnx import numpy_helper

    from mixer_edge.export import int8, qdq

    graph = int8.fp32_onnx(ck.model)
    acts, _ = qdq.quant_inputs(graph)
    stats = qdq.activation_stats(graph, calib.x, acts)
    act_ranges = {t: ranges.mse(stats[t], True) for t in acts}
    shifted_graph, new_ranges, shifted = qdq.recentre(graph, act_ranges, lambda t: ranges.mse(stats[t], False), 127)
    assert shifted
    before = {i.name: numpy_helper.to_array(i).astype(np.float64) for i in graph.graph.initializer}
    after = {i.name: numpy_helper.to_array(i).astype(np.float64) for i in shifted_graph.graph.initializer}
    for node in shifted_graph.graph.node:
        if node.name not in shifted:
            continue
        c = shifted[node.name]
        lo, hi = new_ranges[node.input[0]]
        step = hi / 127
        assert abs(c / step - round(c / step)) < 1e-6, (node.name, c, step)
        W = before[node.input[1]]                                          # (K, N)
        # (N,) per output channel, stored as float32 in the graph as every Q/DQ scale is
        scale = (np.maximum(np.abs(W).max(axis=0), 1e-8) / 127).astype(np.float32).astype(np.float64)
        Wq = np.clip(np.round(W / scale), -127, 127) * scale
        add = next(n for n in shifted_graph.graph.node if node.output[0] in n.input and n.op_type == "Add")
        b_name = next(i for i in add.input if i in after)
        np.testing.assert_allclose(after[b_name], before[b_name] + np.float32(c) * Wq.sum(axis=0), rtol=1e-5,
                                   atol=1e-5, err_msg=node.name)


# ---- calibration data is the user's (issue 20) -----------------------------------------------------

@pytest.fixture(scope="module")
def own_photos(tmp_path_factory):
    """300 images that share none with the digits the model was trained on: the digits' first 300,
    inverted (other pixels, other content keys)."""
    from PIL import Image

    from mixer_edge import load_data

    folder = tmp_path_factory.mktemp("own")
    for i, im in enumerate(load_data("digits").images[:300]):
        Image.fromarray(255 - im[..., 0]).save(folder / f"{i:03d}.png")
    return f"folder:{folder}"


def test_a_calibration_source_apart_from_the_training_data_is_used_whole(ck, own_photos):
    """With --eval-data naming the validation images, a 300-image calibration folder that shares no
    image with the training data gives all 300 (it used to keep a tenth back: 270); the images used
    are reserved in the manifest all the same."""
    from mixer_edge.calibration.sets import CalibrationError
    from mixer_edge.data.sources import load_data
    from mixer_edge.export.manifest import reserved_images
    from mixer_edge.export.plan import ExportPlan, prepare_calibration
    from mixer_edge.runtime.identity import unpack_keys

    plan = ExportPlan(targets=("onnx",), precisions=("int8",), out_dir="x", calib_data=own_photos, calib_size=300,
                      eval_data="digits")
    calib = prepare_calibration(ck, plan, load_data)
    assert len(calib) == 300 and "all 300" in calib.source
    reserved = unpack_keys(reserved_images(ck, calib)["reserved"], "test")
    assert np.isin(load_data(own_photos).keys, reserved).all()
    # Without --eval-data validation takes the folder's eval split: that tenth stays apart.
    with pytest.raises(CalibrationError, match="has only 270"):
        prepare_calibration(ck, ExportPlan(targets=("onnx",), precisions=("int8",), out_dir="x",
                                           calib_data=own_photos, calib_size=300), load_data)
    # The training data itself, --eval-data or not: only its calib split (its eval split is the model's held-out set).
    with pytest.raises(CalibrationError, match="has only 180"):
        prepare_calibration(ck, ExportPlan(targets=("onnx",), precisions=("int8",), out_dir="x",
                                           calib_data="digits", calib_size=300, eval_data=own_photos), load_data)
