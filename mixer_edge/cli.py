"""The command line: the only place that parses arguments, prints for people, and exits.

Library code raises MixerEdgeError; main() turns it into one 'error: ...' line and exit code 2.
"""
from __future__ import annotations

import argparse
import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from .errors import MixerEdgeError, name_type

from .runtime.edge_bench import EXIT_BAD_INPUT, EXIT_OK, EXIT_VALIDATION_FAILED  # noqa: E402


@dataclass(frozen=True)
class Command:
    name: str
    help: str
    add_arguments: Callable[[argparse.ArgumentParser], None]
    run: Callable[[argparse.Namespace], int]


def _data_help() -> str:
    from .data.sources import describe_sources  # the source registry is the one list of specs

    specs = [text.split("  ", 1) for _, text in describe_sources()]  # "mnist:DIR  MNIST-style ..."
    return "data spec: " + "; ".join(f"{spec} ({what.strip().rstrip('.')})" for spec, what in specs)


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
    p.add_argument("--augment-shift", type=int, default=T.augment_shift,
                   help="random translation of training images by up to this many pixels (default 0 = off)")
    p.add_argument("--split-seed", type=int, default=T.split_seed,
                   help="seed of the 80/10/10 train/calibration/evaluation split (default 0)")
    p.add_argument("--img-size", type=int, default=None, help="input size (default: the variant's)")
    p.add_argument("--num-classes", type=int, default=None, help="check the data has this many classes")
    p.add_argument("--gelu", type=name_type("GELU form", ["exact", "tanh"]), default=T.gelu,
                   help="GELU form: exact or tanh (default exact)")
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
        split_seed=args.split_seed, resume=args.resume, device=args.device, augment_shift=args.augment_shift)


def run_train(args: argparse.Namespace) -> int:
    if args.nproc > 1 and int(os.environ.get("WORLD_SIZE", "1")) == 1:
        return _launch_torchrun(args)
    from .train import train

    result = train(train_config(args))
    if int(os.environ.get("RANK", "0")) == 0:
        m = result.metrics
        print(f"eval top-1 {m.get('eval_top1', float('nan')):.4f}  top-5 {m.get('eval_top5', float('nan')):.4f}  "
              f"on {m['eval_n']} images; {m['wall_s']:.1f} s; checkpoint: {result.checkpoint}")
    return EXIT_OK


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
    from .data.dataset import take_split
    from .data.sources import load_data
    from .models.checkpoint import atomic_write_json, load_checkpoint
    from .train.evaluate import evaluate

    ck = load_checkpoint(args.checkpoint)
    data = load_data(args.data)
    split = args.split
    if split == "auto":
        split = "eval" if ck.meta.get("data") == args.data else "all"
    result = {"checkpoint": str(ck.path), "checkpoint_sha256": ck.sha256, "data": args.data, "split": split,
              **evaluate(ck, take_split(data, split, ck.split))}
    print(f"top-1 {result['top1']:.4f}  top-5 {result['top5']:.4f}  on {result['n']} images "
          f"({args.data}, split {split})")
    if args.json:
        atomic_write_json(Path(args.json), result)
    return EXIT_OK


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
    return EXIT_OK


# ---- targets -----------------------------------------------------------------------------------

def run_targets(args: argparse.Namespace) -> int:
    from .export.base import PRECISIONS
    from .export.registry import get_target, target_names

    # "exports here": the packages export and validation need on this machine are installed;
    # "runs here": the artifact's own runtime executes here (TensorRT needs a GPU, Core ML macOS).
    print(f"{'target':10} {'precisions':16} {'exports here':13} {'runs here':9}  runtime / note")
    for name in target_names():
        t = get_target(name)
        st = t.status()
        precisions = ",".join(p for p in PRECISIONS if p in t.capabilities.precisions)
        note = t.capabilities.runtime + (f"; {st.reason}" if st.reason else "")
        print(f"{name:10} {precisions:16} {'yes' if st.installed else 'no':13} {'yes' if st.runs_here else 'no':9}  {note}")
    return EXIT_OK


# ---- calib -------------------------------------------------------------------------------------

def add_calib_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("action", choices=["make"], help="make: draw a calibration set and save it")
    p.add_argument("checkpoint", help="the checkpoint whose preprocessing the set is made with")
    p.add_argument("--data", required=True, help=_data_help() + "; the training data's calib split is used "
                   "when DATA is what the model was trained on")
    p.add_argument("--size", type=int, default=300, help="number of images (default 300; < 100 warns)")
    p.add_argument("--seed", type=int, default=0, help="selection seed (default 0)")
    p.add_argument("--out", required=True, help="output .npz (a .json manifest with its sha256 is written beside it)")


def run_calib(args: argparse.Namespace) -> int:
    from .calibration import make_calibration
    from .calibration.sets import save_calibration
    from .export import load_model

    ck = load_model(args.checkpoint)
    calib = make_calibration(args.data, ck.preprocess, size=args.size, seed=args.seed,
                             training_data=ck.meta.get("data"), split=ck.split)
    _warn(calib.warnings)
    path = save_calibration(calib, args.out)
    print(f"calibration set: {len(calib)} images from {calib.source}, sha256 {calib.sha256[:16]}..., saved to {path}")
    return EXIT_OK


def _warn(lines) -> None:
    for line in lines:
        print(f"warning: {line}", file=sys.stderr)


# ---- export ------------------------------------------------------------------------------------

def add_export_arguments(p: argparse.ArgumentParser) -> None:
    from .export.base import CALIB_METHODS, PRECISIONS
    from .export.registry import target_names

    p.add_argument("checkpoint", help="a mixer-edge checkpoint (model.safetensors or its folder), or "
                   "timm / official Google weights")
    p.add_argument("--target", action="append", default=None,
                   help=f"one of {', '.join(target_names())}, or all; repeat or comma-separate for several "
                        "(default onnx)")
    p.add_argument("--precision", action="append", default=None,
                   help=f"{' | '.join(PRECISIONS)}; repeat or comma-separate for several (default fp32)")
    p.add_argument("--int8", action="store_true", help="shorthand for --precision int8")
    p.add_argument("--fp16", action="store_true", help="shorthand for --precision fp16")
    p.add_argument("--calib-data", default=None,
                   help="calibration images for INT8: a data spec (" + _data_help().split(": ", 1)[1] +
                        ") or a saved calib .npz from `mixer-edge calib make`")
    p.add_argument("--calib-size", type=int, default=300, help="calibration images to draw (default 300)")
    p.add_argument("--calib-seed", type=int, default=0, help="calibration selection seed (default 0)")
    p.add_argument("--calib-method", type=name_type("calibration method", CALIB_METHODS), default=None,
                   help="INT8 activation range estimator, the same for every target: minmax, percentile "
                        "(99.99th), entropy (TensorRT's KL search) or mse (least squared int8 error); "
                        "default mse, the most accurate on every target (docs/quantization.md)")
    p.add_argument("--smooth", type=float, default=0.5, metavar="ALPHA",
                   help="INT8: SmoothQuant strength for the exact LayerNorm -> channel-MLP and -> head folds, "
                        "0..1 (default 0.5)")
    p.add_argument("--no-smooth", dest="smooth", action="store_const", const=None,
                   help="INT8: quantize the model as it is, without smoothing")
    p.add_argument("--keep-float", default="", metavar="LAYERS",
                   help="INT8: comma-separated layers (module paths such as blocks.0.mlp_tokens.fc2, see "
                        "`mixer-edge quant inspect`) kept in float")
    p.add_argument("--max-drop", type=float, default=None, metavar="POINTS",
                   help="INT8, every target: keep the most sensitive layers in float, one at a time, until top-1 "
                        "on the validation images is at most POINTS percentage points below FP32 (e.g. 0.1); "
                        "says so when it cannot be met")
    p.add_argument("--coreml-input", type=name_type("Core ML input kind", ["tensor", "image"]), default="tensor",
                   help="Core ML: a float tensor input, or an image input with the preprocessing baked in "
                        "(needs one std for all channels); default tensor")
    p.add_argument("--coreml-target", default="iOS17",
                   help="Core ML minimum deployment target: iOS16, iOS17, iOS18, macOS13, macOS14, macOS15 "
                        "(default iOS17; W8A8 needs iOS17 / macOS14 or newer)")
    p.add_argument("--weights-only", action="store_true",
                   help="with --int8: quantize weights only, activations stay float (Core ML, OpenVINO)")
    p.add_argument("--eval-data", default=None,
                   help="images to validate on (its eval split when it is the training data); default: the "
                        "calibration set, else the checkpoint's own eval split")
    p.add_argument("--out", required=True, help="output folder; one sub-folder TARGET-PRECISION per artifact")
    p.add_argument("--force", action="store_true", help="replace output folders that are not mixer-edge artifacts")
    p.add_argument("--keep-invalid", action="store_true",
                   help="keep artifacts that fail validation (the exit code still says they failed)")


def _listed(values, default) -> tuple[str, ...]:
    items = [v.strip() for arg in (values or [default]) for v in arg.split(",") if v.strip()]
    return tuple(dict.fromkeys(items))


def export_plan(args: argparse.Namespace):
    """Map CLI options to the library's ExportPlan and ExportSpec, one field each."""
    from .export import ExportPlan
    from .export.base import ExportSpec
    from .export.registry import expand

    from .errors import resolve
    from .export.base import PRECISIONS

    listed = _listed(args.precision, "fp32") if args.precision or not (args.int8 or args.fp16) else ()
    precisions = list(dict.fromkeys(resolve("precision", p, PRECISIONS) for p in listed))
    precisions += [p for p, on in (("fp16", args.fp16), ("int8", args.int8)) if on and p not in precisions]
    spec = ExportSpec(calib_method=args.calib_method, smooth=args.smooth, float_layers=_listed([args.keep_float], ""),
                      max_drop=args.max_drop, coreml_input=args.coreml_input, coreml_target=args.coreml_target,
                      weights_only=args.weights_only)
    return ExportPlan(targets=tuple(expand(_listed(args.target, "onnx"))), precisions=tuple(precisions),
                      out_dir=args.out, calib_data=args.calib_data, calib_size=args.calib_size,
                      calib_seed=args.calib_seed, eval_data=args.eval_data, force=args.force,
                      keep_invalid=args.keep_invalid, spec=spec)


def validation_line(o) -> str:
    v = o.validation
    if v.get("skipped"):
        return f"{o.dest.name:16} validation skipped: {v['skipped']}"
    acc = f" top-1 {v['top1']:.4f} (PyTorch {v['reference_top1']:.4f})" if "top1" in v else ""
    verdict = "ok" if o.passed else "FAILED: " + "; ".join(o.problems) + ("" if o.artifact else " (discarded)")
    return (f"{o.dest.name:16} {verdict:6} max|diff| {v['max_abs_diff']:.2e}  agree {v['top1_agreement']:.4f}  "
            f"cos {v['cosine']:.5f}  SQNR {v['sqnr_db']:.1f} dB{acc}  [{v['samples']} images]")


def run_export(args: argparse.Namespace) -> int:
    from .export import run_plan

    outcomes = run_plan(args.checkpoint, export_plan(args), on_done=lambda o: print(validation_line(o)))
    for o in outcomes:
        for note in o.artifact.manifest["export"].get("notes", []) if o.artifact else []:
            print(f"note: {o.dest.name}: {note}", file=sys.stderr)
    failed = [o for o in outcomes if not o.passed]
    if failed:
        print(f"error: {len(failed)} of {len(outcomes)} artifacts failed validation against PyTorch FP32",
              file=sys.stderr)
        return EXIT_VALIDATION_FAILED
    print(f"{len(outcomes)} artifact(s) validated and written under {args.out}")
    return EXIT_OK


# ---- predict -------------------------------------------------------------------------------------

def add_predict_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("model", help="an artifact folder (run by its runtime) or a checkpoint (run by PyTorch)")
    p.add_argument("images", nargs="+", metavar="IMAGE_OR_FOLDER",
                   help="image files (png/jpg/jpeg/bmp) or folders of them")
    p.add_argument("--top-k", type=int, default=5, help="classes shown per image (default 5)")
    p.add_argument("--json", default=None, help="also write the predictions here as JSON (atomically)")


def run_predict(args: argparse.Namespace) -> int:
    from .predict import predict

    doc = predict(args.model, args.images, args.top_k)
    from .runtime.edge_bench import format_predictions

    print(format_predictions(doc))
    if args.json:
        from .models.checkpoint import atomic_write_json

        atomic_write_json(Path(args.json), doc)
    return EXIT_OK


# ---- demo --------------------------------------------------------------------------------------

def add_demo_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--out", default="mixer-edge-demo", help="output folder (default ./mixer-edge-demo)")
    p.add_argument("--epochs", type=int, default=20, help="training epochs on digits (default 20)")


def run_demo(args: argparse.Namespace) -> int:
    from .demo import run

    result = run(Path(args.out), epochs=args.epochs, say=print,
                 on_export=lambda o: print("      " + validation_line(o)))
    print(f"summary: {result.path}")
    if result.failed:
        print(f"error: {len(result.failed)} artifact(s) failed validation: {', '.join(result.failed)}",
              file=sys.stderr)
        return EXIT_VALIDATION_FAILED
    return EXIT_OK


def _lazy(module: str, name: str):
    """A command function imported when called, so `mixer-edge --help` stays fast."""
    def call(arg):
        import importlib

        return getattr(importlib.import_module(f"mixer_edge.{module}"), name)(arg)
    return call


COMMANDS = [
    Command("train", "train or fine-tune a Mixer and save a checkpoint", add_train_arguments, run_train),
    Command("eval", "top-1 / top-5 of a checkpoint on a data set", add_eval_arguments, run_eval),
    Command("models", "list the model variants", lambda p: None, run_models),
    Command("targets", "list export targets, their precisions and whether they run here", lambda p: None, run_targets),
    Command("predict", "top classes of images, from an artifact or a checkpoint", add_predict_arguments, run_predict),
    Command("calib", "make a reusable calibration set (.npz + manifest)", add_calib_arguments, run_calib),
    Command("export", "export a checkpoint to validated artifacts per target and precision", add_export_arguments, run_export),
    Command("quant", "INT8 analysis: `quant inspect` names the layers where quantization error enters",
            _lazy("export.quant_cli", "add_quant_arguments"), _lazy("export.quant_cli", "run_quant")),
    Command("bench", "latency, throughput, memory and accuracy of artifacts and checkpoints",
            _lazy("bench.cli_commands", "add_bench_arguments"), _lazy("bench.cli_commands", "run_bench")),
    Command("report", "merge bench results from one or many devices into report.md / report.html",
            _lazy("bench.cli_commands", "add_report_arguments"), _lazy("bench.cli_commands", "run_report")),
    Command("trt", "TensorRT on the device: build the engine of a TensorRT artifact and benchmark it",
            _lazy("export.trt_cli", "add_trt_arguments"), _lazy("export.trt_cli", "run_trt")),
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
    parser.add_argument("--verbose", action="store_true",
                        help="show other packages' warnings, logs and progress bars (coremltools, NNCF, torch); "
                             "otherwise their output goes to ~/.cache/mixer-edge/third-party.log ($MIXER_EDGE_LOG)")
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
    from .noise import configure

    configure(args.verbose)
    from .runtime.edge_bench import error_boundary

    return error_boundary(lambda: args.run(args), ERRORS, "interrupted; nothing half-written was kept")


# exception -> exit code: library errors are user errors (2); the runtime's own, as on the device.
ERRORS = ((MixerEdgeError, EXIT_BAD_INPUT, "error"),)


if __name__ == "__main__":
    sys.exit(main())
