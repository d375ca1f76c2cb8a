"""The command line: the only place that parses arguments, prints for people, and exits.

Library code raises MixerEdgeError; main() turns it into one 'error: ...' line and exit code 2.
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from .errors import BadInput, MixerEdgeError

EXIT_USER_ERROR = 2
EXIT_INTERRUPTED = 130


@dataclass(frozen=True)
class Command:
    name: str
    help: str
    add_arguments: Callable[[argparse.ArgumentParser], None]
    run: Callable[[argparse.Namespace], int]


def _data_help() -> str:
    return ("data spec: digits (built in, 8x8), mnist:DIR (IDX files), cifar10:DIR (binary or python "
            "batches), imagefolder:DIR (one sub-folder per class), folder:DIR (unlabeled images)")


# ---- train -------------------------------------------------------------------------------------

def add_train_arguments(p: argparse.ArgumentParser) -> None:
    from .train.config import TrainConfig as T

    p.add_argument("--data", required=True, help=_data_help())
    p.add_argument("--model", default=T.model, help=f"variant name (see `mixer-edge models`); default {T.model}")
    p.add_argument("--pretrained", default=None,
                   help="start from weights: official Google .npz, timm .pth/.bin/.safetensors, or a "
                        "mixer-edge checkpoint; the head is replaced when the class count differs")
    p.add_argument("--epochs", type=int, default=T.epochs, help=f"passes over the train split (default {T.epochs})")
    p.add_argument("--batch-size", type=int, default=T.batch_size,
                   help=f"global batch size, split across processes (default {T.batch_size})")
    p.add_argument("--lr", type=float, default=T.lr, help=f"peak AdamW learning rate (default {T.lr})")
    p.add_argument("--weight-decay", type=float, default=T.weight_decay, help=f"AdamW weight decay (default {T.weight_decay})")
    p.add_argument("--warmup-epochs", type=float, default=T.warmup_epochs,
                   help=f"linear warm-up length before cosine decay (default {T.warmup_epochs})")
    p.add_argument("--label-smoothing", type=float, default=T.label_smoothing, help=f"(default {T.label_smoothing})")
    p.add_argument("--clip-grad", type=float, default=T.clip_grad, help=f"max gradient norm, 0 = off (default {T.clip_grad})")
    p.add_argument("--seed", type=int, default=T.seed, help="seed for initialisation and batch order")
    p.add_argument("--split-seed", type=int, default=T.split_seed,
                   help="seed of the 80/10/10 train/calibration/evaluation split (default 0)")
    p.add_argument("--img-size", type=int, default=None, help="input size (default: the variant's)")
    p.add_argument("--num-classes", type=int, default=None, help="check the data has this many classes")
    p.add_argument("--gelu", choices=["exact", "tanh"], default=T.gelu, help="GELU form (default exact)")
    p.add_argument("--device", default=T.device, help="auto | cpu | cuda (default auto)")
    p.add_argument("--out", required=True, help="output folder for model.safetensors and model.json")
    p.add_argument("--resume", action="store_true", help="continue from OUT/resume.safetensors (last finished epoch)")
    p.add_argument("--nproc", type=int, default=1,
                   help="data-parallel processes via torchrun (gloo on CPU, NCCL on GPU); default 1")


def train_config(args: argparse.Namespace):
    """Map CLI options to the library's TrainConfig, one field each."""
    from .train.config import TrainConfig

    return TrainConfig(
        data=args.data, out=args.out, model=args.model, pretrained=args.pretrained, epochs=args.epochs,
        batch_size=args.batch_size, lr=args.lr, weight_decay=args.weight_decay,
        warmup_epochs=args.warmup_epochs, label_smoothing=args.label_smoothing, clip_grad=args.clip_grad,
        seed=args.seed, img_size=args.img_size, num_classes=args.num_classes, gelu=args.gelu,
        split_seed=args.split_seed, resume=args.resume, device=args.device)


def run_train(args: argparse.Namespace) -> int:
    if args.nproc > 1 and int(os.environ.get("WORLD_SIZE", "1")) == 1:
        return _launch_torchrun(args)
    from .train import train

    result = train(train_config(args))
    if int(os.environ.get("RANK", "0")) == 0:
        m = result.metrics
        print(f"eval top-1 {m.get('eval_top1', float('nan')):.4f}  top-5 {m.get('eval_top5', float('nan')):.4f}  "
              f"on {m['eval_n']} images; {m['wall_s']:.1f} s; checkpoint: {result.checkpoint}")
    return 0


def _launch_torchrun(args: argparse.Namespace) -> int:
    """Re-run this same train command under torchrun, minus --nproc (the children must not relaunch)."""
    from .train.distributed import launch_command

    child = _drop_option(args.argv[args.argv.index("train") + 1:], "--nproc")
    return subprocess.call(launch_command(args.nproc, child))


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
    p.add_argument("--split", default="auto", choices=["auto", "all", "train", "calib", "eval"],
                   help="which part of the data: auto = the held-out eval split when DATA is the data "
                        "the model was trained on, else all of it")
    p.add_argument("--json", default=None, help="also write the result as JSON to this path")


def run_eval(args: argparse.Namespace) -> int:
    from .data.dataset import SplitSpec, take_split
    from .data.sources import load_data
    from .models.checkpoint import atomic_write_json, load_checkpoint
    from .train.evaluate import evaluate

    ck = load_checkpoint(args.checkpoint)
    data = load_data(args.data)
    split = args.split
    if split == "auto":
        split = "eval" if ck.meta.get("data") == args.data else "all"
    spec = SplitSpec(**ck.meta["split"]) if "split" in ck.meta else SplitSpec()
    result = {"checkpoint": str(ck.path), "checkpoint_sha256": ck.sha256, "data": args.data, "split": split,
              **evaluate(ck, take_split(data, split, spec))}
    print(f"top-1 {result['top1']:.4f}  top-5 {result['top5']:.4f}  on {result['n']} images "
          f"({args.data}, split {split})")
    if args.json:
        atomic_write_json(Path(args.json), result)
    return 0


# ---- models ------------------------------------------------------------------------------------

def run_models(args: argparse.Namespace) -> int:
    from .models.mixer import MlpMixer, count_params
    from .models.variants import VARIANTS, variant_config

    import torch
    print(f"{'variant':8} {'layers':>6} {'patch':>5} {'C':>5} {'D_S':>5} {'D_C':>5} {'size':>5} {'params@1000':>13}  note")
    for name, v in VARIANTS.items():
        with torch.device("meta"):
            n = count_params(MlpMixer(variant_config(name)))
        print(f"{name:8} {v.num_layers:>6} {v.patch_size:>5} {v.hidden_dim:>5} {v.tokens_mlp_dim:>5} "
              f"{v.channels_mlp_dim:>5} {v.img_size:>5} {n:>13,}  {v.note}")
    return 0


# ---- demo --------------------------------------------------------------------------------------

def add_demo_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--out", default="mixer-edge-demo", help="output folder (default ./mixer-edge-demo)")
    p.add_argument("--epochs", type=int, default=30, help="training epochs on digits (default 30)")


def run_demo(args: argparse.Namespace) -> int:
    from .demo import run

    summary_path = run(Path(args.out), epochs=args.epochs, say=print)
    print(f"summary: {summary_path}")
    return 0


COMMANDS = [
    Command("train", "train or fine-tune a Mixer and save a checkpoint", add_train_arguments, run_train),
    Command("eval", "top-1 / top-5 of a checkpoint on a data set", add_eval_arguments, run_eval),
    Command("models", "list the model variants", lambda p: None, run_models),
    Command("demo", "the whole flow on the built-in digits data, in about a minute", add_demo_arguments, run_demo),
]


def build_parser() -> argparse.ArgumentParser:
    from . import __version__

    parser = argparse.ArgumentParser(
        prog="mixer-edge",
        description="MLP-Mixer image classifiers from PyTorch to edge devices: train, export to "
                    "ONNX Runtime / OpenVINO / TensorRT / Core ML in FP32, FP16 or INT8, validate, benchmark.",
        epilog="Run `mixer-edge COMMAND --help` for each command's options.")
    parser.add_argument("--version", action="version", version=f"mixer-edge {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for cmd in COMMANDS:
        p = sub.add_parser(cmd.name, help=cmd.help, description=cmd.help)
        cmd.add_arguments(p)
        p.set_defaults(run=cmd.run)
    return parser


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    args = build_parser().parse_args(argv)
    args.argv = argv
    try:
        return args.run(args)
    except MixerEdgeError as e:
        print(f"error: {e}", file=sys.stderr)
        return EXIT_USER_ERROR
    except KeyboardInterrupt:
        print("interrupted; nothing half-written was kept", file=sys.stderr)
        return EXIT_INTERRUPTED


if __name__ == "__main__":
    sys.exit(main())
