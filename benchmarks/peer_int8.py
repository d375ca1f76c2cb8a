"""INT8 accuracy, mixer-edge against each backend's own default post-training quantization, in one
run, on the same model and the same calibration images, on a plain model and on a copy of it with
pretrained-like LayerNorm outlier channels (calibration/smoothing.inject_outliers: FP32 logits
unchanged). Figures are logit SQNR, top-1 agreement and top-1 against FP32 PyTorch on evaluation
images disjoint from training and calibration images.

    peers                          runs with
    ONNX Runtime quantize_static   defaults (QDQ, MinMax, per-tensor), ONNX Runtime, all optimizations
    nncf.quantize                  defaults, OpenVINO CPU, f32 hint
    NVIDIA ModelOpt ONNX PTQ       python -m modelopt.onnx.quantization --quantize_mode int8
                                   --calibration_eps cpu (its defaults), ONNX Runtime, basic
                                   optimizations (Q/DQ as written: TensorRT's arithmetic)
    coremltools W8A8               LinearQuantizer with its default config, observer passes, finalize;
                                   the quantized PyTorch model (Core ML predicts only on macOS)

mixer-edge's rows are its exported artifacts (default recipe), each run by the same runtime as its
peer. ModelOpt lives in its own virtual environment (its [onnx] extra pins onnxruntime-gpu, which
cannot sit beside onnxruntime): see benchmarks/RESULTS.md section 5 for the two install lines.

    python benchmarks/mnist_folders.py ../shared/data/mnist runs/mnist-folders
    mixer-edge train --data imagefolder:runs/mnist-folders/train --model T/4 --epochs 8 --out runs/plain-t4
    python benchmarks/peer_int8.py runs/plain-t4 --calib-data imagefolder:runs/mnist-folders/train \\
        --eval-data imagefolder:runs/mnist-folders/eval --modelopt-python /work/peers-venv-cpu/bin/python \\
        --json benchmarks/results/peer_int8.json
"""
from __future__ import annotations

import argparse
import contextlib
import copy
import io
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
import torch

import mixer_edge as me
from mixer_edge.calibration import make_calibration
from mixer_edge.calibration.smoothing import inject_outliers
from mixer_edge.data.sources import load_data
from mixer_edge.export.build import export_one
from mixer_edge.export.reference import validation_data
from mixer_edge.export.base import ExportSpec
from mixer_edge.export.onnx_io import export_fp32_onnx
from mixer_edge.export.validate import compare
from mixer_edge.runtime.system import isa_flags
from mixer_edge.runtime.backends.openvino import compile_model as ov_compile  # keeps the signal stack valid

TARGETS = ("onnx", "openvino", "tensorrt", "coreml")
PEER_NAMES = {"onnx": "ORT quantize_static defaults", "openvino": "nncf.quantize defaults",
              "tensorrt": "ModelOpt ONNX PTQ defaults", "coreml": "coremltools LinearQuantizer defaults"}
MARGIN_DB, TOP1_POINTS = 3.0, 0.3          # the acceptance lines of the issue


# ---- runtimes, as a user runs each artifact --------------------------------------------------------

def ort_logits(path, x, optimized: bool) -> np.ndarray:
    import onnxruntime as ort

    so = ort.SessionOptions()
    so.log_severity_level = 3
    so.graph_optimization_level = (ort.GraphOptimizationLevel.ORT_ENABLE_ALL if optimized
                                   else ort.GraphOptimizationLevel.ORT_ENABLE_BASIC)
    s = ort.InferenceSession(str(path), so, providers=["CPUExecutionProvider"])
    name = s.get_inputs()[0].name
    return np.concatenate([s.run(None, {name: x[i:i + 256]})[0] for i in range(0, len(x), 256)])


def ov_logits(model, x) -> np.ndarray:
    import openvino as ov

    c = ov_compile(ov.Core(), model, "CPU", {"INFERENCE_PRECISION_HINT": "f32"})
    return np.concatenate([np.array(c(x[i:i + 256])[0]) for i in range(0, len(x), 256)])


# ---- the peers ---------------------------------------------------------------------------------------

def peer_onnx(model, calib, x, tmp: Path) -> np.ndarray:
    from onnxruntime import quantization as q
    from onnxruntime.quantization.shape_inference import quant_pre_process

    fp32, pre, out = tmp / "ort-fp32.onnx", tmp / "ort-pre.onnx", tmp / "ort-int8.onnx"
    export_fp32_onnx(model, fp32)
    quant_pre_process(str(fp32), str(pre))

    class Reader(q.CalibrationDataReader):
        def __init__(self):
            self.items = iter([{"input": calib.x[i:i + 1]} for i in range(len(calib.x))])

        def get_next(self):
            return next(self.items, None)

    q.quantize_static(str(pre), str(out), Reader())          # every option at its default
    return ort_logits(out, x, optimized=True)


def peer_openvino(model, calib, x, tmp: Path) -> np.ndarray:
    import nncf
    import openvino as ov

    m = ov.convert_model(copy.deepcopy(model).eval(), example_input=torch.zeros(1, *calib.x.shape[1:]))
    with contextlib.redirect_stdout(io.StringIO()):
        q = nncf.quantize(m, nncf.Dataset(list(calib.batches(1))), subset_size=len(calib))
    return ov_logits(q, x)


def peer_tensorrt(model, calib, x, tmp: Path, python: str) -> np.ndarray:
    fp32, data, out = tmp / "mo-fp32.onnx", tmp / "mo-calib.npy", tmp / "mo-int8.onnx"
    export_fp32_onnx(model, fp32)
    np.save(data, calib.x)
    cmd = [python, "-m", "modelopt.onnx.quantization", "--onnx_path", str(fp32), "--quantize_mode", "int8",
           "--calibration_data_path", str(data), "--calibration_eps", "cpu", "--output_path", str(out)]
    done = subprocess.run(cmd, capture_output=True, text=True)
    if done.returncode != 0 or not out.is_file():
        raise RuntimeError(f"ModelOpt failed ({done.returncode}): {done.stderr[-600:]}")
    return ort_logits(out, x, optimized=False)


def peer_coreml(model, calib, x, tmp: Path) -> np.ndarray:
    from coremltools.optimize.torch.quantization import LinearQuantizer, LinearQuantizerConfig

    m = copy.deepcopy(model).eval()
    quantizer = LinearQuantizer(m, LinearQuantizerConfig())   # the default global config
    with contextlib.redirect_stdout(io.StringIO()), torch.no_grad():
        prepared = quantizer.prepare(example_inputs=(torch.from_numpy(calib.x[:1]),))
        for i in range(0, len(calib.x), 32):
            quantizer.step()
            prepared(torch.from_numpy(calib.x[i:i + 32]))
        final = quantizer.finalize().eval()
        return final(torch.from_numpy(x)).numpy()


def peer_logits(target, model, calib, x, tmp, args) -> np.ndarray:
    if target == "tensorrt":
        return peer_tensorrt(model, calib, x, tmp, args.modelopt_python)
    return {"onnx": peer_onnx, "openvino": peer_openvino, "coreml": peer_coreml}[target](model, calib, x, tmp)


# ---- mixer-edge ------------------------------------------------------------------------------------

def ours(ck, target, calib, val, out: Path) -> dict:
    """The exported artifact's own validation figures on the evaluation images, plus the logits
    recomputed here with the plain runtime where it runs (an independent check of the figures)."""
    o = export_one(ck, target, ExportSpec("int8"), calib, out, validation=val, keep_invalid=True)
    v = dict(o.validation)
    folder = o.dest
    if target in ("onnx", "tensorrt"):
        v["recomputed"] = compare(val.reference, ort_logits(folder / "model.onnx", val.x, target == "onnx"), val.labels)
    elif target == "openvino":
        import openvino as ov
        v["recomputed"] = compare(val.reference, ov_logits(ov.Core().read_model(str(folder / "model.xml")), val.x),
                                  val.labels)
    return v


def points(a: float, b: float) -> float:
    """|a - b| in percentage points, rounded to 1e-9: 0.962 - 0.959 is 0.30000000000000027 in floats,
    and 3 images of 1,000 are 0.3 points, on the line, not above it."""
    return round(abs(a - b) * 100, 9)


def row(model_name, target, fp32_top1, mine: dict, peer: dict) -> dict:
    figures = mine.get("recomputed", mine)
    ok = (figures["sqnr_db"] >= peer["sqnr_db"] + MARGIN_DB and figures["top1_agreement"] >= peer["top1_agreement"]
          and points(figures["top1"], fp32_top1) <= TOP1_POINTS)
    return {"model": model_name, "target": target, "fp32_top1": fp32_top1,
            "mixer_edge": {k: figures[k] for k in ("sqnr_db", "top1_agreement", "top1")},
            "mixer_edge_runner": mine.get("runner", mine.get("skipped")),
            "peer": PEER_NAMES[target], "peer_figures": {k: peer[k] for k in ("sqnr_db", "top1_agreement", "top1")},
            "delta_db": figures["sqnr_db"] - peer["sqnr_db"], "meets_acceptance": bool(ok)}


def print_table(rows) -> None:
    print("\n| model | target | mixer-edge INT8 | peer default PTQ | Δ SQNR | accepted |\n|---|---|---|---|---|---|")
    for r in rows:
        m, p = r["mixer_edge"], r["peer_figures"]
        print(f"| {r['model']} | {r['target']} | {m['sqnr_db']:.1f} dB, agree {m['top1_agreement']:.3f}, "
              f"{100 * m['top1']:.1f}% | {r['peer']}: {p['sqnr_db']:.1f} dB, agree {p['top1_agreement']:.3f}, "
              f"{100 * p['top1']:.1f}% | {r['delta_db']:+.1f} dB | {'yes' if r['meets_acceptance'] else 'NO'} |")


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("checkpoint", help="a mixer-edge checkpoint folder")
    ap.add_argument("--calib-data", required=True, help="data spec the calibration images come from")
    ap.add_argument("--eval-data", required=True, help="evaluation images (disjoint from training and calibration)")
    ap.add_argument("--calib-size", type=int, default=300)
    ap.add_argument("--targets", default=",".join(TARGETS))
    ap.add_argument("--modelopt-python", default=os.environ.get("MODELOPT_PYTHON", sys.executable),
                    help="a Python with nvidia-modelopt[onnx] (default $MODELOPT_PYTHON, else this one)")
    ap.add_argument("--json", type=Path, help="write every figure here")
    args = ap.parse_args(argv)

    ck = me.load_checkpoint(args.checkpoint)
    calib = make_calibration(args.calib_data, ck.preprocess, size=args.calib_size,
                             trained=ck.trained_keys, split=ck.split)
    ev = load_data(args.eval_data)
    x = ck.preprocess(ev.images)
    outliers, where = inject_outliers(ck.model)
    rows, started = [], time.time()
    for model_name, model in (("plain", ck.model), ("outliers", outliers)):
        c = replace(ck, model=model)
        val = validation_data(c, x, ev.labels, args.eval_data)
        fp32_top1 = float((val.reference.argmax(1) == ev.labels).mean())
        for target in args.targets.split(","):
            with tempfile.TemporaryDirectory(prefix="peer-int8-") as tmp:
                mine = ours(c, target, calib, val, Path(tmp) / "ours")
                peer = compare(val.reference, peer_logits(target, model, calib, x, Path(tmp), args), ev.labels)
            rows.append(row(model_name, target, fp32_top1, mine, peer))
            r = rows[-1]
            print(f"{model_name:8s} {target:9s} mixer-edge {r['mixer_edge']['sqnr_db']:6.2f} dB  "
                  f"peer {r['peer_figures']['sqnr_db']:6.2f} dB  Δ {r['delta_db']:+.2f}", flush=True)
    print_table(rows)
    print(f"\nFP32 top-1: plain {100 * rows[0]['fp32_top1']:.2f}%; {len(x)} evaluation images, "
          f"{len(calib)} calibration images; {time.time() - started:.0f} s; CPU flags: {' '.join(isa_flags())}")
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps({"rows": rows, "outliers": where, "cpu_flags": isa_flags(),
                                         "machine": platform.processor() or platform.machine(),
                                         "calibration": calib.manifest(), "eval": args.eval_data}, indent=1))
    return 0 if all(r["meets_acceptance"] for r in rows) else 1


if __name__ == "__main__":
    sys.exit(main())
