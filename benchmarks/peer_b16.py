#!/usr/bin/env python3
"""Peer comparison for Mixer-B/16 at 224x224, batch 1 and 32, in one run on this machine.

Side by side, each timed by the same loop (mixer_edge.runtime.timing.time_calls):
  PyTorch eager FP32 | ONNX Runtime FP32, INT8 (mixer-edge) | OpenVINO FP32, BF16-hint, INT8 (mixer-edge)
  | OpenVINO + NNCF INT8 done by hand with every default (the peer a user would otherwise write)
next to the hardware ceiling measured in the same run: a large FP32 MatMul and an INT8 MatMulInteger
through ONNX Runtime. Each time is also given as a multiple of B/16's operation count at that
ceiling (how far from the machine's limit it runs). Weights are random (latency does not depend on
their values); calibration and validation images are real (MNIST, resized to 224 RGB).

    python benchmarks/peer_b16.py --mnist ../shared/data/mnist [--iters 20] [--out benchmarks/results]
    python benchmarks/peer_b16.py --plot benchmarks/results/peer_b16.json   # redraw the plot only
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

import mixer_edge as me
from mixer_edge.calibration.sets import CalibrationSet, content_sha256
from mixer_edge.data.preprocess import Preprocess
from mixer_edge.export.plan import ExportPlan, run_plan
from mixer_edge.export.registry import get_target
from mixer_edge.models.checkpoint import load_checkpoint, save_checkpoint
from mixer_edge.runtime.artifact import atomic_write_json
from mixer_edge.runtime.system import device_info
from mixer_edge.runtime.timing import latency_stats, time_calls
from mixer_edge.runtime.backends.openvino import compile_model as ov_compile  # keeps the signal stack valid


def b16_macs(cfg) -> int:
    """Multiply-accumulates of one image: stem, token and channel MLPs, head (LayerNorm etc. ignored)."""
    n, c, p = cfg.num_tokens, cfg.hidden_dim, cfg.patch_size
    stem = n * c * p * p * cfg.in_chans
    block = 2 * n * cfg.tokens_mlp_dim * c + 2 * n * c * cfg.channels_mlp_dim
    return stem + cfg.num_layers * block + c * cfg.num_classes


def random_b16(folder: Path) -> Path:
    torch.manual_seed(0)
    model = me.create_model("B/16", num_classes=1000)
    torch.nn.init.normal_(model.head.weight, std=0.02)  # the zero head would make every logit 0
    return save_checkpoint(folder, model, Preprocess.default(224, 3), [str(i) for i in range(1000)],
                           {"note": "random weights, for latency only"}).parent


def real_images(mnist: str, preprocess: Preprocess, n: int, offset: int) -> tuple[np.ndarray, np.ndarray]:
    data = me.load_data(f"mnist:{mnist}")
    idx = np.arange(offset, offset + n)
    return preprocess(data.images[idx]), data.labels[idx]


def ceilings(threads: int, iters: int) -> dict:
    """Matrix-multiply throughput through ONNX Runtime: FP32 MatMul and INT8 MatMulInteger, 2048^3."""
    import onnxruntime as ort
    from onnx import TensorProto, helper, numpy_helper

    m = k = n = 2048
    rng = np.random.default_rng(0)
    out = {}
    for name, a_type, b_arr, op in (
            ("fp32", TensorProto.FLOAT, rng.standard_normal((k, n), np.float32), "MatMul"),
            ("int8", TensorProto.UINT8, rng.integers(-127, 127, (k, n), dtype=np.int8), "MatMulInteger")):
        graph = helper.make_graph(
            [helper.make_node(op, ["a", "b"], ["y"])], name,
            [helper.make_tensor_value_info("a", a_type, [m, k])],
            [helper.make_tensor_value_info("y", TensorProto.FLOAT if op == "MatMul" else TensorProto.INT32, [m, n])],
            [numpy_helper.from_array(b_arr, "b")])
        model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
        so = ort.SessionOptions()
        so.intra_op_num_threads = threads
        sess = ort.InferenceSession(model.SerializeToString(), so, providers=["CPUExecutionProvider"])
        a = rng.standard_normal((m, k), np.float32) if name == "fp32" else rng.integers(0, 255, (m, k), dtype=np.uint8)
        t = time_calls(lambda: sess.run(None, {"a": a}), warmup=2, iters=iters)
        p50 = latency_stats(t.samples_ms)["p50"]
        out[name] = {"gops": 2 * m * n * k / (p50 / 1e3) / 1e9, "p50_ms": p50, "shape": [m, k, n]}
    return out


def hand_nncf(ck, calib: np.ndarray, threads: int):
    """What a user writes by hand: convert, nncf.quantize with defaults, compile with defaults."""
    import nncf
    import openvino as ov

    model = ov.convert_model(ck.model.eval(), example_input=torch.from_numpy(calib[:1]))
    q = nncf.quantize(model, nncf.Dataset([calib[i:i + 1] for i in range(len(calib))]), subset_size=len(calib))
    compiled = ov_compile(ov.Core(), q, "CPU", {"INFERENCE_NUM_THREADS": threads})
    return lambda x: compiled(x)[0]


def plot(result_path: Path) -> Path:
    """peer_b16.png beside the JSON: p50 latency per subject at batch 1 and 32 (per image), with
    the FP32 and INT8 floors that the measured matrix-multiply ceilings allow."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    doc = json.loads(Path(result_path).read_text())
    subjects = list(dict.fromkeys(r["subject"] for r in doc["rows"]))
    fig, axes = plt.subplots(1, 2, figsize=(13, 5.5), sharey=True)
    for ax, batch in zip(axes, (1, 32)):
        rows = {r["subject"]: r for r in doc["rows"] if r["batch"] == batch}
        per_image = [rows[s]["latency_ms"]["p50"] / batch for s in subjects]
        colors = ["tab:red" if "int8" in s else "tab:blue" for s in subjects]
        ax.barh(subjects, per_image, color=colors)
        for kind, style in (("fp32", "--"), ("int8", ":")):
            floor = 2 * doc["model"]["macs_per_image"] / (doc["ceilings"][kind]["gops"] * 1e9) * 1e3
            ax.axvline(floor, color="k", linestyle=style, label=f"{kind.upper()} floor at the measured ceiling ({floor:.0f} ms)")
        ax.set_title(f"Mixer-B/16 224x224, batch {batch}: p50 ms per image")
        ax.set_xlabel("ms per image (lower is better)")
        ax.grid(axis="x", alpha=0.3)
        ax.legend(fontsize=8, loc="lower right")
    axes[0].invert_yaxis()
    fig.suptitle(f"{doc['device'].get('cpu', '')}, {doc['device'].get('cores_usable', '')} cores; "
                 f"red = INT8, blue = FP32 / BF16 hint", fontsize=10)
    fig.tight_layout()
    out = Path(result_path).with_name("peer_b16.png")
    fig.savefig(out, dpi=110)
    return out


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--mnist", help="folder with the MNIST IDX files (real calibration images); required to run")
    p.add_argument("--plot", metavar="JSON", help="only redraw peer_b16.png from a recorded peer_b16.json")
    p.add_argument("--iters", type=int, default=20, help="timed calls at batch 1 (default 20)")
    p.add_argument("--iters-32", type=int, default=4, help="timed calls at batch 32 (default 4)")
    p.add_argument("--warmup", type=int, default=3, help="untimed calls before timing (default 3)")
    p.add_argument("--calib-size", type=int, default=64, help="calibration images (default 64)")
    p.add_argument("--threads", type=int, default=os.cpu_count(), help="threads for every runtime")
    p.add_argument("--out", default="benchmarks/results", help="where peer_b16.json goes")
    args = p.parse_args(argv)
    if args.plot:
        print(f"wrote {plot(Path(args.plot))}")
        return 0
    if not args.mnist:
        p.error("--mnist DIR is required to run the benchmark")
    torch.set_num_threads(args.threads)
    work = Path(tempfile.mkdtemp(prefix="peer-b16-"))
    ck = load_checkpoint(random_b16(work / "ckpt"))
    x_cal, y_cal = real_images(args.mnist, ck.preprocess, args.calib_size, 0)
    calib = CalibrationSet(x=x_cal, labels=None, source=f"mnist:{args.mnist} (first {args.calib_size}, 224 RGB)",
                           seed=0, sha256=content_sha256(x_cal, None), preprocess=ck.preprocess.to_dict())
    started = time.perf_counter()
    plan = ExportPlan(targets=("onnx", "openvino"), precisions=("fp32", "int8"), out_dir=str(work / "art"),
                      calib_data=calib, keep_invalid=True)
    outcomes = {f"{o.dest.name}": o for o in run_plan(ck, plan, on_done=lambda o: print("exported", o.dest.name,
                                                                                          "passed" if o.passed else o.problems, flush=True))}
    export_s = time.perf_counter() - started
    arts = {k: o.artifact for k, o in outcomes.items()}
    onnx_t, ov_t = get_target("onnx"), get_target("openvino")
    subjects = {
        "pytorch-eager fp32": _torch_runner(ck.model),
        "onnxruntime fp32 (mixer-edge)": onnx_t.load_runner(arts["onnx-fp32"], threads=args.threads),
        "onnxruntime int8 (mixer-edge)": onnx_t.load_runner(arts["onnx-int8"], threads=args.threads),
        "openvino fp32 (mixer-edge)": ov_t.load_runner(arts["openvino-fp32"], threads=args.threads, precision_hint="f32"),
        "openvino bf16-hint (mixer-edge)": ov_t.load_runner(arts["openvino-fp32"], threads=args.threads,
                                                            precision_hint="bf16"),
        "openvino int8 (mixer-edge)": ov_t.load_runner(arts["openvino-int8"], threads=args.threads),
        "openvino+nncf int8 by hand (defaults)": hand_nncf(ck, x_cal, args.threads),
    }
    ceil = ceilings(args.threads, iters=5)
    macs = b16_macs(ck.config)
    rows = []
    for name, run in subjects.items():
        for batch, iters in ((1, args.iters), (32, args.iters_32)):
            xb = np.ascontiguousarray(x_cal[np.arange(batch) % len(x_cal)])
            t = time_calls(lambda: run(xb), warmup=args.warmup if batch == 1 else 1, iters=iters)
            lat = latency_stats(t.samples_ms)
            ceiling = ceil["int8" if "int8" in name else "fp32"]["gops"]
            floor_ms = 2 * macs * batch / (ceiling * 1e9) * 1e3
            rows.append({"subject": name, "batch": batch, "latency_ms": lat, "images_per_s": batch / (lat["p50"] / 1e3),
                         "x_of_ceiling_time": lat["p50"] / floor_ms, "ceiling_floor_ms": floor_ms,
                         "runtime": getattr(run, "config", {"torch_threads": torch.get_num_threads()})})
            print(f"{name:40} batch {batch:2}  p50 {lat['p50']:9.1f} ms  p90 {lat['p90']:9.1f}  "
                  f"{batch / (lat['p50'] / 1e3):7.1f} img/s  {lat['p50'] / floor_ms:5.2f}x ceiling time", flush=True)
    base = {r["batch"]: r["latency_ms"]["p50"] for r in rows if r["subject"] == "pytorch-eager fp32"}
    hand = {r["batch"]: r["latency_ms"]["p50"] for r in rows if "by hand" in r["subject"]}
    for r in rows:
        r["speedup_vs_pytorch"] = base[r["batch"]] / r["latency_ms"]["p50"]
        r["ratio_to_hand_nncf"] = r["latency_ms"]["p50"] / hand[r["batch"]]
    result = {"schema": 1, "kind": "mixer-edge-peer-b16", "device": device_info(),
              "model": {"variant": "B/16", "img_size": 224, "macs_per_image": macs, "weights": "random, seed 0"},
              "ceilings": ceil, "export_s": export_s, "calibration": calib.manifest(),
              "validation": {k: o.validation for k, o in outcomes.items()},
              "openvino_int8_chosen": arts["openvino-int8"].manifest["export"].get("chosen"),
              "rows": rows, "versions": arts["openvino-int8"].manifest["versions"]}
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    atomic_write_json(out / "peer_b16.json", result)
    plot(out / "peer_b16.json")
    print(f"\nceilings: FP32 {ceil['fp32']['gops']:.0f} GFLOP/s, INT8 {ceil['int8']['gops']:.0f} GOP/s; "
          f"B/16 = {2 * macs / 1e9:.2f} GFLOP per image")
    print(markdown(rows))
    print(f"wrote {out / 'peer_b16.json'}")
    return 0


def _torch_runner(model):
    model.eval()

    @torch.inference_mode()
    def run(x):
        return model(torch.from_numpy(x)).numpy()
    return run


def markdown(rows) -> str:
    lines = ["| subject | batch | p50 ms | p90 ms | img/s | vs PyTorch eager | vs hand NNCF | x ceiling time |",
             "|---|---|---|---|---|---|---|---|"]
    for r in rows:
        lat = r["latency_ms"]
        lines.append(f"| {r['subject']} | {r['batch']} | {lat['p50']:.1f} | {lat['p90']:.1f} | {r['images_per_s']:.1f} | "
                     f"{r['speedup_vs_pytorch']:.2f}x | {r['ratio_to_hand_nncf']:.2f} | {r['x_of_ceiling_time']:.2f} |")
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main())
