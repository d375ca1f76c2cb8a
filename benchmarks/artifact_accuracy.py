#!/usr/bin/env python3
"""Reproduce an artifact's recorded accuracy from its manifest.json alone.

Knows nothing of mixer_edge (never imports it, nor torch): it reads manifest.json, loads the model
with the plain runtime the manifest names (onnxruntime or openvino), reads raw MNIST IDX images,
applies the recorded preprocessing, holds out the images the manifest reserves (recognised by
content, computed here from the pixels), and compares top-1 with
manifest["validation"]["top1"].

    python benchmarks/artifact_accuracy.py ARTIFACT_DIR --mnist DIR [--images held-out|all]

Exit status 0 when the accuracy matches the manifest exactly, 1 when it does not.
"""
from __future__ import annotations

import argparse
import base64
import gzip
import hashlib
import json
import sys
from pathlib import Path

import numpy as np


def read_idx(path: Path) -> np.ndarray:
    raw = path.read_bytes()
    raw = gzip.decompress(raw) if raw[:2] == b"\x1f\x8b" else raw
    ndim = raw[3]
    dims = np.frombuffer(raw[4:4 + 4 * ndim], dtype=">u4")
    return np.frombuffer(raw[4 + 4 * ndim:], dtype=np.uint8).reshape(dims)


def read_mnist(folder: Path) -> tuple[np.ndarray, np.ndarray]:
    (images,) = sorted(folder.glob("t10k-images*idx3-ubyte*"))
    (labels,) = sorted(folder.glob("t10k-labels*idx1-ubyte*"))
    return read_idx(images)[..., None], read_idx(labels).astype(np.int64)  # (N, 28, 28, 1), (N,)


def held_out(images: np.ndarray, manifest: dict) -> np.ndarray:
    """Positions of the images the manifest does not reserve (trained on, kept for or used in
    calibration). An image's key: the first 8 bytes of BLAKE2b over its int64 (H, W, C) shape and
    its uint8 pixels, little-endian; the manifest lists the reserved keys as base64 uint64."""
    reserved = np.frombuffer(base64.b64decode(manifest["images"]["reserved"]), "<u8")
    keys = np.array([int.from_bytes(hashlib.blake2b(np.asarray(im.shape, "<i8").tobytes() + im.tobytes(),
                                                    digest_size=8).digest(), "little") for im in images],
                    dtype=np.uint64)
    return np.flatnonzero(~np.isin(keys, reserved))


def preprocess(images: np.ndarray, spec: dict) -> np.ndarray:
    """uint8 (N, H, W, C) -> (N, C, H, W) float32: channels, PIL resize, / 255, (x - mean) / std."""
    from PIL import Image

    h, w = spec["size"]
    if images.shape[-1] != spec["channels"]:
        images = np.repeat(images, 3, axis=-1) if spec["channels"] == 3 else images
    if images.shape[1:3] != (h, w):
        method = {"bilinear": Image.BILINEAR, "nearest": Image.NEAREST, "bicubic": Image.BICUBIC}[spec["resize"]]
        images = np.stack([np.asarray(Image.fromarray(im.squeeze(-1) if im.shape[-1] == 1 else im)
                                      .resize((w, h), method)).reshape(h, w, -1) for im in images])
    x = (images.astype(np.float32) / np.float32(255.0) - np.float32(spec["mean"])) / np.float32(spec["std"])
    return np.ascontiguousarray(x.transpose(0, 3, 1, 2), dtype=np.float32)


def onnx_runner(folder: Path, manifest: dict):
    import onnxruntime as ort

    session = ort.InferenceSession(str(folder / "model.onnx"), providers=["CPUExecutionProvider"])
    name = manifest["input"]["name"]
    return lambda x: session.run(None, {name: x})[0]


def openvino_runner(folder: Path, manifest: dict):
    import openvino as ov

    hint = manifest["validation"].get("runtime", {}).get("precision_hint", "f32")
    compiled = ov.Core().compile_model(str(folder / "model.xml"), "CPU", {"INFERENCE_PRECISION_HINT": hint})
    return lambda x: compiled(x)[0]


RUNNERS = {"onnx": onnx_runner, "tensorrt": onnx_runner, "openvino": openvino_runner}


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("artifact", type=Path, help="an artifact directory with manifest.json")
    p.add_argument("--mnist", type=Path, required=True, help="folder with the t10k IDX files")
    p.add_argument("--images", choices=["held-out", "all"], default="held-out",
                   help="the images to score (default: those not reserved by the manifest)")
    args = p.parse_args(argv)
    manifest = json.loads((args.artifact / "manifest.json").read_text())
    images, labels = read_mnist(args.mnist)
    if args.images == "held-out":
        idx = held_out(images, manifest)
        images, labels = images[idx], labels[idx]
    run = RUNNERS[manifest["target"]](args.artifact, manifest)
    x = preprocess(images, manifest["preprocess"])
    logits = np.concatenate([run(x[i:i + 256]) for i in range(0, len(x), 256)])
    top1 = float((logits.argmax(1) == labels).mean())
    recorded = manifest["validation"].get("top1")
    print(json.dumps({"artifact": str(args.artifact), "images": int(len(labels)), "top1": top1,
                      "recorded_top1": recorded, "match": top1 == recorded}))
    return 0 if top1 == recorded else 1


if __name__ == "__main__":
    sys.exit(main())
