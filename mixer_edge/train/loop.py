"""The training loop: AdamW, linear warmup then cosine decay, label smoothing, gradient clipping,
seeded and resumable at epoch boundaries, data-parallel under torchrun.

Reproducibility: the batch order of epoch e is a permutation seeded by (seed, e), so a run resumed
after epoch e sees exactly the batches an uninterrupted run would.
"""
from __future__ import annotations

import json
import math
import time
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from ..data.dataset import ImageSet, SplitSpec, take_split
from ..data.preprocess import Preprocess
from ..errors import BadInput
from ..models.checkpoint import atomic_write_bytes, save_checkpoint
from ..models.mixer import MlpMixer
from ..models.variants import create_model
from ..progress import progress
from . import distributed
from .config import TrainConfig
from .evaluate import predict_logits, topk_accuracy

RESUME_NAME = "resume.safetensors"


@dataclass(frozen=True)
class TrainResult:
    checkpoint: Path
    metrics: dict


def train(cfg: TrainConfig) -> TrainResult:
    from ..data.sources import load_data

    device = _device(cfg.device)
    world = distributed.init_world(device)
    try:
        data = load_data(cfg.data)
        _check_data(cfg, data)
        torch.manual_seed(cfg.seed)
        model, preprocess, meta = _build_model(cfg, data)
        split = SplitSpec(seed=cfg.split_seed)
        train_set, eval_set = take_split(data, "train", split), take_split(data, "eval", split)
        if len(train_set) < cfg.batch_size:
            raise BadInput(f"the train split of {cfg.data!r} has {len(train_set)} images, fewer than "
                           f"--batch-size {cfg.batch_size}; use a smaller batch")
        if cfg.batch_size % world.size:
            raise BadInput(f"--batch-size {cfg.batch_size} must divide evenly over {world.size} processes")
        x_train = torch.from_numpy(preprocess(train_set.images))  # (N, C, H, W)
        y_train = torch.from_numpy(train_set.labels)
        x_eval = preprocess(eval_set.images)
        return _fit(cfg, model.to(device), preprocess, data, meta, split, world, device,
                    (x_train, y_train), (x_eval, eval_set.labels))
    finally:
        distributed.shutdown(world)


def _device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name not in ("cpu", "cuda"):
        raise BadInput(f"unknown device {name!r}; accepted: auto, cpu, cuda")
    if name == "cuda" and not torch.cuda.is_available():
        raise BadInput("--device cuda asked for, but torch sees no CUDA GPU here")
    return torch.device(name)


def _check_data(cfg: TrainConfig, data: ImageSet) -> None:
    if data.labels is None:
        raise BadInput(f"training needs labelled data; {cfg.data!r} has no class folders or labels")
    if cfg.num_classes is not None and cfg.num_classes != data.num_classes:
        raise BadInput(f"--num-classes {cfg.num_classes} disagrees with the data: {cfg.data!r} has "
                       f"{data.num_classes} classes ({', '.join(data.classes[:10])}"
                       f"{', ...' if data.num_classes > 10 else ''})")
    for name in ("epochs", "batch_size"):
        if getattr(cfg, name) < 1:
            raise BadInput(f"--{name.replace('_', '-')} must be at least 1, got {getattr(cfg, name)}")


def _data_channels(data: ImageSet) -> int:
    return int(data.images[0].shape[-1])


def _build_model(cfg: TrainConfig, data: ImageSet) -> tuple[MlpMixer, Preprocess, dict]:
    """From scratch: the variant at the data's channel count. Fine-tuning: the pretrained weights
    with a new head when the class count differs, and their own input size and channels."""
    if cfg.pretrained:
        from ..models.weights import load_pretrained

        ck = load_pretrained(cfg.pretrained, num_classes=data.num_classes)
        return ck.model, ck.preprocess, {"pretrained": ck.meta.get("source", {"path": cfg.pretrained})}
    model = create_model(cfg.model, num_classes=data.num_classes, img_size=cfg.img_size,
                         in_chans=_data_channels(data), gelu=cfg.gelu)
    return model, Preprocess.default(model.config.img_size, model.config.in_chans), {}


def _param_groups(model: nn.Module, weight_decay: float):
    # No weight decay on biases and LayerNorm scales, as usual for transformers and Mixers.
    decay = [p for n, p in model.named_parameters() if p.ndim > 1]
    no_decay = [p for n, p in model.named_parameters() if p.ndim <= 1]
    return [{"params": decay, "weight_decay": weight_decay}, {"params": no_decay, "weight_decay": 0.0}]


def _schedule(optimizer, warmup_steps: int, total_steps: int):
    def factor(step: int) -> float:
        if step < warmup_steps:
            return (step + 1) / warmup_steps
        t = (step - warmup_steps) / max(1, total_steps - warmup_steps)
        return 0.5 * (1.0 + math.cos(math.pi * min(1.0, t)))
    return torch.optim.lr_scheduler.LambdaLR(optimizer, factor)


def _fit(cfg, model, preprocess, data, meta, split, world, device, train_xy, eval_xy) -> TrainResult:
    x_train, y_train = train_xy
    steps_per_epoch = len(x_train) // cfg.batch_size  # full batches only: equal shards per process
    total = steps_per_epoch * cfg.epochs
    optimizer = torch.optim.AdamW(_param_groups(model, cfg.weight_decay), lr=cfg.lr)
    scheduler = _schedule(optimizer, max(1, int(cfg.warmup_epochs * steps_per_epoch)), total)
    out = Path(cfg.out)
    start_epoch, history = _maybe_resume(cfg, out, model, optimizer, scheduler)
    net = distributed.wrap(model, world, device)
    loss_fn = nn.CrossEntropyLoss(label_smoothing=cfg.label_smoothing)
    local = cfg.batch_size // world.size
    started = time.perf_counter()
    metrics = history[-1] if history else {}
    for epoch in range(start_epoch, cfg.epochs):
        gen = torch.Generator().manual_seed(cfg.seed * 100_003 + epoch)
        order = torch.randperm(len(x_train), generator=gen)
        # Drawn for the whole epoch from the same seed, so every process slices the same shifts.
        shifts = torch.randint(-cfg.augment_shift, cfg.augment_shift + 1, (len(x_train), 2), generator=gen) \
            if cfg.augment_shift else None
        bar = progress(range(steps_per_epoch), desc=f"epoch {epoch + 1}/{cfg.epochs}", enabled=world.is_main)
        loss_sum, correct, seen = 0.0, 0, 0
        net.train()
        for step in bar:
            idx = order[step * cfg.batch_size:(step + 1) * cfg.batch_size][world.rank * local:(world.rank + 1) * local]
            xb, yb = x_train[idx].to(device), y_train[idx].to(device)
            if shifts is not None:
                xb = _shift(xb, shifts[idx], cfg.augment_shift)
            logits = net(xb)                                   # (local, K)
            loss = loss_fn(logits, yb)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()                                    # DDP averages gradients over processes
            if cfg.clip_grad > 0:
                nn.utils.clip_grad_norm_(model.parameters(), cfg.clip_grad)
            optimizer.step()
            scheduler.step()
            loss_sum += loss.item() * len(yb)
            correct += int((logits.argmax(1) == yb).sum())
            seen += len(yb)
            bar.set_postfix(loss=f"{loss_sum / seen:.4f}", acc=f"{correct / seen:.3f}",
                            lr=f"{scheduler.get_last_lr()[0]:.2e}")
        bar.close()
        metrics = {"epoch": epoch + 1, "train_loss": loss_sum / seen, "train_top1": correct / seen}
        if (epoch + 1) % cfg.eval_every == 0 or epoch + 1 == cfg.epochs:
            metrics.update({f"eval_{k}": v for k, v in topk_accuracy(
                predict_logits(model, eval_xy[0]), eval_xy[1]).items()})
        history.append(metrics)
        if world.is_main:
            _save_resume(out, cfg, model, optimizer, scheduler, epoch + 1, history)
        distributed.barrier(world)
    wall = time.perf_counter() - started
    final = {**metrics, "eval_n": int(len(eval_xy[1])), "train_n": int(len(x_train)),
             "wall_s": round(wall, 2), "processes": world.size}
    path = out / "model.safetensors"
    if world.is_main:
        path = save_checkpoint(out, model.cpu(), preprocess, data.classes, {
            **meta, "data": cfg.data, "split": split.to_dict(), "images": trained_images(data, split),
            "metrics": final,
            "history": history, "train": cfg.to_dict()})
    distributed.barrier(world)
    return TrainResult(checkpoint=path, metrics=final)


def trained_images(data: ImageSet, split: SplitSpec) -> dict:
    """The training data by content: its fingerprint, the train split's keys (trained on) and the
    calib split's (kept for calibration), so every later stage holds both out of evaluation wherever
    and however the same images arrive."""
    from ..runtime.edge_bench import pack_keys

    trained, calib = take_split(data, "train", split), take_split(data, "calib", split)
    return {"data": data.describe(), "n_trained": len(trained), "trained": pack_keys(trained.keys),
            "calibration_split": pack_keys(calib.keys)}


def _shift(x: torch.Tensor, shifts: torch.Tensor, k: int) -> torch.Tensor:
    """Translate each image by (dy, dx) pixels, edges replicated: x (B, C, H, W), shifts (B, 2)."""
    h, w = x.shape[-2:]
    padded = nn.functional.pad(x, (k, k, k, k), mode="replicate")    # (B, C, H + 2k, W + 2k)
    return torch.stack([padded[i, :, k + dy:k + dy + h, k + dx:k + dx + w]
                        for i, (dy, dx) in enumerate(shifts.tolist())])


def _save_resume(out: Path, cfg, model, optimizer, scheduler, epoch: int, history: list) -> None:
    """Weights + optimizer moments as safetensors, counters as JSON metadata: no pickles."""
    from safetensors.torch import save

    out.mkdir(parents=True, exist_ok=True)
    tensors = {f"model.{k}": v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
    opt = optimizer.state_dict()
    for pid, state in opt["state"].items():
        for k, v in state.items():
            tensors[f"opt.{pid}.{k}"] = torch.as_tensor(v).detach().cpu().contiguous()
    groups = [{k: v for k, v in g.items() if k != "params"} | {"params": g["params"]} for g in opt["param_groups"]]
    meta = {"epoch": epoch, "param_groups": groups, "scheduler": scheduler.state_dict(),
            "history": history, "train": cfg.to_dict()}
    atomic_write_bytes(out / RESUME_NAME, save(tensors, metadata={"mixer_edge_resume": json.dumps(meta)}))


def _maybe_resume(cfg, out: Path, model, optimizer, scheduler) -> tuple[int, list]:
    path = out / RESUME_NAME
    if not cfg.resume:
        return 0, []
    if not path.is_file():
        raise BadInput(f"--resume given but {path} does not exist; train without --resume first")
    from safetensors import safe_open
    from safetensors.torch import load_file

    with safe_open(str(path), framework="pt") as f:
        meta = json.loads(f.metadata()["mixer_edge_resume"])
    _check_resume_matches(cfg, meta["train"], path)
    tensors = load_file(str(path))
    model.load_state_dict({k[6:]: v for k, v in tensors.items() if k.startswith("model.")})
    state: dict = {}
    for k, v in tensors.items():
        if k.startswith("opt."):
            _, pid, name = k.split(".", 2)
            state.setdefault(int(pid), {})[name] = v
    optimizer.load_state_dict({"state": state, "param_groups": meta["param_groups"]})
    scheduler.load_state_dict(meta["scheduler"])
    return int(meta["epoch"]), list(meta["history"])


def _check_resume_matches(cfg: TrainConfig, saved: dict, path: Path) -> None:
    # Everything but the epoch count must match, or the resumed run is a different experiment.
    keys = ("data", "model", "pretrained", "batch_size", "lr", "weight_decay", "warmup_epochs", "label_smoothing",
            "clip_grad", "seed", "img_size", "gelu", "split_seed", "augment_shift")
    diff = {k: (saved.get(k), getattr(cfg, k)) for k in keys if saved.get(k) != getattr(cfg, k)}
    if diff:
        raise BadInput(f"cannot resume from {path}: settings differ from the saved run "
                       + ", ".join(f"{k}: saved {a!r}, now {b!r}" for k, (a, b) in diff.items()))
