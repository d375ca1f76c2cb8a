"""MLP-Mixer (Tolstikhin et al. 2021, arXiv 2105.01601), one implementation for every variant.

Parameter names follow timm's MlpMixer (stem.proj, blocks.N.norm1, blocks.N.mlp_tokens.fc1, ...),
so timm state dicts load as they are and our checkpoints read the same way.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass, replace

from torch import nn

GELU_APPROXIMATIONS = {"exact": "none", "tanh": "tanh"}  # ours -> torch.nn.GELU(approximate=...)


@dataclass(frozen=True)
class MixerConfig:
    variant: str            # a name from variants.VARIANTS, or "custom"
    num_layers: int
    patch_size: int
    hidden_dim: int         # C
    tokens_mlp_dim: int     # D_S
    channels_mlp_dim: int   # D_C
    img_size: tuple[int, int] = (224, 224)
    in_chans: int = 3
    num_classes: int = 1000
    gelu: str = "exact"     # "exact" (erf, timm) or "tanh" (Flax, the official checkpoints)
    ln_eps: float = 1e-6

    def __post_init__(self):
        from ..errors import BadInput, unknown

        h, w = self.img_size
        if h % self.patch_size or w % self.patch_size:
            raise BadInput(
                f"image size {h}x{w} is not divisible by the patch size {self.patch_size} of "
                f"variant {self.variant!r}; use a multiple of {self.patch_size}"
            )
        if self.gelu not in GELU_APPROXIMATIONS:
            raise unknown("GELU kind", self.gelu, GELU_APPROXIMATIONS)
        for name in ("num_classes", "in_chans", "num_layers"):
            if getattr(self, name) < 1:
                raise BadInput(f"{name} must be at least 1, got {getattr(self, name)}")

    @property
    def num_tokens(self) -> int:
        h, w = self.img_size
        return (h // self.patch_size) * (w // self.patch_size)

    def to_dict(self) -> dict:
        d = asdict(self)
        d["img_size"] = list(self.img_size)
        return d

    @classmethod
    def from_dict(cls, d: dict) -> "MixerConfig":
        return cls(**{**d, "img_size": tuple(d["img_size"])})

    def with_(self, **changes) -> "MixerConfig":
        return replace(self, **changes)


class Mlp(nn.Module):
    def __init__(self, dim: int, hidden: int, gelu: str):
        super().__init__()
        self.fc1 = nn.Linear(dim, hidden)
        self.act = nn.GELU(approximate=GELU_APPROXIMATIONS[gelu])
        self.drop = nn.Dropout(0.0)        # training sets p (train.regularize); no-op at inference
        self.fc2 = nn.Linear(hidden, dim)

    def forward(self, x):
        return self.drop(self.fc2(self.drop(self.act(self.fc1(x)))))


class PatchEmbed(nn.Module):
    """A PxP convolution with stride P: one token per patch."""

    def __init__(self, cfg: MixerConfig):
        super().__init__()
        self.proj = nn.Conv2d(cfg.in_chans, cfg.hidden_dim, cfg.patch_size, stride=cfg.patch_size)

    def forward(self, x):
        x = self.proj(x)                     # (B, C, H/P, W/P)
        return x.flatten(2).transpose(1, 2)  # (B, N, C)


class MixerBlock(nn.Module):
    def __init__(self, cfg: MixerConfig):
        super().__init__()
        c = cfg.hidden_dim
        self.norm1 = nn.LayerNorm(c, eps=cfg.ln_eps)
        self.mlp_tokens = Mlp(cfg.num_tokens, cfg.tokens_mlp_dim, cfg.gelu)
        self.norm2 = nn.LayerNorm(c, eps=cfg.ln_eps)
        self.mlp_channels = Mlp(c, cfg.channels_mlp_dim, cfg.gelu)
        self.drop_path = DropPath(0.0)     # stochastic depth; training sets p (train.regularize)

    def forward(self, x):                                                  # x: (B, N, C)
        y = self.norm1(x).transpose(1, 2)                                  # (B, C, N): mix over patches
        x = x + self.drop_path(self.mlp_tokens(y).transpose(1, 2))         # (B, N, C)
        return x + self.drop_path(self.mlp_channels(self.norm2(x)))        # mix over channels


class DropPath(nn.Module):
    """Stochastic depth per sample (timm's DropPath, torchvision's stochastic_depth "row" mode):
    drops a residual branch for a random subset of the batch while training, identity otherwise."""
    def __init__(self, p: float):
        super().__init__()
        self.p = p

    def forward(self, x):
        if not self.training or self.p == 0.0:
            return x
        from torchvision.ops import stochastic_depth

        return stochastic_depth(x, self.p, "row", training=True)


class MlpMixer(nn.Module):
    def __init__(self, cfg: MixerConfig):
        super().__init__()
        self.config = cfg
        self.stem = PatchEmbed(cfg)
        self.blocks = nn.Sequential(*[MixerBlock(cfg) for _ in range(cfg.num_layers)])
        self.norm = nn.LayerNorm(cfg.hidden_dim, eps=cfg.ln_eps)
        self.head = nn.Linear(cfg.hidden_dim, cfg.num_classes)
        self.reset_parameters()

    def reset_parameters(self):
        # As timm's MlpMixer initializes by default (not its Flax mode, which is lecun-normal): xavier-
        # uniform linears with near-zero biases (std 1e-6), and a zero head so fine-tuning starts neutral.
        for m in self.modules():
            if isinstance(m, nn.Linear):
                nn.init.xavier_uniform_(m.weight)
                nn.init.normal_(m.bias, std=1e-6)
        nn.init.zeros_(self.head.weight)
        nn.init.zeros_(self.head.bias)

    def forward(self, x):                    # x: (B, in_chans, H, W)
        x = self.blocks(self.stem(x))        # (B, N, C)
        x = self.norm(x).mean(dim=1)         # (B, C): global average over tokens
        return self.head(x)                  # (B, num_classes)


def count_params(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())
