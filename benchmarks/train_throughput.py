#!/usr/bin/env python3
"""Training throughput and peak memory: a few optimizer steps of mixer-edge's own training pieces
(TrainImages, the DataLoader, regularize, the default augmentation, AdamW) per configuration, each
in a fresh process so its peak resident memory is its own.

    python benchmarks/train_throughput.py [--steps 12] [--json OUT]

Configurations: T/4 at 28 px (1-channel MNIST-like images) and B/16 at 224 px (RGB), batch 16,
with the images decoded in this process (--workers 0) and in 2 DataLoader worker processes.
Images are made in memory from a seeded generator: this measures the training step, not a disk.
"""
from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import time

CONFIGS = [("T/4", 28, 1), ("B/16", 224, 3)]


def one(model_name: str, size: int, channels: int, steps: int, workers: int, batch: int = 16) -> dict:
    import numpy as np
    import torch
    from torch import nn

    from mixer_edge.data.preprocess import Preprocess
    from mixer_edge.models.variants import create_model
    from mixer_edge.train import augment
    from mixer_edge.train.data import TrainImages, loader, set_epoch
    from mixer_edge.train.distributed import World
    from mixer_edge.train.loop import _param_groups, regularize

    rng = np.random.default_rng(0)
    n = batch * (steps + 2)
    images = rng.integers(0, 255, (n, size, size, channels), dtype=np.uint8)   # (N, H, W, C)
    labels = rng.integers(0, 10, n)
    model = create_model(model_name, num_classes=10, in_chans=channels, img_size=size)
    regularize(model, 0.1, 0.0)
    pre = Preprocess.default(size, channels)
    data = TrainImages(images, labels, pre, augment.policy("auto", (size, size)), seed=0)
    batches = loader(data, batch, World(), workers, seed=0)
    set_epoch(batches, 0)
    opt = torch.optim.AdamW(_param_groups(model, 0.05), lr=5e-3)
    loss_fn = nn.CrossEntropyLoss(label_smoothing=0.1)
    model.train()
    times = []
    it = iter(batches)
    for step in range(steps + 1):           # the first step (allocation, worker start) is not timed
        t0 = time.perf_counter()
        xb, yb = next(it)
        loss = loss_fn(model(xb), yb)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        if step:
            times.append(time.perf_counter() - t0)
    del it, batches                          # worker processes end here; their peak is RUSAGE_CHILDREN's
    med = sorted(times)[len(times) // 2]
    return {"model": model_name, "size": size, "batch": batch, "workers": workers, "steps_timed": len(times),
            "median_step_s": round(med, 4), "images_per_s": round(batch / med, 1),
            "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
            "worker_peak_rss_mb": round(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024, 1),
            "torch_threads": torch.get_num_threads()}


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--steps", type=int, default=12)
    p.add_argument("--json", default=None)
    p.add_argument("--one", nargs=4, metavar=("MODEL", "SIZE", "CHANNELS", "WORKERS"), help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.one:
        m, size, ch, workers = args.one
        print(json.dumps(one(m, int(size), int(ch), args.steps, int(workers))))
        return 0
    rows = []
    for m, size, ch in CONFIGS:
        for workers in (0, 2):
            out = subprocess.run([sys.executable, __file__, "--steps", str(args.steps), "--one", m, str(size),
                                  str(ch), str(workers)], capture_output=True, text=True, check=True)
            rows.append(json.loads(out.stdout.strip().splitlines()[-1]))
            r = rows[-1]
            print(f"{m:5} {size:3} px  workers {workers}: {r['images_per_s']:7.1f} img/s  "
                  f"(median step {r['median_step_s']:.3f} s)  peak RSS {r['peak_rss_mb']:.0f} MB "
                  f"(a worker: {r['worker_peak_rss_mb']:.0f} MB)", flush=True)
    if args.json:
        with open(args.json, "w") as f:
            json.dump(rows, f, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
