"""`mixer-edge trt build ARTIFACT_DIR`: build a TensorRT artifact's engine on this device.

Command functions for cli.py (which registers them): add_trt_arguments(p) and run_trt(args).
The build itself is mixer_edge/runtime/trt_build.py, the same script every TensorRT artifact
carries for devices without mixer-edge (`python trt_build.py ARTIFACT_DIR`).
"""
from __future__ import annotations

import argparse


def add_trt_arguments(p: argparse.ArgumentParser) -> None:
    sub = p.add_subparsers(dest="trt_action", metavar="ACTION", required=True,
                           help="build: build the engine from the artifact's ONNX on this device and stamp versions")
    b = sub.add_parser("build", help="build model.engine from a TensorRT artifact's ONNX and stamp its manifest",
                       description="Build the engine on the device that will run it: engines are tied to the "
                                   "TensorRT version and GPU. Needs tensorrt (pip extra 'tensorrt') and a GPU.")
    b.add_argument("artifact", help="a TensorRT artifact folder (from `mixer-edge export --target tensorrt`)")
    b.add_argument("--max-batch", type=int, default=None, help="largest batch the engine takes (default 32)")
    b.add_argument("--opt-batch", type=int, default=None, help="batch TensorRT tunes its kernels for (default 1)")
    b.add_argument("--min-batch", type=int, default=None, help="smallest batch (default 1)")
    b.add_argument("--timing-cache", default=None, help="timing cache to load and save (default ARTIFACT/timing.cache)")
    b.add_argument("--workspace-mib", type=int, default=None, help="builder workspace limit in MiB (default TensorRT's)")


def run_trt(args: argparse.Namespace) -> int:
    from .tensorrt import build_artifact_engine

    info = build_artifact_engine(args.artifact, min_batch=args.min_batch, opt_batch=args.opt_batch,
                                 max_batch=args.max_batch, timing_cache=args.timing_cache,
                                 workspace_mib=args.workspace_mib)
    p = info["plan"]["profile"]
    gpu = info["gpu"]
    print(f"built {args.artifact}/{info['file']} ({info['bytes'] / 1e6:.1f} MB) in {info['build_s']:.1f} s with "
          f"TensorRT {info['tensorrt']} (CUDA {info['cuda']['version']}) for {gpu['name']} "
          f"(compute capability {gpu['compute_capability']}); batch {p['min'][0]}..{p['max'][0]}, opt {p['opt'][0]}")
    if info["timing_cache"].get("note"):
        print(f"note: {info['timing_cache']['note']}")
    from ..runtime.trt_build import EXIT_DEVICE_CHECK, verify_engine

    return 0 if verify_engine(args.artifact) else EXIT_DEVICE_CHECK
