"""Write MNIST digits as PNG image folders (one sub-folder per class), the way a user's own data
arrives: the issue's "6,000 digits in an image folder" training set and "1,000 other digits" to
evaluate on. Deterministic: train = the first N_TRAIN images of the official MNIST test set, eval =
the N_EVAL images after them; no image is in both.

    python benchmarks/mnist_folders.py ../shared/data/mnist runs/mnist-folders
    # -> runs/mnist-folders/train/{0..9}/*.png (6,000) and runs/mnist-folders/eval/{0..9}/*.png (1,000)
"""
from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
from PIL import Image

from mixer_edge.data.sources import load_mnist


def write_folder(images: np.ndarray, labels: np.ndarray, classes, out: Path, offset: int) -> None:
    for k, (img, label) in enumerate(zip(images, labels)):
        folder = out / classes[int(label)]
        folder.mkdir(parents=True, exist_ok=True)
        Image.fromarray(img[..., 0] if img.shape[-1] == 1 else img).save(folder / f"{offset + k:05d}.png")


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("mnist", type=Path, help="folder with the MNIST IDX files")
    ap.add_argument("out", type=Path, help="output folder (train/ and eval/ are written in it)")
    ap.add_argument("--train", type=int, default=6000, help="training images (default 6000)")
    ap.add_argument("--eval", type=int, default=1000, help="evaluation images after them (default 1000)")
    args = ap.parse_args(argv)
    data = load_mnist(args.mnist)
    n, m = args.train, args.eval
    if n + m > len(data):
        ap.error(f"--train + --eval = {n + m} exceeds the {len(data)} images in {args.mnist}")
    write_folder(data.images[:n], data.labels[:n], data.classes, args.out / "train", 0)
    write_folder(data.images[n:n + m], data.labels[n:n + m], data.classes, args.out / "eval", n)
    print(f"wrote {n} training and {m} evaluation images under {args.out}")


if __name__ == "__main__":
    main()
