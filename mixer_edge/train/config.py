"""Training configuration: one frozen dataclass, filled by the CLI or by Python callers, and the
named recipes that set several of its fields at once (with_recipe).

    cfg = with_recipe(TrainConfig(data="mnist:DIR", out="runs/qat", pretrained="runs/mnist"), qat=True)
"""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass, replace

from ..calibration.ranges import METHODS
from ..errors import BadInput, unknown

# --epochs auto: a small training set gives few optimizer steps a pass, and a regularized Mixer
# underfits in few steps (T/4 on 4,800 MNIST digits: 8 epochs = 1,200 steps 96.3 %, 24 epochs 97.2 %,
# 32 epochs 98.1-98.7 %; benchmarks/RESULTS.md 7.1). So auto trains for about AUTO_STEPS optimizer
# steps, within AUTO_EPOCHS passes: large sets get 10 epochs, tiny ones no more than 100.
AUTO_STEPS = 5000
AUTO_EPOCHS = (10, 100)


@dataclass(frozen=True)
class TrainConfig:
    data: str                       # data spec, e.g. "digits" or "mnist:DIR"
    out: str                        # output folder for model.safetensors / model.json
    model: str = "T/4"              # variant name (ignored for its dimensions when pretrained is set)
    pretrained: str | None = None   # .npz / .pth / .safetensors / checkpoint folder to start from
    epochs: int | None = None       # None = auto (epochs_for): about AUTO_STEPS optimizer steps
    batch_size: int = 32            # global batch, split across processes under torchrun
    lr: float = 5e-3                # AdamW peak; measured best of 2e-3, 4e-3, 5e-3, 8e-3 (docs/training.md)
    optimizer: str = "adamw"        # adamw | sgd (momentum 0.9: the paper's fine-tuning recipe)
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
    force: bool = False             # write into an --out that holds another run or other files
    device: str = "auto"            # auto | cpu | cuda
    eval_every: int = 1             # epochs between evaluations on the eval split
    # Regularization: the defaults work on small data without flags (docs/training.md).
    augment: str = "auto"           # train.augment.POLICIES: auto | geometry | randaugment | trivialaugment | none
    hflip: bool = False             # horizontal flips break digits and text: only when asked
    mixup: float = 0.0              # Beta(alpha) mixing of image pairs; 0 = off
    cutmix: float = 0.0             # Beta(alpha) box pasting; 0 = off (both on: one per batch)
    drop_path: float = 0.1          # stochastic depth of the last block; earlier blocks linearly less
    dropout: float = 0.0            # inside every MLP
    ema: bool = True                # exponential moving average of the weights, evaluated and saved
    ema_decay: float | None = None  # default: a horizon of a tenth of the run's optimizer steps
    accum: int = 1                  # micro-batches per optimizer step (batch_size is per micro-batch)
    precision: str = "auto"         # auto (bf16 autocast where the GPU or CPU computes in bf16, else fp32) | fp32 | bf16
    workers: int = 0                # DataLoader processes decoding and augmenting images; 0 = in this one
    # Quantization-aware fine-tuning (train/qat.py): the INT8 export's recipe simulated while training.
    qat: bool = False
    qat_calib_size: int = 300       # calib-split images that smooth the model and start the ranges
    qat_calib_method: str | None = None   # the estimator of the starting ranges; None = the export's default
    # Reading the data (data/sources.ReadOptions)
    skip_bad: bool = False          # leave unreadable image files out (listed) instead of stopping at the first
    class_map: str | None = None    # a --class-map FILE: folder names -> class names (data/classmap.py)

    def __post_init__(self):
        """Collect every out-of-range value, then raise once (one line naming each)."""
        rules = [("epochs", self.epochs is None or self.epochs >= 1, ">= 1 or auto"), ("batch_size", self.batch_size >= 1, ">= 1"),
                 ("lr", self.lr > 0, "> 0"), ("weight_decay", self.weight_decay >= 0, ">= 0"),
                 ("warmup_epochs", self.warmup_epochs >= 0, ">= 0"),
                 ("label_smoothing", 0 <= self.label_smoothing < 1, "in [0, 1)"),
                 ("clip_grad", self.clip_grad >= 0, ">= 0 (0 = off)"),
                 ("mixup", self.mixup >= 0, ">= 0 (0 = off)"), ("cutmix", self.cutmix >= 0, ">= 0 (0 = off)"),
                 ("drop_path", 0 <= self.drop_path < 1, "in [0, 1)"), ("dropout", 0 <= self.dropout < 1, "in [0, 1)"),
                 ("ema_decay", self.ema_decay is None or 0 < self.ema_decay < 1, "in (0, 1)"),
                 ("accum", self.accum >= 1, ">= 1"), ("workers", self.workers >= 0, ">= 0"),
                 ("qat_calib_size", self.qat_calib_size >= 1, ">= 1"),
                 ("precision", self.precision in ("auto", "fp32", "bf16"), "auto, fp32 or bf16"),
                 ("optimizer", self.optimizer in ("adamw", "sgd"), "adamw or sgd"),
                 ("eval_every", self.eval_every >= 1, ">= 1")]
        bad = [f"--{name.replace('_', '-')} must be {want}, got {getattr(self, name)}" for name, ok, want in rules
               if not ok]
        if self.qat_calib_method is not None and self.qat_calib_method not in METHODS:
            bad.append(f"--qat-calib-method must be one of {', '.join(METHODS)}, got {self.qat_calib_method}")
        if bad:
            raise BadInput("; ".join(bad))

    def epochs_for(self, steps_per_epoch: int) -> int:
        """The epochs to run: as given, or auto's passes for about AUTO_STEPS optimizer steps."""
        if self.epochs is not None:
            return self.epochs
        low, high = AUTO_EPOCHS
        return min(high, max(low, math.ceil(AUTO_STEPS / max(1, steps_per_epoch))))

    def to_dict(self) -> dict:
        return asdict(self)


# A recipe sets these TrainConfig fields over the defaults; a field set to anything else wins.
RECIPES = {"scratch": {}, "finetune": {"optimizer": "sgd", "weight_decay": 0.0, "clip_grad": 1.0, "lr": 0.01}}
# qat=True: a short fine-tune of a converged model with the lighter geometric augmentation
# (docs/quantization.md has the measurements); the moving average would blend weights trained
# against older ranges, so it is off.
QAT_RECIPE = {"qat": True, "epochs": 5, "lr": 1e-3, "augment": "geometry", "weight_decay": 0.0, "warmup_epochs": 0.1,
              "drop_path": 0.0, "ema": False}


def with_recipe(cfg: TrainConfig, recipe: str = "scratch", qat: bool = False) -> TrainConfig:
    """cfg with a recipe's settings (RECIPES; and QAT_RECIPE when qat) for every field it left at
    TrainConfig's default: "finetune" is the paper's fine-tuning recipe (SGD, momentum 0.9, no
    weight decay, lr 0.01), qat the quantization-aware fine-tuning of train/qat.py."""
    if recipe not in RECIPES:
        raise unknown("recipe", recipe, RECIPES)
    defaults = TrainConfig(data=cfg.data, out=cfg.out)
    settings = {**RECIPES[recipe], **(QAT_RECIPE if qat else {})}
    return replace(cfg, **{k: v for k, v in settings.items() if getattr(cfg, k) == getattr(defaults, k)})
