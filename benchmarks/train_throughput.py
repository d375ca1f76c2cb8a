#!/usr/bin/env python3
"""Training throughput and peak memory: a few optimizer steps of mixer-edge's own training pieces
(TrainImages, the DataLoader, regularize, the default augmentation, AdamW) per configuration, each
in a fresh process so its peak resident memory is its own.

    python benchmarks/train_throughput.py [--steps 12] [--json OUT]

Configurations: T/4 at 28 px (1-channel MNIST-like images) and B/16 at 224 px (RGB), batch 16,
with the images decoded in this process (--workers 0) and in 2 DataLoader worker processes.
Images are made from a seeded generator and held either in memory ("memory": the training step
alone) or written once as PNG class folders and streamed from them ("streamed": load_data with
MIXER_EDGE_STREAM_ABOVE_MB=0, each image decoded from its file when a batch needs it), the same
pixels both ways. One more row per model: in memory, no workers, under bf16 autocast
(`--precision bf16`, the library's own autocast), against the fp32 row beside it.
"""
from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from mixer_edge.runtime.streaming import STREAM_ENV   # 0 streams every folder

CONFIGS = [("T/4", 28, 1), ("B/16", 224, 3)]
SOURCES = ("memory", "streamed")


def make_images(size: int, channels: int, n: int):
    """Seeded uint8 images (N, H, W, C) and labels (N,): random pixels, the same in every process."""
    import numpy as np

    rng = np.random.default_rng(0)
    return rng.integers(0, 255, (n, size, size, channels), dtype=np.uint8), rng.integers(0, 10, n)


def write_pngs(images, labels, root: Path) -> Path:
    """The images as PNG files in one sub-folder per label (an imagefolder:DIR)."""
    from PIL import Image

    for i, (img, label) in enumerate(zip(images, labels)):
        folder = root / str(int(label))
        folder.mkdir(parents=True, exist_ok=True)
        Image.fromarray(img[..., 0] if img.shape[-1] == 1 else img).save(folder / f"{i:05d}.png")
    return root


def timed_steps(model, batches, steps: int, precision: str = "fp32") -> list:
    """Seconds of each optimizer step after the first (allocation, worker start: not timed). A step
    includes waiting for its batch, so decoding that the workers do not hide is counted."""
    import torch
    from torch import nn

    from mixer_edge.train.loop import _autocast, _param_groups

    opt = torch.optim.AdamW(_param_groups(model, 0.05), lr=5e-3)
    loss_fn = nn.CrossEntropyLoss(label_smoothing=0.1)
    model.train()
    times = []
    it = iter(batches)
    for step in range(steps + 1):
        t0 = time.perf_counter()
        xb, yb = next(it)
        with _autocast(precision, torch.device("cpu")):
            logits = model(xb)
        loss = loss_fn(logits.float(), yb)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        if step:
            times.append(time.perf_counter() - t0)
    del it                                   # worker processes end here; their peak is RUSAGE_CHILDREN's
    return times


def peak_rss_mb() -> dict:
    """Peak resident memory of this process and of its largest finished child (a DataLoader worker)."""
    return {"peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
            "worker_peak_rss_mb": round(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024, 1)}


def one(model_name: str, size: int, channels: int, steps: int, workers: int, folder: str | None = None,
        batch: int = 16, precision: str = "fp32") -> dict:
    import torch

    from mixer_edge.data.files import ImageFiles
    from mixer_edge.data.preprocess import Preprocess
    from mixer_edge.data.sources import load_data
    from mixer_edge.models.variants import create_model
    from mixer_edge.train import augment
    from mixer_edge.train.data import TrainImages, loader, set_epoch
    from mixer_edge.train.distributed import World
    from mixer_edge.train.loop import regularize

    if folder is None:
        images, labels = make_images(size, channels, batch * (steps + 2))
    else:
        files = load_data(f"imagefolder:{folder}")
        if not isinstance(files.images, ImageFiles):
            raise SystemExit(f"{folder} was decoded into memory, not streamed: is {STREAM_ENV}=0 set?")
        images, labels = files.images, files.labels
    model = create_model(model_name, num_classes=10, in_chans=channels, img_size=size)
    regularize(model, 0.1, 0.0)
    pre = Preprocess.default(size, channels)
    data = TrainImages(images, labels, pre, augment.policy("auto", (size, size)), seed=0)
    batches = loader(data, batch, World(), workers, seed=0)
    set_epoch(batches, 0)
    times = timed_steps(model, batches, steps, precision)
    del batches
    med = sorted(times)[len(times) // 2]
    return {"model": model_name, "size": size, "batch": batch, "workers": workers,
            "images": "memory" if folder is None else "streamed", "precision": precision, "steps_timed": len(times),
            "median_step_s": round(med, 4), "images_per_s": round(batch / med, 1), **peak_rss_mb(),
            "torch_threads": torch.get_num_threads()}


def run_one(model_name: str, size: int, channels: int, steps: int, workers: int, folder: Path | None,
            precision: str = "fp32") -> dict:
    """one() in a fresh process, so its peak resident memory is its own."""
    cmd = [sys.executable, __file__, "--steps", str(steps), "--one", model_name, str(size), str(channels), str(workers),
           "--precision", precision]
    if folder is not None:
        cmd += ["--folder", str(folder)]
    out = subprocess.run(cmd, capture_output=True, text=True, check=True, env={**os.environ, STREAM_ENV: "0"})
    return json.loads(out.stdout.strip().splitlines()[-1])


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--steps", type=int, default=12)
    p.add_argument("--json", default=None)
    p.add_argument("--one", nargs=4, metavar=("MODEL", "SIZE", "CHANNELS", "WORKERS"), help=argparse.SUPPRESS)
    p.add_argument("--folder", default=None, help=argparse.SUPPRESS)   # with --one: stream from this folder
    p.add_argument("--precision", default="fp32", help=argparse.SUPPRESS)   # with --one
    args = p.parse_args(argv)
    if args.one:
        m, size, ch, workers = args.one
        print(json.dumps(one(m, int(size), int(ch), args.steps, int(workers), args.folder, precision=args.precision)))
        return 0
    rows = []
    with tempfile.TemporaryDirectory(prefix="train-throughput-") as tmp:
        for m, size, ch in CONFIGS:
            # The very images "memory" holds, as PNG files: written once per configuration, not timed.
            folder = write_pngs(*make_images(size, ch, 16 * (args.steps + 2)), Path(tmp) / f"{size}px")
            runs = [(source, workers, "fp32") for source in SOURCES for workers in (0, 2)] + [("memory", 0, "bf16")]
            for source, workers, precision in runs:
                rows.append(run_one(m, size, ch, args.steps, workers, folder if source == "streamed" else None,
                                    precision))
                r = rows[-1]
                print(f"{m:5} {size:3} px  {source:8}  workers {workers} {precision}: {r['images_per_s']:7.1f} img/s  "
                      f"(median step {r['median_step_s']:.3f} s)  peak RSS {r['peak_rss_mb']:.0f} MB "
                      f"(a worker: {r['worker_peak_rss_mb']:.0f} MB)", flush=True)
    if args.json:
        with open(args.json, "w") as f:
            json.dump(rows, f, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
