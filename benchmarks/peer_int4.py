#!/usr/bin/env python3
"""4-bit weights, mixer-edge against each backend's own 4-bit tool, in one run, on the same model,
calibration images and evaluation images (issue 22). Figures: logit SQNR, top-1 agreement and top-1
against FP32 PyTorch on images disjoint from training and calibration, and the model file's size
against the FP32 one.

    target        mixer-edge                         peer (its 4-bit tool)
    onnx          --precision int4 (GPTQ, blocks)     ORT MatMulNBitsQuantizer (RTN): its defaults (block
                                                      128, asymmetric) and at our block, symmetric
    openvino      --precision int4                    nncf.compress_weights INT4_SYM: its defaults
                                                      (group 128, ratio 1) and at our group size
    tensorrt      --precision int4 (fp16, W4A16)      ModelOpt ONNX INT4 (awq_clip), when --modelopt-python
                                                      runs it; validated with ONNX Runtime either way
    coreml        --precision int4 (iOS18)            coremltools.optimize.torch PostTrainingQuantizer
                                                      int4 per block, and PostTrainingPalettizer 4-bit

Ours is exported at every --int4-block of --ours-blocks, each with the token-mixing MLPs at 8 bits
(the default) and at 4, and for Core ML also with --int4-format palette (one float16 table per
layer, bits spread over the layers at a uniform 4-bit palette's size); each peer row is paired with the best of ours (by SQNR) whose model file is
no larger than the peer's ("at the same or a smaller size"); when none is, the smallest of ours and
the row is not met. Core ML predicts only on macOS: both sides are the PyTorch models whose weights
the programs hold (ours: the export's stand-in; the peer's: coremltools' compressed module), sizes
from the converted programs.

    python benchmarks/peer_int4.py runs/t4-default --calib-data imagefolder:runs/mnist-folders/train \\
        --eval-data imagefolder:runs/mnist-folders/eval --json benchmarks/results/peer_int4.json
"""
from __future__ import annotations

import argparse
import copy
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

import mixer_edge as me
from mixer_edge.calibration import make_calibration
from mixer_edge.export.base import ExportSpec
from mixer_edge.export.build import export_one
from mixer_edge.export.onnx_io import export_fp32_onnx
from mixer_edge.export.reference import validation_data
from mixer_edge.export.validate import compare
from mixer_edge.runtime.system import isa_flags
from mixer_edge.runtime.backends.openvino import compile_model as ov_compile  # keeps the signal stack valid

MARGIN_DB, TOP1_POINTS, SIZE_RATIO = 3.0, 1.0, 0.3       # the acceptance lines of the issue
PALETTE = "palette (--int4-format palette)"
MODEL_FILES = {"onnx": ("model.onnx",), "openvino": ("model.xml", "model.bin"), "tensorrt": ("model.onnx",),
               "coreml": ("model.mlpackage",)}


def size_of(path: Path) -> int:
    path = Path(path)
    return sum(f.stat().st_size for f in path.rglob("*") if f.is_file()) if path.is_dir() else path.stat().st_size


def ort_logits(path, x) -> np.ndarray:
    import onnxruntime as ort

    so = ort.SessionOptions()
    so.intra_op_num_threads = 2
    so.log_severity_level = 3
    s = ort.InferenceSession(str(path), so, providers=["CPUExecutionProvider"])
    feed = s.get_inputs()[0].name
    return np.concatenate([s.run(None, {feed: x[i:i + 256]})[0] for i in range(0, len(x), 256)])


def ov_logits(model, x) -> np.ndarray:
    import openvino as ov

    c = ov_compile(ov.Core(), model, "CPU", {"INFERENCE_PRECISION_HINT": "f32", "INFERENCE_NUM_THREADS": 2})
    return np.concatenate([c(x[i:i + 256])[0] for i in range(0, len(x), 256)])


def torch_logits(model, x) -> np.ndarray:
    with torch.no_grad():
        return np.concatenate([model(torch.from_numpy(x[i:i + 256])).numpy() for i in range(0, len(x), 256)])


# ---- peers -------------------------------------------------------------------------------------------

def peer_ort(fp32: Path, tmp: Path, block: int, symmetric: bool, x) -> tuple:
    import onnx
    from onnxruntime.quantization.matmul_nbits_quantizer import MatMulNBitsQuantizer

    q = MatMulNBitsQuantizer(onnx.load(str(fp32)), block_size=block, is_symmetric=symmetric)
    q.process()
    out = tmp / f"ort-nbits-{block}-{'sym' if symmetric else 'asym'}.onnx"
    q.model.save_model_to_file(str(out), use_external_data_format=False)
    return ort_logits(out, x), size_of(out)


def peer_nncf(fp32: Path, tmp: Path, group: int | None, x) -> tuple:
    import nncf
    import openvino as ov

    from nncf.quantization.advanced_parameters import AdvancedCompressionParameters, GroupSizeFallbackMode

    model = ov.convert_model(str(fp32))
    kw = {} if group is None else {"group_size": group}
    # ADJUST: a layer whose input count the group does not divide (token mixing: 49 tokens) gets the
    # largest power-of-two group that does, or NNCF's 8-bit backup; the default (ERROR) refuses this model
    adv = AdvancedCompressionParameters(group_size_fallback_mode=GroupSizeFallbackMode.ADJUST)
    q = nncf.compress_weights(model, mode=nncf.CompressWeightsMode.INT4_SYM, advanced_parameters=adv, **kw)
    xml = tmp / f"nncf-int4-{group or 'default'}.xml"
    ov.save_model(q, str(xml), compress_to_fp16=False)
    return ov_logits(str(xml), x), size_of(xml) + size_of(xml.with_suffix(".bin"))


def peer_modelopt(fp32: Path, tmp: Path, calib_x, x, python: str) -> tuple:
    npy, out = tmp / "calib.npy", tmp / "modelopt-int4.onnx"
    np.save(npy, calib_x.astype(np.float32))
    cmd = [python, "-m", "modelopt.onnx.quantization", "--onnx_path", str(fp32), "--quantize_mode", "int4",
           "--calibration_data", str(npy), "--calibration_eps", "cpu", "--output_path", str(out)]
    r = subprocess.run(cmd, capture_output=True, text=True)
    if r.returncode != 0 or not out.exists():
        raise RuntimeError(f"ModelOpt INT4 did not run: {(r.stderr or r.stdout).strip().splitlines()[-1:]}")
    folded = tmp / "modelopt-int4-dequantized.onnx"
    dequantize_weights(out, folded)
    return ort_logits(folded, x), size_of(out)


def dequantize_weights(src: Path, dst: Path) -> None:
    """A ModelOpt INT4 ONNX with every constant DequantizeLinear computed here, by hand:
    (q - zero point) * scale, each scale repeated over its block along the DQ's axis, written as a
    float initializer. What TensorRT's weight-only kernels multiply; ONNX Runtime's CPU EP refuses
    some of ModelOpt's blocked DequantizeLinear nodes (the head's)."""
    import onnx
    from onnx import numpy_helper

    m = onnx.load(str(src))
    inits = {i.name: i for i in m.graph.initializer}
    keep = []
    for n in m.graph.node:
        if n.op_type != "DequantizeLinear" or n.input[0] not in inits:
            keep.append(n)
            continue
        q = numpy_helper.to_array(inits[n.input[0]]).astype(np.float64)
        scale = numpy_helper.to_array(inits[n.input[1]]).astype(np.float64)
        zp = numpy_helper.to_array(inits[n.input[2]]).astype(np.float64) if len(n.input) > 2 and n.input[2] else 0.0
        attrs = {a.name: onnx.helper.get_attribute_value(a) for a in n.attribute}
        axis, block = attrs.get("axis", 1) % q.ndim, attrs.get("block_size", 0)
        if block:                                                   # blocked: repeat along the axis
            scale = np.repeat(scale, block, axis=axis).take(range(q.shape[axis]), axis=axis)
            zp = np.repeat(zp, block, axis=axis).take(range(q.shape[axis]), axis=axis) if np.ndim(zp) else zp
        elif np.ndim(scale) == 1 and q.ndim > 1:                    # per axis
            shape = [1] * q.ndim
            shape[axis] = -1
            scale, zp = scale.reshape(shape), (zp.reshape(shape) if np.ndim(zp) else zp)
        w = ((q - zp) * scale).astype(np.float32)
        m.graph.initializer.append(numpy_helper.from_array(w, n.output[0]))
    del m.graph.node[:]
    m.graph.node.extend(keep)
    onnx.save(m, str(dst))


def _mlp_linears(model) -> list[str]:
    return [n for n, m in model.named_modules() if isinstance(m, torch.nn.Linear) and (".mlp_" in n)]


def peer_coreml(ck, calib_x, x, tmp: Path, kind: str, block: int) -> tuple:
    """coremltools' PyTorch-side 4-bit tools on the MLP Linears (what ours quantizes), then the
    quantized module converted to an iOS18 program for its size."""
    import coremltools as ct
    from coremltools.optimize.torch.palettization import PostTrainingPalettizer, PostTrainingPalettizerConfig
    from coremltools.optimize.torch.quantization import PostTrainingQuantizer, PostTrainingQuantizerConfig

    model = copy.deepcopy(ck.model).eval()
    names = _mlp_linears(model)
    if kind == "linear":
        cfg = {"weight_dtype": "int4", "granularity": "per_block", "block_size": block}
        config = PostTrainingQuantizerConfig.from_dict({"module_name_configs": {n: cfg for n in names}})
        q = PostTrainingQuantizer(model, config).compress()
    else:
        cfg = {"n_bits": 4, "granularity": "per_tensor"}
        config = PostTrainingPalettizerConfig.from_dict({"module_name_configs": {n: cfg for n in names}})
        q = PostTrainingPalettizer(model, config).compress()
    logits = torch_logits(q, x)
    traced = torch.jit.trace(q.eval(), torch.from_numpy(x[:1]))
    ml = ct.convert(traced, inputs=[ct.TensorType(name="input", shape=(1, *x.shape[1:]))], convert_to="mlprogram",
                    minimum_deployment_target=ct.target.iOS18)
    out = tmp / f"coreml-{kind}.mlpackage"
    ml.save(str(out))
    return logits, size_of(out)


# ---- ours ---------------------------------------------------------------------------------------------

def ours(ck, target, calib, val, out: Path, block: int, token_bits: int, fmt: str = "blocks") -> dict:
    spec = ExportSpec("int4", int4_block=block, int4_token_bits=token_bits, int4_format=fmt, coreml_target="iOS18")
    o = export_one(ck, target, spec, calib, out / f"{fmt}-b{block}-t{token_bits}", validation=val, force=True,
                   keep_invalid=True)
    v = o.validation
    size = sum(size_of(o.dest / f) for f in MODEL_FILES[target])
    return {"sqnr_db": v.get("sqnr_db"), "agreement": v.get("top1_agreement"), "top1": v.get("top1"),
            "validation": {True: "passed", False: "failed"}.get(v.get("passed"), "skipped"),
            "checked_by": v.get("runner", {}).get("what") if isinstance(v.get("runner"), dict) else v.get("checked_by"),
            "bytes": size}


def figures(ref, logits, labels, size) -> dict:
    c = compare(ref, logits, labels)
    return {"sqnr_db": c["sqnr_db"], "agreement": c["top1_agreement"], "top1": c["top1"], "bytes": size}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("checkpoint")
    ap.add_argument("--calib-data", required=True)
    ap.add_argument("--eval-data", required=True)
    ap.add_argument("--calib-size", type=int, default=300)
    ap.add_argument("--ours-blocks", default="32,64,128,256,1024",
                    help="our --int4-block values, each with --int4-token-bits 8 and 4 (default 32,64,128,256,1024; "
                         "1024: one scale per output wherever it does not divide the inputs)")
    ap.add_argument("--peer-blocks", default="32,128", help="the peers' block / group sizes (default 32,128; "
                                                              "128 is also their default)")
    ap.add_argument("--targets", default="onnx,openvino,tensorrt,coreml")
    ap.add_argument("--modelopt-python", default=None, help="python of a venv with nvidia-modelopt[onnx]")
    ap.add_argument("--json", type=Path, default=None)
    args = ap.parse_args(argv)
    torch.set_num_threads(2)
    t0 = time.time()

    ck = me.load_checkpoint(args.checkpoint)
    ev = me.load_data(args.eval_data)
    x = ck.preprocess(ev.images).astype(np.float32)
    calib = make_calibration(args.calib_data, ck.preprocess, size=args.calib_size, trained=ck.trained_keys,
                             split=ck.split)
    val = validation_data(ck, x, ev.labels, args.eval_data)
    ref, labels = val.reference, ev.labels
    fp32_top1 = float((ref.argmax(1) == labels).mean())
    ours_blocks = [int(b) for b in args.ours_blocks.split(",")]
    peer_blocks = [int(b) for b in args.peer_blocks.split(",")]
    targets = args.targets.split(",")
    rows = []
    with tempfile.TemporaryDirectory(prefix="peer-int4-") as tmp_s:
        tmp = Path(tmp_s)
        fp32 = tmp / "fp32.onnx"
        export_fp32_onnx(ck.model, fp32)
        fp32_bytes = size_of(fp32)
        for target in targets:
            mine = {f"block {b}, token mixing {t}-bit": ours(ck, target, calib, val, tmp / "ours" / target, b, t)
                    for t in (8, 4) for b in ours_blocks}
            if target == "coreml":
                mine[PALETTE] = ours(ck, target, calib, val, tmp / "ours" / target, ours_blocks[0], 8, "palette")
            peers = []
            for block in peer_blocks:
                peers += _peers(target, block, block == peer_blocks[-1], ck, fp32, tmp, calib, x, args)
            for name, logits, size in peers:
                peer = None if logits is None else figures(ref, logits, labels, size)
                rows.append(_row(target, mine, name, peer, fp32_bytes, fp32_top1))
    _print(rows, fp32_top1, len(x), time.time() - t0)
    if args.json:
        args.json.write_text(json.dumps({
            "command": " ".join([os.path.basename(sys.argv[0]), *sys.argv[1:]]), "machine": platform.processor() or
            platform.machine(), "cpu_flags": isa_flags(), "fp32_top1": fp32_top1, "eval_images": int(len(x)),
            "calib_images": int(len(calib.x)), "fp32_onnx_bytes": fp32_bytes, "rows": rows}, indent=1) + "\n")
    return 0


def _peers(target, block, last, ck, fp32, tmp, calib, x, args) -> list:
    """(name, logits, bytes) of each peer configuration at one block size; a peer that cannot run
    here is a row that says why, never a silent gap."""
    try:
        if target == "onnx":
            out = [(f"MatMulNBitsQuantizer block {block}, symmetric", *peer_ort(fp32, tmp, block, True, x))]
            if block == 128:
                out.append(("MatMulNBitsQuantizer defaults (block 128, asymmetric)", *peer_ort(fp32, tmp, 128, False, x)))
            return out
        if target == "openvino":
            return [(f"nncf.compress_weights INT4_SYM group {block}", *peer_nncf(fp32, tmp, block, x))]
        if target == "tensorrt":
            if block != 128 or not args.modelopt_python:
                return [] if block != 128 else [("ModelOpt INT4: pass --modelopt-python", None, None)]
            return [("ModelOpt ONNX INT4 (awq_clip, block 128)",
                     *peer_modelopt(fp32, tmp, calib.x[:64], x, args.modelopt_python))]
        if target == "coreml":
            out = [(f"PostTrainingQuantizer int4 per block {block}", *peer_coreml(ck, calib.x, x, tmp, "linear", block))]
            if last:
                out.append(("PostTrainingPalettizer 4-bit per tensor", *peer_coreml(ck, calib.x, x, tmp, "palettize", block)))
            return out
    except Exception as e:   # noqa: BLE001 (any failure of a third-party tool is reported as its row)
        return [(f"{target} peer at block {block} failed: {type(e).__name__}: {str(e).splitlines()[0][:160]}", None, None)]
    return []


def _row(target, mine: dict, peer_name, peer, fp32_bytes, fp32_top1) -> dict:
    """One peer against ours at the same or a smaller size: the best SQNR among our artifacts no
    larger than the peer's file (none fits: the smallest of ours, and size_ok false)."""
    fits = [b for b, m in mine.items() if peer is None or m["bytes"] <= peer["bytes"]]
    block = max(fits, key=lambda b: mine[b]["sqnr_db"]) if fits else min(mine, key=lambda b: mine[b]["bytes"])
    m = mine[block]
    r = {"target": target, "ours_config": block, "ours": m, "peer": peer_name, "peer_figures": peer,
         "ours_size_ratio": round(m["bytes"] / fp32_bytes, 3)}
    if peer is not None:
        r["delta_db"] = round(m["sqnr_db"] - peer["sqnr_db"], 2)
        r["size_ok"] = bool(fits)
        r["met"] = bool(r["delta_db"] >= MARGIN_DB and r["size_ok"] and 100 * (fp32_top1 - m["top1"]) <= TOP1_POINTS
                        and r["ours_size_ratio"] <= SIZE_RATIO)
    return r


def _print(rows, fp32_top1, n, seconds) -> None:
    print(f"\nFP32 top-1 {100 * fp32_top1:.2f} % on {n} held-out images; {seconds:.0f} s\n")
    print("| target | peer | peer: SQNR, agreement, top-1, size | mixer-edge int4 (its configuration): SQNR, agreement, top-1, size "
          "| Δ SQNR | met |\n|---|---|---|---|---|---|")
    for r in rows:
        m, p = r["ours"], r["peer_figures"]
        mine = f"{m['sqnr_db']:.1f} dB, {m['agreement']:.3f}, {100 * m['top1']:.1f} %, {m['bytes'] / 1e3:.0f} kB ({r['ours_size_ratio']:.2f}x)"
        peer = "—" if p is None else f"{p['sqnr_db']:.1f} dB, {p['agreement']:.3f}, {100 * p['top1']:.1f} %, {p['bytes'] / 1e3:.0f} kB"
        print(f"| {r['target']} | {r['peer']} | {peer} | ({r['ours_config']}) {mine} | "
              f"{'—' if p is None else format(r['delta_db'], '+.1f')} | {'—' if p is None else ('yes' if r['met'] else 'no')} |")


if __name__ == "__main__":
    sys.exit(main())
