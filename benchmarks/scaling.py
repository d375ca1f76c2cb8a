#!/usr/bin/env python3
"""How mixer-edge's CPU INT8 artifacts scale, each figure a multiple of the INT8 floor measured in the
same run (benchmarks/speed.py's probes): latency and throughput against batch size (1 to 64) and
model size (S/16, B/16, L/16 at 224x224), and export + calibration time against calibration-set size
and model size.

Weights are the seeded initialization with a small random head (latency does not depend on weight
values; accuracy is not measured here: benchmarks/speed.py does that on a fitted model).
Calibration images are real (MNIST resized to 224 RGB); validation takes 100 other ones.

    python benchmarks/scaling.py ../shared/data/mnist --json benchmarks/results/scaling.json
"""
from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

import mixer_edge as me
from mixer_edge.calibration import make_calibration
from mixer_edge.data.dataset import take_split
from mixer_edge.data.preprocess import Preprocess
from mixer_edge.export.base import ExportSpec
from mixer_edge.export.build import export_one
from mixer_edge.export.reference import validation_data
from mixer_edge.models.checkpoint import load_checkpoint, save_checkpoint
from mixer_edge.runtime.system import isa_flags
from mixer_edge.runtime.timing import paired_median_ms

sys.path.insert(0, str(Path(__file__).parent))
from speed import artifact_runner, model_macs, probes  # noqa: E402  (the same probes as speed.py)


def seeded_model(variant: str, folder: Path):
    torch.manual_seed(0)
    model = me.create_model(variant, num_classes=10)
    torch.nn.init.normal_(model.head.weight, std=0.02)   # the zero head would make every logit 0
    save_checkpoint(folder, model, Preprocess.default(224, 3), [str(i) for i in range(10)],
                    {"note": "seeded initialization, for latency only"})
    return load_checkpoint(folder)


def timed_export(ck, target: str, data: str, size: int, val, out: Path) -> tuple[Path, dict]:
    """The artifact and the seconds its calibration set and its export (calibration, Q/DQ placement,
    conversion, validation on 100 images) took."""
    t0 = time.perf_counter()
    calib = make_calibration(data, ck.preprocess, size=size)
    t1 = time.perf_counter()
    o = export_one(ck, target, ExportSpec("int8"), calib, out, validation=val, force=True, keep_invalid=True)
    t2 = time.perf_counter()
    return o.dest, {"calibration_set_s": round(t1 - t0, 2), "export_s": round(t2 - t1, 2), "calib_images": size}


def batch_sweep(runs: dict, x_all: np.ndarray, batches, floor_gops: float, macs: int) -> list[dict]:
    out = []
    for b in batches:
        x = np.ascontiguousarray(x_all[np.arange(b) % len(x_all)])
        rounds, calls = (10, 3) if b <= 4 else (3, 1)
        ms = dict(zip(runs, paired_median_ms(list(runs.values()), x, rounds=rounds, calls=calls, warmup=2)))
        floor_ms = 2 * macs * b / floor_gops / 1e6
        out.append({"batch": b, "floor_ms": floor_ms,
                    "subjects": {n: {"ms": t, "images_per_s": 1000 * b / t, "x_floor": t / floor_ms} for n, t in ms.items()}})
        print(f"  batch {b:3d}: floor {floor_ms:8.2f} ms | " + " | ".join(
            f"{n} {t:9.2f} ms {1000 * b / t:7.1f} img/s {t / floor_ms:5.2f}x" for n, t in ms.items()), flush=True)
    return out


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("mnist", help="folder with the MNIST IDX files")
    ap.add_argument("--models", default="S/16,B/16,L/16")
    ap.add_argument("--batches", default="1,2,4,8,16,32,64")
    ap.add_argument("--calib-sizes", default="32,128,300", help="for the calibration sweep (on --calib-model)")
    ap.add_argument("--calib-model", default="B/16")
    ap.add_argument("--calib-size", type=int, default=128, help="calibration images for the model-size sweep")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--json", type=Path)
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    data = f"mnist:{args.mnist}"
    held = take_split(me.load_data(data), "eval")
    started = time.time()
    doc = {"kind": "mixer-edge-scaling", "command": " ".join(sys.argv), "cpu_flags": isa_flags(),
           "threads": args.threads, "models": {}, "calibration_sweep": []}
    with tempfile.TemporaryDirectory(prefix="scaling-") as tmp:
        for variant in args.models.split(","):
            ck = seeded_model(variant, Path(tmp) / variant.replace("/", "-"))
            cfg = ck.config
            macs = model_macs(cfg)
            probe = probes(args.threads, (cfg.num_tokens, cfg.hidden_dim, cfg.channels_mlp_dim), 10)
            best = max(probe, key=lambda p: p["gops"])
            x = ck.preprocess(held.images[:100])
            val = validation_data(ck, x, held.labels[:100], f"{data} (eval split, 100 images)")
            print(f"{variant}: {2 * macs / 1e9:.1f} GOP an image; INT8 floor {best['gops']} GOP/s ({best['probe']})",
                  flush=True)
            runs, exports = {}, {}
            for target in ("openvino", "onnx"):
                folder, t = timed_export(ck, target, data, args.calib_size, val, Path(tmp) / variant.replace("/", "-"))
                exports[target] = t
                runs[f"{target} int8"] = artifact_runner(folder, args.threads)[0]
                print(f"  {target} int8 export: calibration set {t['calibration_set_s']} s, export {t['export_s']} s "
                      f"({args.calib_size} calibration images)", flush=True)
            sweep = batch_sweep(runs, x, [int(b) for b in args.batches.split(",")], best["gops"], macs)
            doc["models"][variant] = {"macs_per_image": macs, "probes": probe, "floor": best, "exports": exports,
                                      "batches": sweep}
            if variant == args.calib_model:
                for size in (int(s) for s in args.calib_sizes.split(",")):
                    _, t = timed_export(ck, "openvino", data, size, val, Path(tmp) / f"calib-{size}")
                    doc["calibration_sweep"].append({"model": variant, "target": "openvino", **t})
                    print(f"  calibration sweep: {size} images -> calibration set {t['calibration_set_s']} s, "
                          f"export {t['export_s']} s", flush=True)
    doc["seconds"] = round(time.time() - started)
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(doc, indent=1))
    print(f"{doc['seconds']} s; CPU flags: {' '.join(doc['cpu_flags'])}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
