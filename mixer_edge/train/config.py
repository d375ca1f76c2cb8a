"""Training configuration: one frozen dataclass, filled by the CLI or by Python callers."""
from __future__ import annotations

from dataclasses import asdict, dataclass


@dataclass(frozen=True)
class TrainConfig:
    data: str                       # data spec, e.g. "digits" or "mnist:DIR"
    out: str                        # output folder for model.safetensors / model.json
    model: str = "T/4"              # variant name (ignored for its dimensions when pretrained is set)
    pretrained: str | None = None   # .npz / .pth / .safetensors / checkpoint folder to start from
    epochs: int = 10
    batch_size: int = 128           # global batch, split across processes under torchrun
    lr: float = 2e-3
    weight_decay: float = 0.05
    warmup_epochs: float = 1.0
    label_smoothing: float = 0.1
    clip_grad: float = 1.0
    seed: int = 0
    img_size: int | None = None     # default: the variant's
    num_classes: int | None = None  # default: the data's; given and different -> error
    gelu: str = "exact"
    split_seed: int = 0
    resume: bool = False
    device: str = "auto"            # auto | cpu | cuda
    eval_every: int = 1             # epochs between evaluations on the eval split
    augment_shift: int = 0          # random translation by up to this many pixels (0 = off)

    def __post_init__(self):
        """Collect every out-of-range value, then raise once (one line naming each)."""
        from ..errors import BadInput

        rules = [("epochs", self.epochs >= 1, ">= 1"), ("batch_size", self.batch_size >= 1, ">= 1"),
                 ("lr", self.lr > 0, "> 0"), ("weight_decay", self.weight_decay >= 0, ">= 0"),
                 ("warmup_epochs", self.warmup_epochs >= 0, ">= 0"),
                 ("label_smoothing", 0 <= self.label_smoothing < 1, "in [0, 1)"),
                 ("clip_grad", self.clip_grad >= 0, ">= 0 (0 = off)"),
                 ("augment_shift", self.augment_shift >= 0, ">= 0 (0 = off)"),
                 ("eval_every", self.eval_every >= 1, ">= 1")]
        bad = [f"--{name.replace('_', '-')} must be {want}, got {getattr(self, name)}" for name, ok, want in rules
               if not ok]
        if bad:
            raise BadInput("; ".join(bad))

    def to_dict(self) -> dict:
        return asdict(self)
