"""The token-mixing case smoothing cannot fix: a model whose norm1 (the LayerNorm before token
mixing) has outlier channels. Token mixing transposes them onto the rows of its matmuls' inputs,
where no per-channel fold exists. Made by scaling 3 norm1 channels of every block 30-100x in a
trained checkpoint and fine-tuning it (the outliers stay: the model learns around them), then
exported to INT8 on every target with the token-mixing rule (calibration/policy.token_mixing_rule) on and off.

    python benchmarks/token_outliers.py runs/plain-t4 --data imagefolder:runs/mnist-folders/train \\
        --eval-data imagefolder:runs/mnist-folders/eval --out runs/tok-t4
"""
from __future__ import annotations

import argparse
import copy
import sys
import tempfile
from pathlib import Path

import numpy as np
import torch

import mixer_edge as me
from mixer_edge.calibration import make_calibration
from mixer_edge.calibration import policy
from mixer_edge.export.build import export_one
from mixer_edge.export.reference import validation_data
from mixer_edge.export.base import ExportSpec
from mixer_edge.models.checkpoint import save_checkpoint
from mixer_edge.train import TrainConfig, train


def make_model(checkpoint: str, data: str, out: Path, epochs: int) -> None:
    ck = me.load_checkpoint(checkpoint)
    m = copy.deepcopy(ck.model)
    rng = np.random.default_rng(0)
    with torch.no_grad():
        for b in m.blocks:
            idx = rng.choice(m.config.hidden_dim, 3, replace=False)
            k = torch.from_numpy(rng.uniform(30, 100, 3)).float()
            b.norm1.weight[idx] *= k
            b.norm1.bias[idx] *= k
    raw = out.with_name(out.name + "-raw")
    save_checkpoint(raw, m, ck.preprocess, ck.classes, ck.meta)
    train(TrainConfig(data=data, out=str(out), pretrained=str(raw), epochs=epochs, lr=1e-3, weight_decay=0.0,
                      warmup_epochs=0.5))


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("checkpoint")
    ap.add_argument("--data", required=True, help="training data (fine-tuning and calibration)")
    ap.add_argument("--eval-data", required=True)
    ap.add_argument("--out", type=Path, required=True, help="where the norm1-outlier checkpoint is written")
    ap.add_argument("--epochs", type=int, default=8)
    args = ap.parse_args(argv)
    if not (args.out / "model.safetensors").is_file():
        make_model(args.checkpoint, args.data, args.out, args.epochs)
    ck = me.load_checkpoint(args.out)
    print(f"largest norm1 scale: {max(float(b.norm1.weight.detach().abs().max()) for b in ck.model.blocks):.1f}")
    calib = make_calibration(args.data, ck.preprocess, size=300, trained=ck.trained_keys, split=ck.split)
    ev = me.load_data(args.eval_data)
    val = validation_data(ck, ck.preprocess(ev.images), ev.labels, args.eval_data)
    print(f"FP32 top-1 {100 * (val.reference.argmax(1) == ev.labels).mean():.1f}%\n")
    print("| target | rule | float layers | SQNR dB | top-1 agreement | top-1 |\n|---|---|---|---|---|---|")
    threshold = policy.TOKEN_ROW_SPREAD
    for on in (True, False):
        policy.TOKEN_ROW_SPREAD = threshold if on else float("inf")
        for t in ("onnx", "tensorrt", "openvino", "coreml"):
            with tempfile.TemporaryDirectory() as tmp:
                o = export_one(ck, t, ExportSpec("int8"), calib, tmp, validation=val, keep_invalid=True)
            v, rule = o.validation, o.artifact.manifest["export"]["token_mixing"] if o.artifact else {}
            print(f"| {t} | {'on' if on else 'off'} | {len(rule.get('kept_float', []))} | {v['sqnr_db']:.1f} | "
                  f"{v['top1_agreement']:.3f} | {100 * v['top1']:.1f}% |", flush=True)
    policy.TOKEN_ROW_SPREAD = threshold
    print(f"\nrow spreads (max / median channel) of the token-mixing inputs: {rule.get('row_spread')}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
