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

    def to_dict(self) -> dict:
        return asdict(self)
