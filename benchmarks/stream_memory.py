#!/usr/bin/env python3
"""Peak memory of training on a streamed image folder does not grow with the folder: B/16 at
224 px, batch 16, trained for a few optimizer steps on 2,000 and on 20,000 images, each run in a
fresh process so each peak is its own. Acceptance: the two peaks within 10 % of each other.

    OMP_NUM_THREADS=1 python benchmarks/stream_memory.py [OUT] [--steps 4] [--workers 2]

OUT (default runs/stream-mem) receives n2000/ and n20000/: class sub-folders of 224 x 224 RGB PNGs
made from the real MNIST test set (/work/shared/data/mnist, or --mnist DIR), image i being digit
i mod 10,000 upscaled and painted with a seeded random foreground and background colour, so the
20,000 images are distinct by content. Writing is incremental: files already there are kept, a
finished folder is marked (.complete) and not looked at again. Results go to OUT/stream_memory.json.

Each run goes through training's own pieces, as mixer_edge.train.loop.train does: load_data (the
folder streams: 2,000 decoded images are 287 MiB, above runtime/streaming.STREAM_ABOVE_MB), the content
split (every image decoded once for its key), trained_images, TrainImages, the DataLoader,
regularize and the default augmentation; then one untimed and --steps timed optimizer steps
(benchmarks/train_throughput.timed_steps). train() itself would first run a whole epoch.
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path


SIZES = (2_000, 20_000)
SIDE = 224
MNIST = Path("/work/shared/data/mnist")
ACCEPT = 0.10                            # the two peaks within 10 % of each other
MARK = ".complete"                       # hidden: image-folder readers skip dot files


def painted(digit, i: int):
    """(SIDE, SIDE, 3) uint8: a (28, 28, 1) digit upscaled, ink in one seeded colour on another."""
    import numpy as np
    from PIL import Image

    rng = np.random.default_rng(i)
    fg, bg = rng.integers(0, 256, (2, 3)).astype(np.float32)                     # (3,) each
    ink = np.asarray(Image.fromarray(digit[..., 0]).resize((SIDE, SIDE), Image.BILINEAR), np.float32) / 255
    rgb = bg * (1 - ink[..., None]) + fg * ink[..., None]                        # (SIDE, SIDE, 3)
    return np.clip(np.rint(rgb), 0, 255).astype(np.uint8)


def make_folder(digits, out: Path, n: int) -> Path:
    """out/{class}/{i:05d}.png for i < n; files already written are kept."""
    from PIL import Image

    from mixer_edge.progress import progress

    if (out / MARK).is_file() and (out / MARK).read_text().strip() == str(n):
        return out
    for i in progress(range(n), desc=f"writing {out}", leave=False):
        k = i % len(digits)
        path = out / digits.classes[int(digits.labels[k])] / f"{i:05d}.png"
        if path.is_file():
            continue
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.name}.tmp")                 # an interrupted write leaves no PNG
        # compress_level 1: writing 20,000 files quickly; decoding (what training does) barely differs
        Image.fromarray(painted(digits.images[k], i)).save(tmp, format="PNG", compress_level=1)
        os.replace(tmp, path)
    (out / MARK).write_text(f"{n}\n")
    return out


def one(folder: str, steps: int, workers: int, batch: int = 16) -> dict:
    """Training's pieces on one folder, in this (fresh) process; peaks read at the end."""
    import torch

    from mixer_edge.data.dataset import SplitSpec, take_split
    from mixer_edge.data.files import ImageFiles
    from mixer_edge.data.preprocess import Preprocess
    from mixer_edge.data.sources import load_data
    from mixer_edge.models.variants import create_model
    from mixer_edge.train import augment
    from mixer_edge.train.data import TrainImages, loader, set_epoch
    from mixer_edge.train.distributed import World
    from mixer_edge.runtime.streaming import Batches
    from mixer_edge.train.loop import regularize, trained_images
    from train_throughput import peak_rss_mb, timed_steps

    t0 = time.perf_counter()
    data = load_data(f"imagefolder:{folder}")
    split = SplitSpec()
    train_set, eval_set = take_split(data, "train", split), take_split(data, "eval", split)  # keys: all decoded once
    trained_images(data, split)
    read_s = time.perf_counter() - t0
    after_read = peak_rss_mb()["peak_rss_mb"]
    torch.manual_seed(0)
    model = create_model("B/16", num_classes=data.num_classes, in_chans=3, img_size=SIDE)
    regularize(model, 0.1, 0.0)
    pre = Preprocess.default(model.config.img_size, model.config.in_chans)
    Batches(eval_set.images, pre)   # what train() hands the per-epoch evaluation: nothing decoded yet
    images = TrainImages(train_set.images, train_set.labels, pre, augment.policy("auto", model.config.img_size),
                         seed=0)
    batches = loader(images, batch, World(), workers, seed=0)
    set_epoch(batches, 0)
    times = timed_steps(model, batches, steps)
    del batches
    med = sorted(times)[len(times) // 2]
    return {"images": len(data), "streamed": isinstance(data.images, ImageFiles), "model": "B/16", "size": SIDE,
            "batch": batch, "workers": workers, "steps_timed": len(times), "read_and_hash_s": round(read_s, 1),
            "peak_rss_after_read_mb": after_read, "median_step_s": round(med, 3),
            "images_per_s": round(batch / med, 2), **peak_rss_mb(), "torch_threads": torch.get_num_threads()}


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("out", nargs="?", default="runs/stream-mem", help="folder for the image folders and results")
    p.add_argument("--mnist", default=str(MNIST), help=f"MNIST IDX files (default {MNIST})")
    p.add_argument("--steps", type=int, default=4, help="timed optimizer steps after one untimed (default 4)")
    p.add_argument("--workers", type=int, default=2, help="DataLoader worker processes (default 2)")
    p.add_argument("--one", default=None, help=argparse.SUPPRESS)   # measure this folder, print JSON
    args = p.parse_args(argv)
    if args.one:
        print(json.dumps(one(args.one, args.steps, args.workers)))
        return 0
    from mixer_edge.data.sources import load_data

    digits = load_data(f"mnist:{args.mnist}")
    out = Path(args.out)
    rows = []
    for n in SIZES:
        folder = make_folder(digits, out / f"n{n}", n)
        print(f"{n:6} images in {folder}: training B/16 ...", flush=True)
        done = subprocess.run([sys.executable, __file__, "--one", str(folder), "--steps", str(args.steps),
                               "--workers", str(args.workers)], stdout=subprocess.PIPE, text=True)  # stderr: its bars
        if done.returncode:
            return done.returncode
        rows.append(json.loads(done.stdout.strip().splitlines()[-1]))
        r = rows[-1]
        print(f"{n:6} images ({'streamed' if r['streamed'] else 'in memory'}): {r['images_per_s']:5.2f} img/s "
              f"(median step {r['median_step_s']:.2f} s); read + hash {r['read_and_hash_s']:.0f} s, peak RSS "
              f"{r['peak_rss_after_read_mb']:.0f} MB after it; peak RSS {r['peak_rss_mb']:.0f} MB "
              f"(a worker: {r['worker_peak_rss_mb']:.0f} MB)", flush=True)
    small, large = rows
    ratio = large["peak_rss_mb"] / small["peak_rss_mb"]
    workers_ratio = large["worker_peak_rss_mb"] / max(small["worker_peak_rss_mb"], 1e-9)
    ok = abs(ratio - 1) <= ACCEPT
    print(f"peak RSS {large['images']:,} / {small['images']:,} images: {ratio:.3f} (workers: {workers_ratio:.3f}); "
          f"acceptance within {ACCEPT:.0%}: {'met' if ok else 'NOT met'}")
    doc = {"benchmark": "stream_memory", "schema": 1, "argv": sys.argv[1:], "rows": rows,
           "peak_ratio": round(ratio, 4), "worker_peak_ratio": round(workers_ratio, 4), "accepted": ok}
    (out / "stream_memory.json").write_text(json.dumps(doc, indent=1) + "\n")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
