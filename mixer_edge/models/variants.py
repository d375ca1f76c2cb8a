"""The variant table: the paper's Table 1 plus small variants for small images.

A variant is data, not a class: (layers, patch, C, D_S, D_C, default image size).
"""
from __future__ import annotations

from dataclasses import dataclass

from ..errors import resolve
from .mixer import MixerConfig, MlpMixer


@dataclass(frozen=True)
class Variant:
    num_layers: int
    patch_size: int
    hidden_dim: int
    tokens_mlp_dim: int
    channels_mlp_dim: int
    img_size: int  # the default square input size
    note: str


VARIANTS: dict[str, Variant] = {
    # Tolstikhin et al. 2021, Table 1 (224x224 ImageNet inputs).
    "S/32": Variant(8, 32, 512, 256, 2048, 224, "paper, 19.10 M params"),
    "S/16": Variant(8, 16, 512, 256, 2048, 224, "paper, 18.53 M params"),
    "B/32": Variant(12, 32, 768, 384, 3072, 224, "paper, 60.29 M params"),
    "B/16": Variant(12, 16, 768, 384, 3072, 224, "paper, 59.88 M params"),
    "L/32": Variant(24, 32, 1024, 512, 4096, 224, "paper, 206.94 M params"),
    "L/16": Variant(24, 16, 1024, 512, 4096, 224, "paper, 208.20 M params"),
    "H/14": Variant(32, 14, 1280, 640, 5120, 224, "paper, ~432 M params"),
    # Small variants for small images (ours): 28x28 MNIST / 32x32 CIFAR / 8x8 digits.
    "T/4": Variant(4, 4, 128, 64, 512, 28, "tiny, 28x28 or 32x32 inputs"),
    "T/2": Variant(4, 2, 128, 64, 512, 8, "tiny, 8x8 inputs (digits)"),
    "Ti/4": Variant(2, 4, 64, 32, 256, 28, "smallest, for tests"),
}


def list_models() -> list[str]:
    return list(VARIANTS)


def _square(size) -> tuple[int, int]:
    return (size, size) if isinstance(size, int) else tuple(size)


def variant_config(name: str, *, num_classes: int = 1000, img_size=None, in_chans: int = 3,
                   gelu: str = "exact") -> MixerConfig:
    name = resolve("model variant", name, VARIANTS)
    v = VARIANTS[name]
    return MixerConfig(
        variant=name, num_layers=v.num_layers, patch_size=v.patch_size, hidden_dim=v.hidden_dim,
        tokens_mlp_dim=v.tokens_mlp_dim, channels_mlp_dim=v.channels_mlp_dim,
        img_size=_square(img_size or v.img_size), in_chans=in_chans, num_classes=num_classes,
        gelu=gelu,
    )


def create_model(name: str, *, num_classes: int = 1000, img_size=None, in_chans: int = 3,
                 gelu: str = "exact") -> MlpMixer:
    """Build a variant by name, e.g. create_model("B/16") or create_model("T/4", num_classes=10, in_chans=1)."""
    return MlpMixer(variant_config(name, num_classes=num_classes, img_size=img_size,
                                   in_chans=in_chans, gelu=gelu))


def match_variant(num_layers, patch_size, hidden_dim, tokens_mlp_dim, channels_mlp_dim) -> str:
    """The table's name for these dimensions, or 'custom' (used when inferring from weights)."""
    for name, v in VARIANTS.items():
        if (v.num_layers, v.patch_size, v.hidden_dim, v.channels_mlp_dim) == (
                num_layers, patch_size, hidden_dim, channels_mlp_dim) and v.tokens_mlp_dim == tokens_mlp_dim:
            return name
    return "custom"
