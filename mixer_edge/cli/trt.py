"""`mixer-edge trt build ARTIFACT_DIR`: build a TensorRT artifact's engine on this device.

The build itself is the device runtime's (runtime/engine.py, its command line runtime/engine_cli.py),
the same code every TensorRT artifact carries for devices without mixer-edge
(`python trt_build.py ARTIFACT_DIR`).
"""
from __future__ import annotations

import argparse

from ..runtime.engine_cli import build_parser


def add_trt_arguments(p: argparse.ArgumentParser) -> None:
    sub = p.add_subparsers(dest="trt_action", metavar="ACTION", required=True,
                           help="build: build the engine from the artifact's ONNX on this device, check it "
                                "against the artifact's golden set, optionally benchmark it (--data)")
    sub.add_parser("build", parents=[build_parser(add_help=False)],
                   help="build model.engine from a TensorRT artifact's ONNX and stamp its manifest",
                   description="Build the engine on the device that will run it (engines are tied to the "
                               "TensorRT version and GPU), run the golden device check on it, and with "
                               "--data benchmark it: the same options as the artifact's trt_build.py. "
                               "Needs tensorrt (pip extra 'tensorrt') and a GPU.")


def run_trt(args: argparse.Namespace) -> int:
    from ..export.tensorrt import build_artifact_engine

    return build_artifact_engine(args)
