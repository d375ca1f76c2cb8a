"""The command line: the only place that parses arguments and prints for people; one module per
command group (train, info, calib, export, predict, quant, bench, pack, trt, demo). Library code raises;
main() ends in the runtime's error boundary (runtime/errors.py), the one exception -> exit code
table for `mixer-edge` and the device scripts alike."""
from __future__ import annotations

import argparse
import sys
from dataclasses import dataclass
from typing import Callable

from .. import __version__
from ..noise import configure
from ..offline import no_telemetry
from ..runtime.errors import error_boundary


@dataclass(frozen=True)
class Command:
    name: str
    help: str
    add_arguments: Callable[[argparse.ArgumentParser], None]
    run: Callable[[argparse.Namespace], int]


def _lazy(module: str, name: str):
    """A command module's function, imported when called: `mixer-edge --help` stays fast."""
    def call(arg):
        import importlib

        return getattr(importlib.import_module(f"{__name__}.{module}"), name)(arg)
    return call


def _command(name: str, module: str, help: str, add: str | None, run: str) -> Command:
    return Command(name, help, _lazy(module, add) if add else (lambda p: None), _lazy(module, run))


# One row per command: name, the module of mixer_edge/cli/ that owns it, help, its two functions.
COMMANDS = [_command(*row) for row in (
    ("train", "train", "train or fine-tune a Mixer and save a checkpoint", "add_train_arguments", "run_train"),
    ("eval", "train", "top-1 / top-5 of a checkpoint on a data set", "add_eval_arguments", "run_eval"),
    ("models", "info", "list the model variants", None, "run_models"),
    ("targets", "info", "list export targets, their precisions and whether they run here", None, "run_targets"),
    ("predict", "predict", "top classes of images, from an artifact or a checkpoint", "add_predict_arguments",
     "run_predict"),
    ("calib", "calib", "make a reusable calibration set (.npz + manifest)", "add_calib_arguments", "run_calib"),
    ("export", "export", "export a checkpoint to validated artifacts per target and precision",
     "add_export_arguments", "run_export"),
    ("quant", "quant", "INT8 analysis: `quant inspect` names the layers where quantization error enters",
     "add_quant_arguments", "run_quant"),
    ("bench", "bench", "latency, throughput, memory and accuracy of artifacts and checkpoints",
     "add_bench_arguments", "run_bench"),
    ("report", "bench", "merge bench results from one or many devices into report.md / report.html",
     "add_report_arguments", "run_report"),
    ("pack", "pack", "an artifact with held-out images and the device's instructions, one .tar.gz to copy over",
     "add_pack_arguments", "run_pack"),
    ("trt", "trt", "TensorRT on the device: build the engine of a TensorRT artifact and benchmark it",
     "add_trt_arguments", "run_trt"),
    ("demo", "demo", "the whole flow on the built-in digits data, in about a minute", "add_demo_arguments",
     "run_demo"),
)]


def build_parser() -> argparse.ArgumentParser:
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
    configure(args.verbose)
    no_telemetry()   # before any dependency can ask: no connection unless asked (mixer_edge/offline.py)
    return error_boundary(lambda: _run(args), "interrupted; nothing half-written was kept")


def _run(args: argparse.Namespace) -> int:
    """A command that computes (add_threads_argument) gets its thread count chosen and applied first."""
    if getattr(args, "choose_threads", False):
        from .common import apply_threads

        args.threads = apply_threads(args.threads)
    return args.run(args)


if __name__ == "__main__":
    sys.exit(main())
