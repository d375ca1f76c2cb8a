"""The network, the variant table, and loading weights from timm, Google's .npz files and our checkpoints.

Parameter counts come from the paper's Table 1; logits are compared with timm's MlpMixer on the
same random weights (FP32, max |diff| <= 1e-5). Small variants run at their default size; the big
ones are counted on the meta device so the suite stays fast.
"""
from __future__ import annotations

import pickle
from contextlib import nullcontext

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from mixer_edge import Preprocess, create_model, list_models, load_checkpoint, load_pretrained, save_checkpoint
from mixer_edge.errors import BadInput, UnknownName
from mixer_edge.models.checkpoint import sha256_file
from mixer_edge.models.mixer import MixerConfig, MlpMixer, count_params
from mixer_edge.models.variants import VARIANTS
from mixer_edge.models.weights import FORMATS

TOL = 1e-5  # FP32 logits, same weights, same operations

# Paper, Table 1 (1000-class head): exact where the count is published exactly, else within 0.5 %.
PAPER_PARAMS = {
    "S/32": pytest.approx(19.10e6, rel=5e-3), "S/16": pytest.approx(18.53e6, rel=5e-3),
    "B/32": 60_293_428, "B/16": 59_880_472,
    "L/32": pytest.approx(206.94e6, rel=5e-3), "L/16": 208_196_168,
    "H/14": pytest.approx(432e6, rel=5e-3),
}
SMALL = [n for n in list_models() if n not in PAPER_PARAMS]  # ours: forward passes at default size


def formula_params(cfg: MixerConfig) -> int:
    """Parameters counted from the architecture, independently of the module tree."""
    c, n, p = cfg.hidden_dim, cfg.num_tokens, cfg.patch_size
    stem = c * cfg.in_chans * p * p + c
    block = 2 * 2 * c + (2 * n * cfg.tokens_mlp_dim + cfg.tokens_mlp_dim + n) \
        + (2 * c * cfg.channels_mlp_dim + cfg.channels_mlp_dim + c)
    return stem + cfg.num_layers * block + 2 * c + c * cfg.num_classes + cfg.num_classes


def reference_logits(sd: dict, cfg: MixerConfig, x: torch.Tensor) -> torch.Tensor:
    """The paper's equations written out with torch.nn.functional."""
    def ln(t, name):
        return F.layer_norm(t, (cfg.hidden_dim,), sd[f"{name}.weight"], sd[f"{name}.bias"], eps=1e-6)

    def mlp(t, name):
        h = F.gelu(F.linear(t, sd[f"{name}.fc1.weight"], sd[f"{name}.fc1.bias"]))
        return F.linear(h, sd[f"{name}.fc2.weight"], sd[f"{name}.fc2.bias"])

    x = F.conv2d(x, sd["stem.proj.weight"], sd["stem.proj.bias"], stride=cfg.patch_size)
    x = x.flatten(2).transpose(1, 2)                                             # (B, N, C)
    for i in range(cfg.num_layers):
        x = x + mlp(ln(x, f"blocks.{i}.norm1").transpose(1, 2), f"blocks.{i}.mlp_tokens").transpose(1, 2)
        x = x + mlp(ln(x, f"blocks.{i}.norm2"), f"blocks.{i}.mlp_channels")
    return F.linear(ln(x, "norm").mean(dim=1), sd["head.weight"], sd["head.bias"])


def perturb_(model: nn.Module, seed: int = 0) -> nn.Module:
    """Random values where init leaves structure a swap could hide behind: the zero head, LayerNorm's
    ones and zeros, the ~1e-6 biases. The big weight matrices are random already."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in model.parameters():
            if not p.any() or p.ndim == 1:  # the head gets logits of a few units
                p.add_(torch.randn(p.shape, generator=g) * (0.1 if not p.any() else 0.02))
    return model.eval()


def random_mixer(name: str = "Ti/4", seed: int = 0, **kw) -> MlpMixer:
    torch.manual_seed(seed)
    return perturb_(create_model(name, **kw), seed)


def images(cfg: MixerConfig, n: int = 2, seed: int = 1) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.randn(n, cfg.in_chans, *cfg.img_size, generator=g)


def logits(model: nn.Module, x: torch.Tensor) -> torch.Tensor:
    with torch.no_grad():
        return model.eval()(x)


def max_diff(a: torch.Tensor, b: torch.Tensor) -> float:
    return (a - b).abs().max().item()


def half_file(src, dst):
    data = src.read_bytes()
    dst.write_bytes(data[: len(data) // 2])
    return dst


# ---------------------------------------------------------------------------------------------
# Writers for each weights format, written independently of mixer_edge.models.weights.

def timm_to_flax(sd: dict) -> dict[str, np.ndarray]:
    """A timm/our state dict in the official google-research/vision_transformer .npz layout."""
    out = {"stem/kernel": sd["stem.proj.weight"].permute(2, 3, 1, 0),  # OIHW (C, Cin, P, P) -> HWIO
           "stem/bias": sd["stem.proj.bias"],
           "pre_head_layer_norm/scale": sd["norm.weight"], "pre_head_layer_norm/bias": sd["norm.bias"],
           "head/kernel": sd["head.weight"].T, "head/bias": sd["head.bias"]}             # (in, out)
    layers = 1 + max(int(k.split(".")[1]) for k in sd if k.startswith("blocks."))
    for i in range(layers):
        b, f = f"blocks.{i}.", f"MixerBlock_{i}/"
        for flax_ln, ln in (("LayerNorm_0", "norm1"), ("LayerNorm_1", "norm2")):
            out[f"{f}{flax_ln}/scale"], out[f"{f}{flax_ln}/bias"] = sd[f"{b}{ln}.weight"], sd[f"{b}{ln}.bias"]
        for flax_mlp, mlp in (("token_mixing", "mlp_tokens"), ("channel_mixing", "mlp_channels")):
            for j in (0, 1):
                out[f"{f}{flax_mlp}/Dense_{j}/kernel"] = sd[f"{b}{mlp}.fc{j + 1}.weight"].T  # (in, out)
                out[f"{f}{flax_mlp}/Dense_{j}/bias"] = sd[f"{b}{mlp}.fc{j + 1}.bias"]
    return {k: v.detach().contiguous().numpy().copy() for k, v in out.items()}


def write_npz(sd, path, prefix=""):
    np.savez(path, **{prefix + k: v for k, v in timm_to_flax(sd).items()})
    return path


def write_pth(sd, path):
    torch.save(sd, path)
    return path


def write_safetensors(sd, path):
    from safetensors.torch import save_file

    save_file({k: v.contiguous() for k, v in sd.items()}, str(path))
    return path


def write_ours(model, folder):
    save_checkpoint(folder, model, Preprocess.default(model.config.img_size, model.config.in_chans),
                    [f"c{i}" for i in range(model.config.num_classes)], meta={"note": "test"})
    return folder


WRITERS = {  # format -> (writer of a model, file name)
    "google-npz": (lambda m, p: write_npz(m.state_dict(), p), "w.npz"),
    "timm": (lambda m, p: write_pth(m.state_dict(), p), "w.pth"),
    "mixer-edge": (write_ours, "run"),
}


# ---------------------------------------------------------------------------------------------
# The variant table.

def test_every_variant_has_an_expected_count_or_a_forward_test():
    assert set(PAPER_PARAMS) | set(SMALL) == set(VARIANTS)
    assert not set(PAPER_PARAMS) - set(VARIANTS)


@pytest.mark.parametrize("name", list_models())
def test_param_count(name):
    with torch.device("meta"):  # shapes only: L/16 and H/14 cost nothing
        model = create_model(name)
    n = count_params(model)
    assert n == formula_params(model.config)
    if name in PAPER_PARAMS:
        assert n == PAPER_PARAMS[name]


@pytest.mark.parametrize("name", SMALL)
def test_small_variant_forward_matches_the_equations(name):
    model = random_mixer(name, num_classes=10)
    x = images(model.config)
    out = logits(model, x)
    assert out.shape == (2, 10)
    assert out.abs().max() > 1e-2  # not a trivially zero head
    assert max_diff(out, reference_logits(model.state_dict(), model.config, x)) <= TOL


def test_unknown_variant_and_bad_image_size():
    with pytest.raises(UnknownName, match=r"unknown model variant 'Z/9'.*B/16"):
        create_model("Z/9")
    with pytest.raises(BadInput, match="not divisible by the patch size 4"):
        create_model("T/4", img_size=30)


# ---------------------------------------------------------------------------------------------
# Parity with timm at the paper's sizes.

@pytest.fixture(scope="module", params=["mixer_s16_224", "mixer_b16_224"])
def timm_case(request, tmp_path_factory):
    timm = pytest.importorskip("timm")
    torch.manual_seed(0)
    ref = perturb_(timm.create_model(request.param, pretrained=False))
    sd = ref.state_dict()
    x = torch.randn(2, 3, 224, 224, generator=torch.Generator().manual_seed(1))
    exact = logits(ref, x)
    for block in ref.blocks:  # Flax's GELU, as the official .npz weights were trained with
        block.mlp_tokens.act = nn.GELU(approximate="tanh")
        block.mlp_channels.act = nn.GELU(approximate="tanh")
    tanh = logits(ref, x)
    d = tmp_path_factory.mktemp(request.param)
    files = {"pth": write_pth(sd, d / "w.pth"), "safetensors": write_safetensors(sd, d / "w.safetensors"),
             "npz": write_npz(sd, d / "w.npz")}
    return {"name": request.param, "x": x, "exact": exact, "tanh": tanh, "files": files}


@pytest.mark.parametrize("kind,fmt,gelu", [("pth", "timm", "exact"), ("safetensors", "timm", "exact"),
                                           ("npz", "google-npz", "tanh")])
def test_parity_with_timm(timm_case, kind, fmt, gelu):
    ck = load_pretrained(timm_case["files"][kind])
    assert ck.config.gelu == gelu
    assert ck.config.variant == {"mixer_s16_224": "S/16", "mixer_b16_224": "B/16"}[timm_case["name"]]
    assert ck.meta["source"]["format"] == fmt
    ref = timm_case[gelu]
    diff = max_diff(logits(ck.model, timm_case["x"]), ref)
    print(f"\n{timm_case['name']} {kind}: max |diff| {diff:.3g} (logits up to {ref.abs().max():.3g}, "
          f"exact vs tanh GELU {max_diff(timm_case['exact'], timm_case['tanh']):.3g})")
    assert ref.abs().max() > 0.1
    assert diff <= TOL
    assert max_diff(timm_case["exact"], timm_case["tanh"]) > 10 * TOL  # the GELU kind is visible


# ---------------------------------------------------------------------------------------------
# Formats and overrides, on the smallest variant.

@pytest.fixture
def tiny():
    return random_mixer("Ti/4")


def test_every_format_is_tested():
    assert set(WRITERS) == set(FORMATS)


@pytest.mark.parametrize("fmt", list(FORMATS))
def test_each_format_loads_the_same_weights(fmt, tiny, tmp_path):
    write, name = WRITERS[fmt]
    path = write(tiny, tmp_path / name)
    ck = load_pretrained(path)
    assert ck.meta["source"]["format"] == fmt
    assert ck.sha256 == sha256_file(ck.path) == ck.meta["source"]["sha256"]
    assert ck.config.with_(gelu="exact") == tiny.config
    assert ck.preprocess.size == (28, 28) and ck.preprocess.mean == (0.5,) * 3
    for k, v in tiny.state_dict().items():
        assert torch.equal(ck.model.state_dict()[k], v), k
    assert all(p.requires_grad and p.device.type == "cpu" for p in ck.model.parameters())


def test_npz_gelu_default_and_override(tiny, tmp_path):
    path = write_npz(tiny.state_dict(), tmp_path / "w.npz")
    assert load_pretrained(path).config.gelu == "tanh"
    ck = load_pretrained(path, gelu="exact")
    assert ck.config.gelu == "exact"
    x = images(tiny.config)
    assert max_diff(logits(ck.model, x), logits(tiny, x)) <= TOL
    with pytest.raises(UnknownName, match="GELU kind"):
        load_pretrained(path, gelu="fast")


def test_npz_with_a_leading_prefix(tiny, tmp_path):
    path = write_npz(tiny.state_dict(), tmp_path / "w.npz", prefix="opt/target/")
    ck = load_pretrained(path)
    assert torch.equal(ck.model.head.weight, tiny.head.weight)


def test_wrapped_and_ddp_state_dicts(tiny, tmp_path):
    sd = {f"module.{k}": v for k, v in tiny.state_dict().items()}
    path = write_pth({"model": {"state_dict": sd}, "epoch": 3}, tmp_path / "w.bin")
    ck = load_pretrained(path)
    x = images(tiny.config)
    assert torch.equal(logits(ck.model, x), logits(tiny, x))


def test_safetensors_without_our_metadata_is_timm(tiny, tmp_path):
    ck = load_pretrained(write_safetensors(tiny.state_dict(), tmp_path / "w.safetensors"))
    assert ck.meta["source"]["format"] == "timm" and ck.config.gelu == "exact"


def test_head_replacement(tiny, tmp_path):
    ck = load_pretrained(write_pth(tiny.state_dict(), tmp_path / "w.pth"), num_classes=10)
    assert ck.model.head.weight.shape == (10, 64) and ck.model.head.bias.shape == (10,)
    assert not ck.model.head.weight.any() and not ck.model.head.bias.any()
    assert ck.config.num_classes == 10 and ck.classes == tuple(str(i) for i in range(10))
    assert ck.meta["head_replaced"] == {"from": 1000, "to": 10}
    for k, v in tiny.state_dict().items():
        if not k.startswith("head."):
            assert torch.equal(ck.model.state_dict()[k], v), k
    same = load_pretrained(tmp_path / "w.pth", num_classes=1000)
    assert "head_replaced" not in same.meta and torch.equal(same.model.head.weight, tiny.head.weight)


def test_in_chans_adaptation(tiny, tmp_path):
    gray = images(tiny.config.with_(in_chans=1))                     # (B, 1, H, W)
    ck = load_pretrained(write_pth(tiny.state_dict(), tmp_path / "rgb.pth"), in_chans=1)
    assert ck.model.stem.proj.weight.shape == (64, 1, 4, 4) and ck.preprocess.channels == 1
    assert ck.meta["in_chans_adapted"] == {"from": 3, "to": 1}
    assert max_diff(logits(ck.model, gray), logits(tiny, gray.repeat(1, 3, 1, 1))) <= TOL
    back = load_pretrained(write_pth(ck.model.state_dict(), tmp_path / "gray.pth"), in_chans=3)
    assert max_diff(logits(back.model, gray.repeat(1, 3, 1, 1)), logits(ck.model, gray)) <= TOL
    with pytest.raises(BadInput, match="cannot adapt the 3-channel stem .* in_chans=2"):
        load_pretrained(tmp_path / "rgb.pth", in_chans=2)


def test_img_size_must_fit_the_token_count(tiny, tmp_path):
    path = write_pth(tiny.state_dict(), tmp_path / "w.pth")
    assert load_pretrained(path, img_size=28).config.img_size == (28, 28)
    need = r"img_size 32x32 does not fit the token-mixing weights .*49 tokens of 4x4 patches, trained at 28x28.; possible sizes: 28x28, 56x56"
    with pytest.raises(BadInput, match=need):
        load_pretrained(path, img_size=32)
    with pytest.raises(BadInput, match="not divisible by the patch size 4"):
        load_pretrained(path, img_size=30)


def test_non_square_token_grid_needs_img_size(tmp_path):
    cfg = MixerConfig(variant="custom", num_layers=1, patch_size=4, hidden_dim=16, tokens_mlp_dim=8,
                      channels_mlp_dim=32, img_size=(8, 16), num_classes=3)
    torch.manual_seed(0)
    model = perturb_(MlpMixer(cfg))
    path = write_pth(model.state_dict(), tmp_path / "w.pth")
    with pytest.raises(BadInput, match="8 tokens, not a square grid.*pass img_size"):
        load_pretrained(path)
    ck = load_pretrained(path, img_size=(8, 16))
    assert ck.config == cfg
    assert max_diff(logits(ck.model, images(cfg)), logits(model, images(cfg))) <= TOL


def test_round_trip_of_our_checkpoint(tmp_path):
    model = random_mixer("T/4", num_classes=10, in_chans=1)
    folder = write_ours(model, tmp_path / "run")
    x = images(model.config)
    ours, direct = load_pretrained(folder), load_checkpoint(folder)
    assert torch.equal(logits(ours.model, x), logits(direct.model, x))
    assert torch.equal(logits(ours.model, x), logits(model, x))
    assert ours.classes == direct.classes == tuple(f"c{i}" for i in range(10))
    assert ours.preprocess == direct.preprocess and ours.sha256 == direct.sha256
    assert ours.meta["note"] == "test" and ours.meta["source"]["format"] == "mixer-edge"
    by_file = load_pretrained(folder / "model.safetensors")
    assert torch.equal(logits(by_file.model, x), logits(model, x))
    origin = {"format": "google-npz", "path": "Mixer-B_16.npz", "sha256": "0" * 64}
    save_checkpoint(tmp_path / "tuned", model, ours.preprocess, ours.classes, meta={"source": origin})
    assert load_pretrained(tmp_path / "tuned").meta["source"] == origin  # provenance survives


def test_overrides_on_our_checkpoint(tmp_path):
    folder = write_ours(random_mixer("T/4", num_classes=10, in_chans=1), tmp_path / "run")
    ck = load_pretrained(folder, num_classes=4, in_chans=3)
    assert ck.classes == ("0", "1", "2", "3") and not ck.model.head.weight.any()
    assert ck.preprocess.channels == 3 and ck.config.in_chans == 3
    assert ck.meta["head_replaced"] == {"from": 10, "to": 4}


# ---------------------------------------------------------------------------------------------
# Files that must be refused, with a clear message.

def test_missing_file_and_unknown_extension(tmp_path):
    with pytest.raises(BadInput, match="weights not found.*accepted: .npz"):
        load_pretrained(tmp_path / "nope.npz")
    (tmp_path / "m.onnx").write_bytes(b"\0" * 16)
    with pytest.raises(BadInput, match=r"unknown weights file extension '.onnx'; accepted: .*\.safetensors"):
        load_pretrained(tmp_path / "m.onnx")
    (tmp_path / "empty").mkdir()
    with pytest.raises(BadInput, match="folder without model.safetensors"):
        load_pretrained(tmp_path / "empty")


@pytest.mark.parametrize("fmt", ["npz", "pth", "safetensors", "ours"])
def test_truncated_files(fmt, tiny, tmp_path):
    sd = tiny.state_dict()
    full = {"npz": lambda: write_npz(sd, tmp_path / "w.npz"),
            "pth": lambda: write_pth(sd, tmp_path / "w.pth"),
            "safetensors": lambda: write_safetensors(sd, tmp_path / "w.safetensors"),
            "ours": lambda: write_ours(tiny, tmp_path / "run") / "model.safetensors"}[fmt]()
    cut = half_file(full, tmp_path / f"cut{full.suffix}")
    with pytest.raises(BadInput, match="cannot read|not a readable safetensors file"):
        load_pretrained(cut)


def test_foreign_files(tmp_path):
    resnet = {"conv1.weight": torch.randn(64, 3, 7, 7), "fc.weight": torch.randn(1000, 2048)}
    for path in (write_pth(resnet, tmp_path / "r.pth"), write_safetensors(resnet, tmp_path / "r.safetensors")):
        with pytest.raises(BadInput, match=r"not an MLP-Mixer checkpoint: missing keys \['stem.proj.weight'"):
            load_pretrained(path)
    np.savez(tmp_path / "vit.npz", **{"embedding/kernel": np.zeros((16, 16, 3, 8), np.float32)})
    with pytest.raises(BadInput, match=r"not an MLP-Mixer checkpoint: missing keys \['stem/kernel'"):
        load_pretrained(tmp_path / "vit.npz")
    np.save(tmp_path / "one.npy", np.zeros(3))
    (tmp_path / "one.npy").rename(tmp_path / "one.npz")
    with pytest.raises(BadInput, match="cannot read .* not named arrays"):
        load_pretrained(tmp_path / "one.npz")


def test_shape_and_key_mismatches(tiny, tmp_path):
    sd = dict(tiny.state_dict())
    sd["blocks.1.mlp_channels.fc1.weight"] = torch.zeros(100, 64)
    with pytest.raises(BadInput, match=r"mlp_channels.fc1.weight has shape \(100, 64\), expected \(256, 64\)"):
        load_pretrained(write_pth(sd, tmp_path / "a.pth"))
    sd = {k: v for k, v in tiny.state_dict().items() if k != "blocks.1.norm2.bias"}
    with pytest.raises(BadInput, match=r"missing \['blocks.1.norm2.bias'\]"):
        load_pretrained(write_pth(sd, tmp_path / "b.pth"))
    flax = timm_to_flax(tiny.state_dict())
    np.savez(tmp_path / "c.npz", **flax, **{"MixerBlock_0/extra/kernel": np.zeros(2, np.float32)})
    with pytest.raises(BadInput, match=r"not part of an MLP-Mixer: \['MixerBlock_0/extra/kernel'\]"):
        load_pretrained(tmp_path / "c.npz")


class _Payload:
    """Unpickling this creates a file: proof that code ran."""

    def __init__(self, sentinel):
        self.sentinel = str(sentinel)

    def __reduce__(self):
        return (open, (self.sentinel, "w"))


def test_payload_really_runs_when_unpickled(tmp_path):
    pickle.loads(pickle.dumps(_Payload(tmp_path / "ran"))).close()  # the unsafe path, on purpose
    assert (tmp_path / "ran").exists()


@pytest.mark.parametrize("how,reason", [("torch.save", "GLOBAL io.open"), ("pickle-2", "GLOBAL io.open"),
                                        ("pickle-4", "Unsupported operand")])
def test_malicious_pickle_is_refused_without_running(how, reason, tiny, tmp_path):
    sentinel = tmp_path / "pwned"
    obj = {"extra": _Payload(sentinel), **tiny.state_dict()}
    path = tmp_path / "evil.pth"
    if how == "torch.save":
        torch.save(obj, path)
    else:  # a raw pickle (torch's legacy format); tensors left out so the payload is what is met first
        with open(path, "wb") as f:
            pickle.dump({"extra": obj["extra"]}, f, protocol=int(how[-1]))
    with pytest.warns() if how == "pickle-4" else nullcontext():  # torch warns about protocol 4
        with pytest.raises(BadInput, match=f"refusing to unpickle .*{reason}"):
            load_pretrained(path)
    assert not sentinel.exists()


def test_resolution_expansion_mixes_each_group_as_before(tmp_path):
    """28 -> 56 px (K = 2, 49 -> 196 tokens): each block's token-mixing MLP of the expanded model
    equals the original applied to each of the 4 groups of patches independently (1e-6), the rest of
    the weights are the original ones, and a size that is no integer multiple is refused with the
    possible ones."""
    from mixer_edge.data.preprocess import Preprocess
    from mixer_edge.errors import BadInput
    from mixer_edge.models.checkpoint import save_checkpoint
    from mixer_edge.models.resolution import group_order
    from mixer_edge.models.variants import create_model
    from mixer_edge.models.weights import load_pretrained

    torch.manual_seed(0)
    small = create_model("T/4", num_classes=10, in_chans=1)
    for p in small.parameters():
        torch.nn.init.normal_(p, std=0.2)
    save_checkpoint(tmp_path, small, Preprocess.default(28, 1), tuple("0123456789"))
    big = load_pretrained(tmp_path, img_size=56)
    assert big.config.img_size == (56, 56) and big.config.num_tokens == 196
    assert big.meta["resolution_expanded"]["k"] == 2
    order = group_order((7, 7), 2)                     # (4, 49): new token index of (group, local)
    # by hand: group (a, b) = (1, 0), local (i, j) = (2, 3) -> new row 2*2+1 = 5, column 3*2+0 = 6
    assert int(order[2, 2 * 7 + 3]) == 5 * 14 + 6
    # float64: the expanded fc1 sums over 196 inputs (147 of them times zero), the original over 49;
    # in float32 that reorders the rounding by ~1e-6 of outputs of size ~1, in float64 by ~1e-15.
    small, expanded = small.double(), big.model.double()
    y = torch.randn(3, 128, 196, dtype=torch.float64)  # (B, C, tokens): the token MLP's input
    with torch.no_grad():
        for old_block, new_block in zip(small.blocks, expanded.blocks):
            out = new_block.mlp_tokens(y)              # (B, C, 196)
            for g in range(4):
                want = old_block.mlp_tokens(y[..., order[g]])
                assert torch.allclose(out[..., order[g]], want, atol=1e-6, rtol=0), g
            assert torch.equal(new_block.mlp_channels.fc1.weight, old_block.mlp_channels.fc1.weight)
    assert torch.equal(expanded.stem.proj.weight, small.stem.proj.weight)
    with pytest.raises(BadInput, match=r"img_size 60x60 does not fit .* possible sizes: 28x28, 56x56, 84x84"):
        load_pretrained(tmp_path, img_size=60)
