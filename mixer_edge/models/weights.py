"""Weights we did not train here: official Google .npz files, timm state dicts, and our own checkpoints.

Each format has a reader that turns a file into timm-named tensors (our MlpMixer uses timm's names).
The config is then inferred from the tensor shapes, the user's overrides are applied (a new head, a
gray or RGB stem), and the model is built on the meta device and handed the tensors, so nothing is
randomly initialised only to be overwritten.

    load_pretrained("Mixer-B_16.npz")                  # official, tanh GELU as trained
    load_pretrained("mixer_b16.pth", num_classes=10)   # timm, zero head for fine-tuning
    load_pretrained("runs/mnist", in_chans=3)          # our checkpoint folder
"""
from __future__ import annotations

import math
import pickle
import re
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Callable

import numpy as np
import torch

from ..data.preprocess import Preprocess
from ..errors import BadInput, unknown
from ..runtime.artifact import sha256_file
from .checkpoint import WEIGHTS_NAME, Checkpoint, load_checkpoint, read_metadata
from .mixer import MixerConfig, MlpMixer
from .variants import match_variant

# The keys any MLP-Mixer state dict has; their absence means the file is some other network.
TIMM_REQUIRED = ("stem.proj.weight", "blocks.0.mlp_tokens.fc1.weight",
                 "blocks.0.mlp_channels.fc1.weight", "head.weight")
FLAX_REQUIRED = ("stem/kernel", "MixerBlock_0/token_mixing/Dense_0/kernel",
                 "MixerBlock_0/channel_mixing/Dense_0/kernel", "head/kernel")


@dataclass(frozen=True)
class Source:
    """What a reader found: timm-named tensors, plus what the file says about itself (ours only)."""
    state: dict[str, torch.Tensor]
    file: Path
    sha256: str
    config: MixerConfig | None = None      # None: infer from the tensor shapes
    preprocess: Preprocess | None = None   # None: Preprocess.default (mean = std = 0.5)
    classes: tuple[str, ...] | None = None
    meta: dict = field(default_factory=dict)


@dataclass(frozen=True)
class Format:
    read: Callable[[Path], Source]
    gelu: str  # the GELU the weights were trained with, when the file does not say


# ---------------------------------------------------------------------------------------------
# Official Google .npz (google-research/vision_transformer): flat '/'-joined Flax names.

_FLAX_TOP = {
    "stem/kernel": "stem.proj.weight", "stem/bias": "stem.proj.bias",
    "pre_head_layer_norm/scale": "norm.weight", "pre_head_layer_norm/bias": "norm.bias",
    "head/kernel": "head.weight", "head/bias": "head.bias",
}
_FLAX_BLOCK = {  # inside MixerBlock_{i}/
    "LayerNorm_0/scale": "norm1.weight", "LayerNorm_0/bias": "norm1.bias",
    "token_mixing/Dense_0/kernel": "mlp_tokens.fc1.weight", "token_mixing/Dense_0/bias": "mlp_tokens.fc1.bias",
    "token_mixing/Dense_1/kernel": "mlp_tokens.fc2.weight", "token_mixing/Dense_1/bias": "mlp_tokens.fc2.bias",
    "LayerNorm_1/scale": "norm2.weight", "LayerNorm_1/bias": "norm2.bias",
    "channel_mixing/Dense_0/kernel": "mlp_channels.fc1.weight",
    "channel_mixing/Dense_0/bias": "mlp_channels.fc1.bias",
    "channel_mixing/Dense_1/kernel": "mlp_channels.fc2.weight",
    "channel_mixing/Dense_1/bias": "mlp_channels.fc2.bias",
}
_KERNEL_AXES = {  # Flax kernel layout -> torch, by number of dims
    4: (3, 2, 0, 1),  # conv (P, P, Cin, C) HWIO -> (C, Cin, P, P) OIHW
    2: (1, 0),        # dense (in, out) -> torch Linear (out, in)
}


def _flax_name_to_timm(name: str) -> str | None:
    m = re.fullmatch(r"MixerBlock_(\d+)/(.+)", name)
    if m is None:
        return _FLAX_TOP.get(name)
    leaf = _FLAX_BLOCK.get(m.group(2))
    return None if leaf is None else f"blocks.{m.group(1)}.{leaf}"


def _flax_to_torch(name: str, a: np.ndarray) -> torch.Tensor:
    t = torch.from_numpy(a.astype(np.float32, copy=False))
    if name.endswith("/kernel") and t.ndim in _KERNEL_AXES:
        t = t.permute(_KERNEL_AXES[t.ndim])  # a view; _build makes it contiguous (faster in torch than numpy)
    return t


def _load_npz(path: Path) -> dict[str, np.ndarray]:
    try:
        z = np.load(path, allow_pickle=False)
        if not hasattr(z, "files"):  # a bare .npy array, not an archive of named arrays
            raise ValueError(f"it holds one array of shape {z.shape}, not named arrays")
        with z:
            return {k: z[k] for k in z.files}  # read everything now: a truncated member fails here
    except Exception as e:  # zipfile / zlib / numpy raise many types for broken files
        raise BadInput(f"cannot read {path} as an .npz archive ({type(e).__name__}: {e})") from None


def _strip_flax_prefix(arrays: dict) -> dict:
    """Drop a leading component such as 'params/' or 'opt/target/', found from where stem/kernel is."""
    stems = [k for k in arrays if k == "stem/kernel" or k.endswith("/stem/kernel")]
    if not stems:
        return arrays
    prefix = min(stems, key=len)[: -len("stem/kernel")]
    return {k[len(prefix):]: v for k, v in arrays.items() if k.startswith(prefix)}


def _read_npz(path: Path) -> Source:
    arrays = _strip_flax_prefix(_load_npz(path))
    _require(arrays, FLAX_REQUIRED, path)
    names = {k: _flax_name_to_timm(k) for k in arrays}
    stray = sorted(k for k, v in names.items() if v is None)
    if stray:
        raise BadInput(f"{path} has keys that are not part of an MLP-Mixer: {stray[:3]} "
                       f"({len(stray)} in all); accepted: stem/, MixerBlock_i/, pre_head_layer_norm/, head/")
    state = {names[k]: _flax_to_torch(k, a) for k, a in arrays.items()}
    return Source(state=state, file=path, sha256=sha256_file(path))


# ---------------------------------------------------------------------------------------------
# timm state dicts: .pth / .pt / .bin (pickled tensors only) or .safetensors without our metadata.

_WRAPPERS = ("state_dict", "model")  # training scripts save {"model": sd, "epoch": ...}


def _torch_load(path: Path):
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as e:
        raise BadInput(f"refusing to unpickle {path}: it holds Python objects beyond tensors "
                       f"({_unpickler_reason(e)}) and loading them could run code; "
                       f"save a plain state_dict or a .safetensors file") from None
    except Exception as e:
        raise BadInput(f"cannot read {path} as a PyTorch file ({type(e).__name__}: {_first_line(e)})") from None


def _unpickler_reason(e: Exception) -> str:
    """torch's weights_only message is a page long; keep the sentence that names the object."""
    text = " ".join(str(e).split())
    if "WeightsUnpickler error:" not in text:
        return _first_line(e)
    reason = text.split("WeightsUnpickler error:", 1)[1]
    return re.split(r" was not an allowed| Check the documentation|\. Please", reason)[0].strip(" .")


def _first_line(e: Exception) -> str:
    return (str(e).strip().splitlines() or [""])[0][:200]


def _load_safetensors(path: Path) -> dict:
    from safetensors.torch import load_file

    try:
        return load_file(str(path))
    except Exception as e:
        raise BadInput(f"cannot read {path} as a safetensors file "
                       f"({type(e).__name__}: {_first_line(e)})") from None


_TIMM_LOADERS = {".pth": _torch_load, ".pt": _torch_load, ".bin": _torch_load,
                 ".safetensors": _load_safetensors}


def _unwrap(obj, path: Path) -> dict[str, torch.Tensor]:
    while isinstance(obj, dict) and any(isinstance(obj.get(k), dict) for k in _WRAPPERS):
        obj = next(obj[k] for k in _WRAPPERS if isinstance(obj.get(k), dict))
    if not isinstance(obj, dict):
        raise BadInput(f"{path} holds a {type(obj).__name__}, not a state dict of tensors")
    return {str(k).removeprefix("module."): v for k, v in obj.items() if isinstance(v, torch.Tensor)}


def _read_timm(path: Path) -> Source:
    state = _unwrap(_TIMM_LOADERS[path.suffix.lower()](path), path)
    _require(state, TIMM_REQUIRED, path)
    return Source(state=state, file=path, sha256=sha256_file(path))


# ---------------------------------------------------------------------------------------------
# Our own checkpoint: everything is in its metadata.

def _read_ours(path: Path) -> Source:
    ckpt = load_checkpoint(path)
    return Source(state=ckpt.model.state_dict(), file=ckpt.path, sha256=ckpt.sha256, config=ckpt.config,
                  preprocess=ckpt.preprocess, classes=ckpt.classes, meta=dict(ckpt.meta))


FORMATS: dict[str, Format] = {
    "google-npz": Format(_read_npz, gelu="tanh"),   # Flax's nn.gelu is the tanh approximation
    "timm": Format(_read_timm, gelu="exact"),
    "mixer-edge": Format(_read_ours, gelu="exact"),  # unused: our config records its GELU
}
SUFFIXES = {".npz": "google-npz", ".pth": "timm", ".pt": "timm", ".bin": "timm", ".safetensors": "timm"}
ACCEPTED = (*SUFFIXES, f"a folder with {WEIGHTS_NAME}")


def detect_format(path) -> str:
    """The FORMATS key for a path: by extension, and for .safetensors by whether our metadata is there."""
    p = Path(path)
    if not p.exists():
        raise BadInput(f"weights not found: {p}; accepted: {', '.join(ACCEPTED)}")
    if p.is_dir():
        if not (p / WEIGHTS_NAME).is_file():
            raise BadInput(f"{p} is a folder without {WEIGHTS_NAME}; accepted: {', '.join(ACCEPTED)}")
        return "mixer-edge"
    suffix = p.suffix.lower()
    if suffix not in SUFFIXES:
        raise unknown("weights file extension", suffix or p.name, ACCEPTED)
    if suffix == ".safetensors" and read_metadata(p) is not None:
        return "mixer-edge"
    return SUFFIXES[suffix]


def _require(keys, required, path: Path) -> None:
    missing = [k for k in required if k not in keys]
    if missing:
        seen = list(keys)[:3]
        raise BadInput(f"{path} is not an MLP-Mixer checkpoint: missing keys {missing} (it has e.g. {seen})")


# ---------------------------------------------------------------------------------------------
# The config, from the tensor shapes.

def _shape(state, key: str, ndim: int, path: Path) -> tuple[int, ...]:
    shape = tuple(state[key].shape)
    if len(shape) != ndim:
        raise BadInput(f"{path}: {key} has shape {shape}; an MLP-Mixer has {ndim} dims there")
    return shape


def _num_tokens(state, path: Path) -> int:
    return _shape(state, "blocks.0.mlp_tokens.fc1.weight", 2, path)[1]  # fc1: (D_S, N)


def _square_size(n_tokens: int, patch: int, img_size, path: Path) -> tuple[int, int]:
    if img_size is not None:
        return (img_size, img_size) if isinstance(img_size, int) else tuple(img_size)
    side = math.isqrt(n_tokens)
    if side * side != n_tokens:
        raise BadInput(f"{path} mixes {n_tokens} tokens, not a square grid of {patch}x{patch} patches; "
                       f"pass img_size=(H, W) with (H/{patch}) * (W/{patch}) = {n_tokens}")
    return (side * patch, side * patch)


def infer_config(state: dict, path: Path, *, gelu: str, img_size=None) -> MixerConfig:
    c, cin, p, pw = _shape(state, "stem.proj.weight", 4, path)               # (C, Cin, P, P)
    d_s, n = _shape(state, "blocks.0.mlp_tokens.fc1.weight", 2, path)        # (D_S, N)
    d_c, _ = _shape(state, "blocks.0.mlp_channels.fc1.weight", 2, path)      # (D_C, C)
    k, _ = _shape(state, "head.weight", 2, path)                             # (classes, C)
    if p != pw:
        raise BadInput(f"{path}: stem.proj.weight has non-square {p}x{pw} patches; accepted: square patches")
    layers = 1 + max(int(m.group(1)) for key in state if (m := re.match(r"blocks\.(\d+)\.", key)))
    return MixerConfig(variant=match_variant(layers, p, c, d_s, d_c), num_layers=layers, patch_size=p,
                       hidden_dim=c, tokens_mlp_dim=d_s, channels_mlp_dim=d_c,
                       img_size=_square_size(n, p, img_size, path), in_chans=cin, num_classes=k, gelu=gelu)


# ---------------------------------------------------------------------------------------------
# Overrides: each returns the new config and state, and a note for the metadata (or None).

_ADAPT_STEM = {  # (from, to) channels: stem kernel (C, from, P, P) -> (C, to, P, P)
    (3, 1): lambda w: w.sum(dim=1, keepdim=True),  # gray x: sum_c w_c * x, what RGB (x, x, x) gave
    (1, 3): lambda w: w.repeat(1, 3, 1, 1) / 3,    # RGB (x, x, x) gives what the gray model gave
}


def _new_head(cfg, state, num_classes, path):
    if num_classes is None or num_classes == cfg.num_classes:
        return cfg, state, None
    note = ("head_replaced", {"from": cfg.num_classes, "to": num_classes})
    cfg = cfg.with_(num_classes=num_classes)  # MixerConfig rejects num_classes < 1
    head = {"head.weight": torch.zeros(num_classes, cfg.hidden_dim),  # (classes, C): starts neutral
            "head.bias": torch.zeros(num_classes)}
    return cfg, {**state, **head}, note


def _adapt_stem(cfg, state, in_chans, path):
    if in_chans is None or in_chans == cfg.in_chans:
        return cfg, state, None
    adapt = _ADAPT_STEM.get((cfg.in_chans, in_chans))
    if adapt is None:
        raise BadInput(f"cannot adapt the {cfg.in_chans}-channel stem of {path} to in_chans={in_chans}; "
                       f"accepted: {cfg.in_chans} (as stored) or "
                       f"{[t for f, t in _ADAPT_STEM if f == cfg.in_chans]}")
    stem = adapt(state["stem.proj.weight"])
    return (cfg.with_(in_chans=in_chans), {**state, "stem.proj.weight": stem},
            ("in_chans_adapted", {"from": cfg.in_chans, "to": in_chans}))


def _fit_img_size(cfg, state, img_size, path):
    """The weights' own size, or K times it on both sides: the token-mixing MLPs then become
    block-diagonal (models/resolution.py, the paper's Appendix C). Any other size is refused with
    the sizes that are possible."""
    from .resolution import expand_token_mixing, scale_factor

    n = _num_tokens(state, path)
    p = cfg.patch_size
    old = cfg if cfg.num_tokens == n else cfg.with_(img_size=(math.isqrt(n) * p,) * 2)
    new = old if img_size is None else old.with_(img_size=(img_size, img_size) if isinstance(img_size, int)
                                                 else tuple(img_size))
    grid = lambda c: (c.img_size[0] // p, c.img_size[1] // p)          # noqa: E731  (patch rows, columns)
    k = scale_factor(grid(old), grid(new)) if old.num_tokens == n else None
    if k is None:
        h, w = old.img_size
        sizes = ", ".join(f"{h * i}x{w * i}" for i in range(1, 5))
        raise BadInput(f"img_size {new.img_size[0]}x{new.img_size[1]} does not fit the token-mixing weights of "
                       f"{path} ({n} tokens of {p}x{p} patches, trained at {h}x{w}); possible sizes: {sizes}, ... "
                       f"(the trained size times an integer K: K^2 times the patches, block-diagonal token mixing)")
    if k == 1:
        return new, state, None
    note = ("resolution_expanded", {"from": list(old.img_size), "to": list(new.img_size), "k": k,
                                    "token_mixing": "block-diagonal, K^2 copies (paper, Appendix C)"})
    return (new.with_(tokens_mlp_dim=old.tokens_mlp_dim * k * k), expand_token_mixing(state, grid(old), k), note)


def _set_gelu(cfg, state, gelu, path):
    return (cfg if gelu is None else cfg.with_(gelu=gelu)), state, None


OVERRIDES = {"img_size": _fit_img_size, "num_classes": _new_head, "in_chans": _adapt_stem, "gelu": _set_gelu}


# ---------------------------------------------------------------------------------------------

def _build(cfg: MixerConfig, state: dict, path: Path) -> MlpMixer:
    with torch.device("meta"):
        model = MlpMixer(cfg)  # shapes only: no memory, no random init to overwrite
    expected = {k: tuple(v.shape) for k, v in model.state_dict().items()}
    missing = [k for k in expected if k not in state]
    unexpected = [k for k in state if k not in expected]
    if missing or unexpected:
        raise BadInput(f"{path} does not fit the {cfg.variant} layout inferred from it "
                       f"({cfg.num_layers} blocks): missing {missing[:3]}, unexpected {unexpected[:3]}")
    for k, want in expected.items():
        if tuple(state[k].shape) != want:
            raise BadInput(f"{path}: {k} has shape {tuple(state[k].shape)}, expected {want} "
                           f"for {cfg.variant} (C={cfg.hidden_dim}, N={cfg.num_tokens}, "
                           f"D_S={cfg.tokens_mlp_dim}, D_C={cfg.channels_mlp_dim})")
    model.load_state_dict({k: v.to(torch.float32).contiguous() for k, v in state.items()}, assign=True)
    return model.eval()


def _fit_preprocess(pre: Preprocess, cfg: MixerConfig) -> Preprocess:
    """Keep the file's normalisation; follow the (possibly adapted) input size and channels."""
    def fit(v):
        return v if len(v) in (1, cfg.in_chans) else (float(np.mean(v)),)
    return replace(pre, size=tuple(cfg.img_size), channels=cfg.in_chans, mean=fit(pre.mean), std=fit(pre.std))


def load_pretrained(path, *, num_classes=None, in_chans=None, gelu=None, img_size=None) -> Checkpoint:
    """Load official Google .npz, timm state dicts (.pth/.pt/.bin/.safetensors) or our checkpoints."""
    fmt = detect_format(path)
    src = FORMATS[fmt].read(Path(path))
    cfg = src.config or infer_config(src.state, src.file, gelu=FORMATS[fmt].gelu, img_size=img_size)
    state, notes = src.state, {}
    asked = {"img_size": img_size, "num_classes": num_classes, "in_chans": in_chans, "gelu": gelu}
    for name, apply in OVERRIDES.items():
        cfg, state, note = apply(cfg, state, asked[name], src.file)
        notes.update([note] if note else [])
    named = bool(src.classes) and len(src.classes) == cfg.num_classes
    classes = src.classes if named else tuple(str(i) for i in range(cfg.num_classes))
    # A checkpoint of ours may already name the weights it was fine-tuned from: that provenance stays.
    meta = {"source": {"format": fmt, "path": str(src.file), "sha256": src.sha256}, **src.meta, **notes,
            "classes_named": named and src.meta.get("classes_named", True)}
    preprocess = _fit_preprocess(src.preprocess or Preprocess.default(cfg.img_size, cfg.in_chans), cfg)
    return Checkpoint(model=_build(cfg, state, src.file), preprocess=preprocess, classes=classes,
                      meta=meta, path=src.file, sha256=src.sha256)
