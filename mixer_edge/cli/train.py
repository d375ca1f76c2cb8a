"""`mixer-edge train` and `mixer-edge eval`."""
from __future__ import annotations

import argparse
import os
from pathlib import Path

from ..errors import name_type
from ..runtime.errors import EXIT_OK
from ..train.config import AUTO_EPOCHS, AUTO_STEPS, QAT_RECIPE, RECIPES, TrainConfig, with_recipe
from .common import add_threads_argument, _data_help, output_file, output_folder
from .reading import add_reading_arguments, read_options


# ---- train -------------------------------------------------------------------------------------

def _epochs(value: str) -> int | None:
    """--epochs: a positive whole number, or auto (None: TrainConfig.epochs_for decides)."""
    if value.strip().lower() == "auto":
        return None
    try:
        return int(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number or auto, got {value!r}") from None


def add_train_arguments(p: argparse.ArgumentParser) -> None:
    T = TrainConfig
    p.add_argument("--data", required=True, help=_data_help())
    add_reading_arguments(p)
    p.add_argument("--model", default=T.model, help=f"variant name (see `mixer-edge models`); default {T.model}")
    p.add_argument("--pretrained", default=None,
                   help="start from weights: official Google .npz, timm .pth/.bin/.safetensors, or a "
                        "mixer-edge checkpoint; the head is replaced when the class count differs")
    p.add_argument("--recipe", type=name_type("recipe", RECIPES), default="scratch",
                   help="scratch (default: AdamW, the options below) or finetune: the paper's fine-tuning recipe, "
                        "SGD with momentum 0.9, cosine schedule, gradient clipping at norm 1, no weight decay, "
                        "--lr 0.01 unless given; with --pretrained and --img-size K times the weights' size, "
                        "the token mixing is expanded block-diagonally (paper, Appendix C)")
    p.add_argument("--qat", action="store_true",
                   help="quantization-aware fine-tuning of --pretrained for INT8: the export's recipe (smoothing, "
                        "per-channel weights, per-tensor activations, float LayerNorm and residuals) simulated while "
                        "training, ranges learned and saved; export then uses them instead of calibrating. Sets "
                        + ", ".join("--no-ema" if k == "ema" else f"--{k.replace('_', '-')} {v}"
                                    for k, v in QAT_RECIPE.items() if k != "qat")
                        + " unless given")
    p.add_argument("--qat-calib-size", type=int, default=T.qat_calib_size,
                   help=f"--qat: calib-split images that smooth the model and start the ranges (default {T.qat_calib_size})")
    p.add_argument("--qat-calib-method", default=None,
                   help="--qat: the range estimator the starting ranges come from, as --calib-method of export "
                        "(minmax, percentile, entropy, mse; default the export's, mse)")
    p.add_argument("--epochs", type=_epochs, default=T.epochs,
                   help=f"passes over the train split, or auto (the default): enough passes for about {AUTO_STEPS:,} "
                        f"optimizer steps, {AUTO_EPOCHS[0]} to {AUTO_EPOCHS[1]} epochs. Small sets need many: T/4 "
                        "on 4,800 MNIST digits reaches 96.3 %% in 8 epochs, 98.1-98.7 %% in 32 (docs/training.md)")
    p.add_argument("--batch-size", type=int, default=T.batch_size,
                   help=f"global batch size, split across processes (default {T.batch_size})")
    p.add_argument("--lr", type=float, default=T.lr, help=f"peak AdamW learning rate (default {T.lr})")
    p.add_argument("--weight-decay", type=float, default=T.weight_decay, help=f"AdamW weight decay (default {T.weight_decay})")
    p.add_argument("--warmup-epochs", type=float, default=T.warmup_epochs,
                   help=f"linear warm-up length before cosine decay (default {T.warmup_epochs})")
    p.add_argument("--label-smoothing", type=float, default=T.label_smoothing, help=f"(default {T.label_smoothing})")
    p.add_argument("--clip-grad", type=float, default=T.clip_grad, help=f"max gradient norm, 0 = off (default {T.clip_grad})")
    p.add_argument("--seed", type=int, default=T.seed, help="seed for initialisation and batch order")
    from ..train.augment import POLICIES

    reg = p.add_argument_group("regularization (defaults suit small data; each is recorded in the checkpoint)")
    reg.add_argument("--augment", type=name_type("augmentation", POLICIES), default=T.augment,
                     help="per-image augmentation (torchvision v2): auto (default: random affine + elastic "
                          "distortion below 64 px, random-resized crop + TrivialAugment above, none below 16 px), geometry, shift, "
                          "randaugment, trivialaugment, none")
    reg.add_argument("--hflip", action="store_true", help="also flip horizontally (off: it breaks digits and text)")
    reg.add_argument("--mixup", type=float, default=T.mixup, help="mixup alpha, 0 = off (default 0)")
    reg.add_argument("--cutmix", type=float, default=T.cutmix, help="cutmix alpha, 0 = off (default 0)")
    reg.add_argument("--drop-path", type=float, default=T.drop_path,
                     help=f"stochastic depth at the last block, linearly less before (default {T.drop_path})")
    reg.add_argument("--dropout", type=float, default=T.dropout, help="dropout inside every MLP (default 0)")
    reg.add_argument("--no-ema", dest="ema", action="store_false",
                     help="no moving average of the weights (default: kept, evaluated, saved in OUT/ema)")
    reg.add_argument("--ema-decay", type=float, default=None,
                     help="EMA decay (default: 1 - 10 / optimizer steps, a horizon of a tenth of the run)")
    p.add_argument("--accum", type=int, default=T.accum, help="micro-batches per optimizer step (default 1)")
    p.add_argument("--precision", type=name_type("precision", ["auto", "fp32", "bf16"]), default=T.precision,
                   help="auto (default: bf16 autocast where the hardware computes in bf16: a CUDA GPU that has it, "
                        "a CPU with AVX512-BF16 / AMX / Arm BF16; else fp32), fp32, bf16")
    p.add_argument("--workers", type=int, default=T.workers,
                   help="DataLoader worker processes decoding and augmenting images (default 0: in this one)")
    p.add_argument("--split-seed", type=int, default=T.split_seed,
                   help="seed of the 80/10/10 train/calibration/evaluation split (default 0)")
    p.add_argument("--img-size", type=int, default=None, help="input size (default: the variant's)")
    p.add_argument("--num-classes", type=int, default=None, help="check the data has this many classes")
    p.add_argument("--gelu", type=name_type("GELU form", ["exact", "tanh"]), default=T.gelu,
                   help="GELU form: exact or tanh (default exact)")
    p.add_argument("--device", default=T.device, help="auto | cpu | cuda (default auto)")
    p.add_argument("--out", required=True, help="output folder for model.safetensors and model.json")
    p.add_argument("--resume", action="store_true", help="continue from OUT/resume.safetensors (last finished epoch)")
    p.add_argument("--force", action="store_true",
                   help="write into an --out that holds another run (replacing it) or other files; without it such "
                        "a folder is refused before any work (a new or empty folder, or --resume, needs no --force)")
    p.add_argument("--nproc", type=int, default=1,
                   help="data-parallel processes on this machine, joined as torchrun joins them (gloo on CPU, "
                        "NCCL on GPU); an error all of them meet is printed once; default 1")
    add_threads_argument(p)


def train_config(args: argparse.Namespace) -> TrainConfig:
    """Map CLI options to the library's TrainConfig, one field each, then the recipe's settings
    (train/config.with_recipe) for every option left at its default: an option given explicitly wins."""
    cfg = TrainConfig(
        data=args.data, out=args.out, model=args.model, pretrained=args.pretrained, epochs=args.epochs,
        batch_size=args.batch_size, lr=args.lr, weight_decay=args.weight_decay,
        warmup_epochs=args.warmup_epochs, label_smoothing=args.label_smoothing, clip_grad=args.clip_grad,
        seed=args.seed, img_size=args.img_size, num_classes=args.num_classes, gelu=args.gelu,
        split_seed=args.split_seed, resume=args.resume, force=args.force, device=args.device, augment=args.augment, hflip=args.hflip,
        mixup=args.mixup, cutmix=args.cutmix, drop_path=args.drop_path, dropout=args.dropout, ema=args.ema,
        ema_decay=args.ema_decay, accum=args.accum, precision=args.precision, workers=args.workers,
        qat_calib_size=args.qat_calib_size, qat_calib_method=args.qat_calib_method, skip_bad=args.skip_bad,
        class_map=args.class_map)
    return with_recipe(cfg, args.recipe, args.qat)


def run_train(args: argparse.Namespace) -> int:
    output_folder(args.out, "--out")
    if args.nproc > 1 and int(os.environ.get("WORLD_SIZE", "1")) == 1:
        return _launch(args)
    from ..train import train

    result = train(train_config(args))
    if int(os.environ.get("RANK", "0")) == 0:
        m, out = result.metrics, result.checkpoint.parent
        ema = f" (EMA {m['ema_eval_top1']:.4f})" if "ema_eval_top1" in m else ""
        print(f"eval top-1 {m.get('eval_top1', float('nan')):.4f}{ema}  top-5 {m.get('eval_top5', float('nan')):.4f}  "
              f"on {m['eval_n']} held-out images; {m['wall_s']:.1f} s\ncheckpoints: {out} (last), {out / 'best'}"
              f"{', ' + str(out / 'ema') if ema else ''}; metrics: {out / 'metrics.jsonl'}, {out / 'curves.png'}")
    return EXIT_OK


def _launch(args: argparse.Namespace) -> int:
    """Re-run this same train command in --nproc processes, minus --nproc (the children must not relaunch)."""
    from ..train.distributed import launch

    return launch(args.nproc, _drop_option(args.argv[args.argv.index("train") + 1:], "--nproc"))


def _drop_option(argv: list[str], option: str) -> list[str]:
    """argv without 'OPTION VALUE' and 'OPTION=VALUE'."""
    out, i = [], 0
    while i < len(argv):
        if argv[i] == option:
            i += 2
            continue
        if not argv[i].startswith(option + "="):
            out.append(argv[i])
        i += 1
    return out


# ---- eval --------------------------------------------------------------------------------------

def add_eval_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("checkpoint", help="a mixer-edge checkpoint (model.safetensors or its folder)")
    p.add_argument("--data", required=True, help=_data_help())
    add_reading_arguments(p)
    p.add_argument("--images", default="held-out", choices=["held-out", "all"],
                   help="held-out (default): only images the model was not trained on and that training did not keep "
                        "for calibration, recognised by content wherever they lie; all: every image of DATA")
    p.add_argument("--json", default=None, help="also write the result as JSON to this path")
    add_threads_argument(p)


def run_eval(args: argparse.Namespace) -> int:
    output_file(args.json, "--json")
    from ..data.dataset import warn_small
    from ..data.sources import load_data   # torch: imported when the command runs, not for --help
    from ..models.checkpoint import load_checkpoint
    from ..runtime.artifact import atomic_write_json
    from ..runtime.images import shown
    from ..train.evaluate import evaluate

    ck = load_checkpoint(args.checkpoint)
    data = load_data(args.data, read_options(args))
    part = data.without(ck.reserved_keys) if args.images == "held-out" else data
    warn_small(part, ck.preprocess.size)
    result = {"checkpoint": shown(ck.path), "checkpoint_sha256": ck.sha256,
              "images": part.describe(selection=args.images, excluded=len(data) - len(part)), **evaluate(ck, part)}
    print(f"top-1 {result['top1']:.4f}  top-5 {result['top5']:.4f}  on {result['n']} images of {shown(args.data)} "
          f"({'held out' if args.images == 'held-out' else 'all'}: {len(data) - len(part)} images the model was trained "
          f"on or that were kept for calibration left out; labels {result['labels']})")
    if args.json:
        atomic_write_json(Path(args.json), result)
    return EXIT_OK
