"""`mixer-edge pack`: an artifact, a sample of held-out images and the device's instructions in one
.tar.gz to copy to the device."""
from __future__ import annotations

import argparse

from ..runtime.bundle import DEFAULT_IMAGES
from ..runtime.errors import EXIT_OK
from .common import _data_help, output_file


EPILOG = """inside the .tar.gz, one folder named as the artifact: the artifact's files as they are, bundle/
(the held-out images: images.npz, or PNG folders per class when their sizes differ), bundle.json,
README-device.md (this target's install lines and commands) and SHA256SUMS.

on the device:
  tar xzf FILE.tar.gz && cd ARTIFACT
  sha256sum -c SHA256SUMS        (a Mac: shasum -a 256 -c SHA256SUMS)
  python3 edge_bench.py .        (TensorRT: python3 trt_build.py . builds the engine first)
then copy result-DEVICE.json back and: mixer-edge report result-*.json host.json --out report/"""


def add_pack_arguments(p: argparse.ArgumentParser) -> None:
    p.epilog = EPILOG
    p.formatter_class = argparse.RawDescriptionHelpFormatter
    p.add_argument("artifact", help="an artifact folder (with manifest.json)")
    p.add_argument("--data", required=True, help=_data_help() + "; the bundle takes only images the model was not "
                   "trained on and the artifact not calibrated on (recognised by content)")
    p.add_argument("--images", type=int, default=DEFAULT_IMAGES,
                   help=f"images to bundle, class-stratified (default {DEFAULT_IMAGES})")
    p.add_argument("--seed", type=int, default=0, help="which held-out images are drawn (default 0)")
    p.add_argument("--out", required=True, help="the bundle to write, FILE.tar.gz (atomically)")


def run_pack(args: argparse.Namespace) -> int:
    from ..pack import pack   # torch (the data sources): imported when the command runs, not for --help

    output_file(args.out, "--out")
    done = pack(args.artifact, args.data, args.out, images=args.images, seed=args.seed)
    print(f"packed {done['artifact']} with {done['images']} held-out images ({done['data']}, fingerprint "
          f"{done['fingerprint']}) into {done['out']}; on the device: tar xzf {args.out} && cd {done['artifact']} "
          f"&& cat README-device.md")
    return EXIT_OK
