"""The recorded outlier case: a copy of a checkpoint with pretrained-like LayerNorm outlier channels
(a few channels of every LayerNorm that feeds a linear layer scaled 30-100x, that layer's input
columns scaled down by the same factor), saved as an ordinary checkpoint and checked to give the
same FP32 logits (within 1e-5) on the images given. See calibration/smoothing.inject_outliers.

    python benchmarks/outlier_model.py runs/plain-t4 runs/outliers-t4 --check-data imagefolder:runs/mnist-folders/eval
"""
from __future__ import annotations

import argparse
import sys

import torch

import mixer_edge as me
from mixer_edge.calibration.smoothing import inject_outliers
from mixer_edge.models.checkpoint import save_checkpoint


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("checkpoint")
    ap.add_argument("out")
    ap.add_argument("--channels", type=int, default=3, help="outlier channels per LayerNorm (default 3)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--check-data", default=None, help="images on which the logits must stay the same")
    args = ap.parse_args(argv)
    ck = me.load_checkpoint(args.checkpoint)
    model, where = inject_outliers(ck.model, channels=args.channels, seed=args.seed)
    if args.check_data:
        x = torch.from_numpy(ck.preprocess(me.load_data(args.check_data).images))
        with torch.no_grad():
            diff = float((model(x) - ck.model(x)).abs().max())
        print(f"max |logit diff| against {args.checkpoint} on {len(x)} images: {diff:.2e}")
        if diff > 1e-5:
            print("error: the rescaling changed the function", file=sys.stderr)
            return 1
    meta = {**ck.meta, "outliers": where, "derived_from": ck.sha256}
    save_checkpoint(args.out, model, ck.preprocess, ck.classes, meta)
    for w in where:
        print(f"{w['norm']:>16} channels {w['channels']} x {w['factors']}")
    print(f"saved {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
