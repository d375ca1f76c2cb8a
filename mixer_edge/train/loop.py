"""The training loop: AdamW, linear warmup then cosine decay, label smoothing, gradient clipping,
per-image augmentation, mixup / cutmix, stochastic depth, an EMA of the weights, bf16 autocast and
gradient accumulation; seeded and resumable at epoch boundaries, data-parallel under torchrun.

Reproducibility: the batch order of epoch e is a permutation seeded by (seed, e) and every image's
augmentation by (seed, e, index), so a run resumed after epoch e, or one split over processes,
sees exactly the images an uninterrupted single-process run would.

Output folder: model.safetensors (the last epoch), best/ (the epoch with the best eval top-1),
ema/ (the moving average), metrics.jsonl (one line per epoch), curves.png, resume.safetensors.
"""
from __future__ import annotations

import json
import math
import time
from dataclasses import dataclass, replace
from pathlib import Path

import torch
from torch import nn

from ..calibration.policy import DEFAULT_SMOOTH
from ..calibration.sets import draw_calibration
from ..data.dataset import ImageSet, SplitSpec, take_split, warn_small
from ..data.preprocess import Preprocess
from ..data.sources import ReadOptions, load_data
from ..errors import BadInput
from ..models.checkpoint import WEIGHTS_NAME, save_checkpoint
from ..models.mixer import MlpMixer
from ..models.variants import create_model
from ..models.weights import load_pretrained
from ..progress import progress
from ..runtime.artifact import atomic_write_bytes
from ..runtime.identity import pack_keys
from ..runtime.streaming import Batches
from ..runtime.system import X86_BF16, isa_flags
from . import augment, distributed, qat
from .config import TrainConfig
from .data import TrainImages, loader, set_epoch
from ..runtime.accuracy import topk_accuracy
from .evaluate import predict_logits_of

RESUME_NAME = "resume.safetensors"


@dataclass(frozen=True)
class TrainResult:
    checkpoint: Path
    metrics: dict


def train(cfg: TrainConfig) -> TrainResult:
    check_out(Path(cfg.out), cfg.resume, cfg.force)   # before any work: nothing of the user's is replaced
    device = _device(cfg.device)
    world = distributed.init_world(device)
    try:
        data = load_data(cfg.data, ReadOptions(skip_bad=cfg.skip_bad, class_map=cfg.class_map))
        distributed.share_keys(data, world)
        _check_data(cfg, data)
        torch.manual_seed(cfg.seed)
        model, preprocess, meta = _build_model(cfg, data)
        split = SplitSpec(seed=cfg.split_seed)
        train_set, eval_set = take_split(data, "train", split), take_split(data, "eval", split)
        warn_small(data, preprocess.size)   # after the split: a streamed folder's sizes come with its keys
        if len(train_set) < cfg.batch_size:
            raise BadInput(f"the train split of {cfg.data!r} has {len(train_set)} images, fewer than "
                           f"--batch-size {cfg.batch_size}; use a smaller batch")
        if cfg.batch_size % world.size:
            raise BadInput(f"--batch-size {cfg.batch_size} must divide evenly over {world.size} processes")
        regularize(model, cfg.drop_path, cfg.dropout)
        if cfg.qat:
            model, meta = _quantization_aware(cfg, model, preprocess, data, train_set, split, meta)
        images = TrainImages(train_set.images, train_set.labels, preprocess,
                             augment.policy(cfg.augment, model.config.img_size, cfg.hflip), cfg.seed)
        batches = loader(images, cfg.batch_size, world, cfg.workers, cfg.seed)
        cfg = replace(cfg, epochs=cfg.epochs_for(len(batches) // cfg.accum))   # auto -> a number, recorded
        # Decoded (when streamed) and preprocessed a batch at a time by every evaluation: the eval
        # split is never held as one array, raw or preprocessed.
        x_eval = Batches(eval_set.images, preprocess)
        return _fit(cfg, model.to(device), preprocess, data, meta, split, world, device,
                    batches, (x_eval, eval_set.labels))
    finally:
        distributed.shutdown(world)


def regularize(model: MlpMixer, drop_path: float, dropout: float) -> None:
    """Stochastic depth rising linearly to `drop_path` at the last block (timm's rule) and dropout
    inside every MLP; both act only in training mode, so inference and export are unchanged."""
    blocks = list(model.blocks)
    for i, block in enumerate(blocks):
        block.drop_path.p = drop_path * i / max(1, len(blocks) - 1)
        for mlp in (block.mlp_tokens, block.mlp_channels):
            mlp.drop.p = dropout


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
    if cfg.qat and not cfg.pretrained:
        raise BadInput("--qat fine-tunes a trained model for INT8: give --pretrained CHECKPOINT")


def _data_channels(data: ImageSet) -> int:
    return int(data.images[0].shape[-1])


def _build_model(cfg: TrainConfig, data: ImageSet) -> tuple[MlpMixer, Preprocess, dict]:
    """From scratch: the variant at the data's channel count. Fine-tuning: the pretrained weights
    with a new head when the class count differs, and their own input size and channels."""
    if cfg.pretrained:
        ck = load_pretrained(cfg.pretrained, num_classes=data.num_classes, img_size=cfg.img_size)
        notes = {k: ck.meta[k] for k in ("resolution_expanded", "head_replaced") if k in ck.meta}
        return ck.model, ck.preprocess, {"pretrained": ck.meta.get("source", {"path": cfg.pretrained}), **notes}
    model = create_model(cfg.model, num_classes=data.num_classes, img_size=cfg.img_size,
                         in_chans=_data_channels(data), gelu=cfg.gelu)
    return model, Preprocess.default(model.config.img_size, model.config.in_chans), {}


def _quantization_aware(cfg, model, preprocess, data, train_set, split, meta):
    """The INT8 export's recipe put into the model before fine-tuning (train/qat.py): calibration
    images drawn from the data's calib split (never trained on, held out from evaluation like it)."""
    calib = draw_calibration(data, preprocess, size=cfg.qat_calib_size, seed=cfg.seed, trained=train_set.keys,
                             split=split)
    model, recipe = qat.prepare(model, calib, DEFAULT_SMOOTH, cfg.qat_calib_method)
    return model, {**meta, "qat": recipe}


def _saved(model, meta: dict):
    """(model, metadata) as a checkpoint stores them: a quantization-aware model as ordinary layers
    holding its float weights, its learned ranges in `qat` (what export reads)."""
    if not qat.is_qat(model):
        return model, meta
    return qat.plain(model), {**meta, "qat": qat.describe(model, meta["qat"])}


# AdamW from scratch; SGD with momentum 0.9 is the paper's fine-tuning optimizer (--recipe finetune).
OPTIMIZERS = {"adamw": torch.optim.AdamW, "sgd": lambda groups, lr: torch.optim.SGD(groups, lr=lr, momentum=0.9)}


def _param_groups(model: nn.Module, weight_decay: float, lr: float, relative: bool = False):
    """No weight decay on biases, LayerNorm scales and a QAT model's range logarithms, as usual for
    transformers and Mixers. `relative` (QAT): each weight matrix its own group, its learning rate
    scaled by its RMS against the median matrix's, so every matrix moves by the same fraction of
    itself. Adam's step is absolute (about lr per element whatever the weight's size): on a model
    whose massive hidden units come with fc2 columns a thousand times smaller (the function-preserving
    form they take, calibration/split.inject_massive_units) the first QAT epoch rewrote those columns
    (eval top-1 96 -> 81 %), and the fine-tune ended 2.5 points below its start (RESULTS 15)."""
    decay = [p for n, p in model.named_parameters() if p.ndim > 1]
    no_decay = [p for n, p in model.named_parameters() if p.ndim <= 1]
    rest = {"params": no_decay, "weight_decay": 0.0, "lr": lr}
    if not relative or not decay:
        return [{"params": decay, "weight_decay": weight_decay, "lr": lr}, rest]
    rms = [float(p.detach().pow(2).mean().sqrt()) for p in decay]
    ref = sorted(rms)[len(rms) // 2]
    return [{"params": [p], "weight_decay": weight_decay, "lr": lr * r / max(ref, 1e-12)}
            for p, r in zip(decay, rms)] + [rest]


def _schedule(optimizer, warmup_steps: int, total_steps: int):
    def factor(step: int) -> float:
        if step < warmup_steps:
            return (step + 1) / warmup_steps
        t = (step - warmup_steps) / max(1, total_steps - warmup_steps)
        return 0.5 * (1.0 + math.cos(math.pi * min(1.0, t)))
    return torch.optim.lr_scheduler.LambdaLR(optimizer, factor)


def _fit(cfg, model, preprocess, data, meta, split, world, device, batches, eval_xy) -> TrainResult:
    steps_per_epoch = len(batches) // cfg.accum   # optimizer steps; full batches only
    total = steps_per_epoch * cfg.epochs
    optimizer = OPTIMIZERS[cfg.optimizer](_param_groups(model, cfg.weight_decay, cfg.lr, relative=cfg.qat), lr=cfg.lr)
    scheduler = _schedule(optimizer, max(1, int(cfg.warmup_epochs * steps_per_epoch)), total)
    ema = _ema(model, cfg, total)
    out = Path(cfg.out)
    start_epoch, history = _maybe_resume(cfg, out, model, optimizer, scheduler, ema)
    net = distributed.wrap(model, world, device)
    loss_fn = nn.CrossEntropyLoss(label_smoothing=cfg.label_smoothing)   # takes mixup's soft targets too
    mix = augment.mixing(cfg.mixup, cfg.cutmix, model.config.num_classes)
    autocast = _autocast(cfg.precision, device)
    # What every checkpoint this run writes (last, best, EMA) says of its training, computed once.
    about = {**meta, "data": cfg.data, "split": split.to_dict(), "images": trained_images(data, split),
             "train": cfg.to_dict()}
    started = time.perf_counter()
    for epoch in range(start_epoch, cfg.epochs):
        set_epoch(batches, epoch)
        torch.manual_seed(cfg.seed * 100_003 + epoch)   # drop path and mixing draws, resumable per epoch
        bar = progress(batches, desc=f"epoch {epoch + 1}/{cfg.epochs}", enabled=world.is_main)
        loss_sum, correct, seen = 0.0, 0, 0
        net.train()
        for i, (xb, yb) in enumerate(bar):
            xb, yb = xb.to(device), yb.to(device)                 # (local, C, H, W), (local,)
            target = yb
            if mix is not None:                                   # soft targets (local, K)
                xb, target = mix(xb, yb)
            with autocast:
                logits = net(xb)                                    # (local, K)
            loss = loss_fn(logits.float(), target)
            (loss / cfg.accum).backward()                           # DDP averages gradients over processes
            if (i + 1) % cfg.accum == 0:
                _step(cfg, model, optimizer, scheduler, ema)
            loss_sum += loss.item() * len(yb)
            correct += int((logits.argmax(1) == yb).sum())
            seen += len(yb)
            bar.set_postfix(loss=f"{loss_sum / seen:.4f}", acc=f"{correct / seen:.3f}",
                            lr=f"{scheduler.get_last_lr()[0]:.2e}")
        bar.close()
        metrics = {"epoch": epoch + 1, "train_loss": loss_sum / seen, "train_top1": correct / seen,
                   "lr": scheduler.get_last_lr()[0], "wall_s": round(time.perf_counter() - started, 2)}
        if (epoch + 1) % cfg.eval_every == 0 or epoch + 1 == cfg.epochs:
            metrics.update(_evaluate(model, ema, eval_xy))
        history.append(metrics)
        if world.is_main:
            _save_resume(out, cfg, model, optimizer, scheduler, epoch + 1, history, ema)
            _save_progress(out, model, preprocess, data.classes, about, history)
        distributed.barrier(world)
    final = {**history[-1], "eval_n": int(len(eval_xy[1])), "train_n": len(batches.dataset),
             "precision": "bf16" if uses_bf16(cfg.precision, device) else "fp32",
             "wall_s": round(time.perf_counter() - started, 2), "processes": world.size}
    path = out / "model.safetensors"
    if world.is_main:
        full = {**about, "metrics": final, "history": history}
        last, meta = _saved(model.cpu(), full)
        path = save_checkpoint(out, last, preprocess, data.classes, meta)
        if ema is not None:
            averaged, meta = _saved(ema.module.cpu(), {**full, "weights": "exponential moving average",
                                                       "ema_decay": _ema_decay(cfg, total)})
            save_checkpoint(out / "ema", averaged, preprocess, data.classes, meta)
        _plot_curves(out, history)
    distributed.barrier(world)
    return TrainResult(checkpoint=path, metrics=final)


def _step(cfg, model, optimizer, scheduler, ema) -> None:
    if cfg.clip_grad > 0:
        nn.utils.clip_grad_norm_(model.parameters(), cfg.clip_grad)
    optimizer.step()
    scheduler.step()
    optimizer.zero_grad(set_to_none=True)
    if ema is not None:
        ema.update_parameters(model)


def _evaluate(model, ema, eval_xy) -> dict:
    """Eval top-1 / top-5 of the model and its EMA, in one pass over the images (a streamed eval
    split is decoded and preprocessed once for both)."""
    x, y = eval_xy
    named = {"eval": model, **({"ema_eval": ema.module} if ema is not None else {})}
    logits = predict_logits_of(list(named.values()), x)
    return {f"{name}_{k}": v for name, out in zip(named, logits) for k, v in topk_accuracy(out, y).items()}


def _ema_decay(cfg, total_steps: int) -> float:
    """A horizon of a tenth of the run: 1 - 10 / steps (timm's fixed 0.9998 suits 300 ImageNet
    epochs, not a few hundred steps on a small set)."""
    return cfg.ema_decay if cfg.ema_decay is not None else max(0.0, 1.0 - 10.0 / max(total_steps, 10))


def _ema(model, cfg, total_steps: int):
    if not cfg.ema:
        return None
    from torch.optim.swa_utils import AveragedModel, get_ema_multi_avg_fn

    return AveragedModel(model, multi_avg_fn=get_ema_multi_avg_fn(_ema_decay(cfg, total_steps)))


def _autocast(precision: str, device: torch.device):
    """bf16 autocast: asked for, or by default (`auto`) where the hardware computes in bf16: a CUDA
    GPU that has it, or a CPU with bf16 instructions (AVX512-BF16, AMX, Arm BF16). Measured on an
    AVX512-BF16 CPU: B/16 3.6x faster with 32 % less memory, T/4 1.34x, and T/4 on MNIST as
    accurate (docs/training.md). On other CPUs bf16 is emulated and slower: fp32."""
    from contextlib import nullcontext

    return torch.autocast(device.type, dtype=torch.bfloat16) if uses_bf16(precision, device) else nullcontext()


def uses_bf16(precision: str, device: torch.device) -> bool:
    if precision != "auto":
        return precision == "bf16"
    if device.type == "cuda":
        return torch.cuda.is_bf16_supported()
    return bool({*X86_BF16, "bf16"} & set(isa_flags()))   # "bf16": Arm's FEAT_BF16


def _save_progress(out: Path, model, preprocess, classes, about: dict, history: list) -> None:
    """metrics.jsonl after every epoch; best/ whenever the eval top-1 improves."""
    atomic_write_bytes(out / "metrics.jsonl", "".join(json.dumps(h) + "\n" for h in history).encode())
    scores = [h.get("eval_top1") for h in history]
    if scores[-1] is not None and scores[-1] >= max(s for s in scores if s is not None):
        from copy import deepcopy

        best, meta = _saved(deepcopy(model).cpu(), {
            **about, "metrics": history[-1], "weights": f"best eval top-1, epoch {history[-1]['epoch']}"})
        save_checkpoint(out / "best", best, preprocess, classes, meta)


def _plot_curves(out: Path, history: list) -> None:
    """curves.png: training loss and eval top-1 (model and EMA) per epoch; skipped without matplotlib."""
    try:
        import matplotlib
    except ImportError:
        return
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    epochs = [h["epoch"] for h in history]
    fig, (a, b) = plt.subplots(1, 2, figsize=(9, 3.4))
    a.plot(epochs, [h["train_loss"] for h in history], marker="o")
    a.set(xlabel="epoch", ylabel="training loss", title="training loss")
    for key, label in (("eval_top1", "model"), ("ema_eval_top1", "EMA")):
        pts = [(h["epoch"], 100 * h[key]) for h in history if h.get(key) is not None]
        if pts:
            b.plot(*zip(*pts), marker="o", label=label)
    b.set(xlabel="epoch", ylabel="eval top-1 (%)", title="held-out eval split")
    b.legend()
    fig.tight_layout()
    import io

    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=100)
    plt.close(fig)
    atomic_write_bytes(out / "curves.png", buf.getvalue())


RUN_FILES = (WEIGHTS_NAME, "model.json", RESUME_NAME, "metrics.jsonl")   # what makes a folder a run


def check_out(out: Path, resume: bool, force: bool) -> None:
    """--out must be new, empty, the run being resumed, or given with --force: a trained model was
    once replaced by a run on other data without a word, and a folder of the user's images would
    get model files among them."""
    if force or not out.is_dir() or not any(out.iterdir()):
        return
    held = sorted(p.name for p in out.iterdir())
    run = [name for name in RUN_FILES if (out / name).exists()]
    if run and resume:
        return
    if run:
        raise BadInput(f"--out {out} holds another training run ({', '.join(run)}); pass --resume to continue "
                       f"it, --force to replace it, or give a new folder")
    shown = ", ".join(held[:3]) + (f" and {len(held) - 3} more" if len(held) > 3 else "")
    raise BadInput(f"--out {out} is not empty and holds no training run ({shown}); give a new or empty folder, "
                   f"or --force to write there anyway")


def trained_images(data: ImageSet, split: SplitSpec) -> dict:
    """The training data by content: its fingerprint, the train split's keys (trained on) and the
    calib split's (kept for calibration), so every later stage holds both out of evaluation wherever
    and however the same images arrive."""
    trained, calib = take_split(data, "train", split), take_split(data, "calib", split)
    return {"data": data.describe(), "n_trained": len(trained), "trained": pack_keys(trained.keys),
            "calibration_split": pack_keys(calib.keys)}


def _save_resume(out: Path, cfg, model, optimizer, scheduler, epoch: int, history: list, ema=None) -> None:
    """Weights, EMA and optimizer moments as safetensors, counters as JSON metadata: no pickles."""
    from safetensors.torch import save

    out.mkdir(parents=True, exist_ok=True)
    tensors = {f"model.{k}": v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
    if ema is not None:
        tensors.update({f"ema.{k}": v.detach().cpu().contiguous() for k, v in ema.state_dict().items()})
    opt = optimizer.state_dict()
    for pid, state in opt["state"].items():
        for k, v in state.items():
            tensors[f"opt.{pid}.{k}"] = torch.as_tensor(v).detach().cpu().contiguous()
    groups = [{k: v for k, v in g.items() if k != "params"} | {"params": g["params"]} for g in opt["param_groups"]]
    meta = {"epoch": epoch, "param_groups": groups, "scheduler": scheduler.state_dict(),
            "history": history, "train": cfg.to_dict()}
    atomic_write_bytes(out / RESUME_NAME, save(tensors, metadata={"mixer_edge_resume": json.dumps(meta)}))


def _maybe_resume(cfg, out: Path, model, optimizer, scheduler, ema=None) -> tuple[int, list]:
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
    if ema is not None:
        ema.load_state_dict({k[4:]: v for k, v in tensors.items() if k.startswith("ema.")})
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
            "clip_grad", "seed", "img_size", "gelu", "split_seed", "augment", "hflip", "mixup", "cutmix",
            "drop_path", "dropout", "ema", "ema_decay", "accum", "precision", "optimizer", "qat", "qat_calib_size", "qat_calib_method")
    diff = {k: (saved.get(k), getattr(cfg, k)) for k in keys if saved.get(k) != getattr(cfg, k)}
    if diff:
        raise BadInput(f"cannot resume from {path}: settings differ from the saved run "
                       + ", ".join(f"{k}: saved {a!r}, now {b!r}" for k, (a, b) in diff.items()))
