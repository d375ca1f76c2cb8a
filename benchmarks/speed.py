#!/usr/bin/env python3
"""Speed of mixer-edge's CPU artifacts against this machine's INT8 floor and the peers a deployer
would otherwise use, in one run, interleaved, as ratios; and a guard that fails when a later run is
worse than a stored one.

Measured in one process, the same threads everywhere, batch 1 and batch 32 (median ms a call, the
subjects' timed calls interleaved round by round so drift falls on all of them alike):

    pytorch eager fp32                PyTorch, the checkpoint as it is
    openvino fp32 / bf16-hint         mixer-edge's FP32 IR, f32 hint and bf16 hint (where the CPU has BF16)
    ort quantize_static defaults      ONNX Runtime's quantize_static with every default (QDQ, MinMax, per-tensor)
    mixer-edge onnx int8              the exported artifact, run by mixer-edge's ONNX Runtime backend
    nncf quantize defaults            nncf.quantize with every default on the converted model, compiled with
                                      OpenVINO's defaults (bf16 float parts where the CPU has BF16)
    mixer-edge openvino int8          the exported artifact, run by mixer-edge's OpenVINO backend

The INT8 floor: the best of four integer-matmul probes in the same run (ONNX Runtime MatMulInteger and
OpenVINO FakeQuantize -> MatMul, each at 2048^3 and at the model's channel-MLP shape), in
multiply-accumulates per second; the model's MACs / that rate is the time no INT8 kernel here can
beat. Each subject is given as a multiple of it ("x floor"), and mixer-edge's artifacts also against
their own runtime's peer and against PyTorch eager. Accuracy: top-1 agreement with FP32 PyTorch on real
held-out images (the model's eval split, never trained or calibrated on).

The guard: --json stores the ratios; --baseline FILE compares this run's ratios of mixer-edge's
artifacts to the subjects timed in the same rounds (their peers, PyTorch eager; --guard-floor: the
"x floor" ratios too) with FILE's and exits 3 when one is worse by more than --margin (default 0.15:
15 %), naming it. Ratios, not milliseconds: they hold across busy and quiet hours far better than
times do, and the ratios within one round better than those to the separately probed floor.

    python benchmarks/speed.py runs/b16-mnist --data mnist:../shared/data/mnist --threads 2 \\
        --json benchmarks/results/speed_b16.json
    python benchmarks/speed.py runs/b16-mnist --data mnist:../shared/data/mnist --threads 2 \\
        --baseline benchmarks/results/speed_b16.json
"""
from __future__ import annotations

import argparse
import contextlib
import copy
import io
import json
import platform
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from mixer_edge.runtime.backends.openvino import compile_model as ov_compile  # keeps the signal stack valid

EXIT_SLOWER = 3   # the guard found a ratio worse than the baseline's by more than the margin
BATCHES = (1, 32)
ACCEPT = {"x_floor": 1.25, "vs_nncf": 0.8, "vs_ort": 0.8, "vs_eager_speedup": 5.0, "agreement": 0.99}


def model_macs(cfg) -> int:
    """Multiply-accumulates of one image: stem, token and channel MLPs, head (LayerNorm etc. ignored)."""
    n, c, p = cfg.num_tokens, cfg.hidden_dim, cfg.patch_size
    block = 2 * n * cfg.tokens_mlp_dim * c + 2 * n * c * cfg.channels_mlp_dim
    return n * c * p * p * cfg.in_chans + cfg.num_layers * block + c * cfg.num_classes


# ---- the INT8 floor: integer-matmul probes --------------------------------------------------------

def ort_probe(m: int, k: int, n: int, threads: int):
    import onnxruntime as ort
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.default_rng(0)
    graph = helper.make_graph(
        [helper.make_node("MatMulInteger", ["a", "b"], ["y"])], "probe",
        [helper.make_tensor_value_info("a", TensorProto.UINT8, [m, k])],
        [helper.make_tensor_value_info("y", TensorProto.INT32, [m, n])],
        [numpy_helper.from_array(rng.integers(-127, 127, (k, n), dtype=np.int8), "b")])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    so = ort.SessionOptions()
    so.intra_op_num_threads = threads
    sess = ort.InferenceSession(model.SerializeToString(), so, providers=["CPUExecutionProvider"])
    a = rng.integers(0, 255, (m, k), dtype=np.uint8)
    return lambda: sess.run(None, {"a": a})


def ov_probe(m: int, k: int, n: int, threads: int):
    """A FakeQuantize'd activation times a FakeQuantize'd constant: OpenVINO's low-precision pass
    makes it one int8 FullyConnected, the form an NNCF model's matmuls take."""
    import openvino as ov
    import openvino.opset13 as ops

    rng = np.random.default_rng(0)
    a = ops.parameter([m, k], np.float32, name="a")
    fq_a = ops.fake_quantize(a, np.float32(0), np.float32(2.55), np.float32(0), np.float32(2.55), 256)
    w = ops.constant((rng.integers(-127, 127, (n, k)) / 100.0).astype(np.float32))
    fq_w = ops.fake_quantize(w, np.float32(-1.27), np.float32(1.27), np.float32(-1.27), np.float32(1.27), 255)
    model = ov.Model([ops.matmul(fq_a, fq_w, False, True)], [a], "probe")
    compiled = ov_compile(ov.Core(), model, "CPU", {"INFERENCE_NUM_THREADS": threads})
    request = compiled.create_infer_request()
    x = rng.random((m, k), dtype=np.float32) * 2.55
    return lambda: request.infer({0: x})


def probes(threads: int, channel_shape: tuple, rounds: int) -> list[dict]:
    """Each probe's median rate in operations per second (2 x multiply-accumulates: GOP/s), and the
    rate of its fastest call beside it ("fastest_gops"). The median of the 2048^3 probe moved twofold
    between runs within one hour on the AMX machine (2.0 and 4.0 TOP/s), which moves every "x floor"
    ratio with it; the ratios to peers timed in the same rounds did not (benchmarks/RESULTS.md 12)."""
    out = []
    for runtime, make in (("onnxruntime MatMulInteger", ort_probe), ("openvino FakeQuantize MatMul", ov_probe)):
        for label, (m, k, n) in (("2048^3", (2048, 2048, 2048)), ("channel MLP", channel_shape)):
            call = make(m, k, n, threads)
            for _ in range(3):
                call()
            times = []
            for _ in range(rounds):
                t0 = time.perf_counter()
                call()
                times.append(time.perf_counter() - t0)
            out.append({"probe": f"{runtime} {label}", "shape": [m, k, n],
                        "gops": round(2 * m * k * n / float(np.median(times)) / 1e9, 1),
                        "fastest_gops": round(2 * m * k * n / min(times) / 1e9, 1)})
    return out


# ---- the subjects ---------------------------------------------------------------------------------

def mixer_edge_artifacts(ck, data: str, work: Path, use: list[str], calib_size: int, threads: int) -> dict:
    """name -> artifact folder: those given with --use, else exported here (ONNX INT8, OpenVINO INT8
    and FP32) with every default, validated as `mixer-edge export` validates them."""
    from mixer_edge.export.plan import ExportPlan, run_plan

    if use:
        from mixer_edge.runtime.artifact import read_manifest
        return {f"mixer-edge {read_manifest(Path(u))['target']} {read_manifest(Path(u))['precision']}": Path(u)
                for u in use}
    made = {}
    for precision in ("int8", "fp32"):
        targets = ("onnx", "openvino") if precision == "int8" else ("openvino",)
        plan = ExportPlan(targets=targets, precisions=(precision,), out_dir=str(work), calib_data=data,
                          calib_size=calib_size, force=True, keep_invalid=True)
        for o in run_plan(ck, plan):
            made[f"mixer-edge {o.dest.name.replace('-', ' ')}"] = o.dest
    return made


def artifact_runner(folder: Path, threads: int, hint: str | None = None):
    from mixer_edge.export.artifact import load_artifact
    from mixer_edge.export.registry import get_target

    art = load_artifact(folder)
    kwargs = {"threads": threads} if hint is None else {"threads": threads, "precision_hint": hint}
    runner = get_target(art.target).load_runner(art, **kwargs)
    return runner.run, {**runner.config, "validation": (art.manifest.get("validation") or {}).get("status")}


def eager_runner(ck, threads: int):
    import torch

    torch.set_num_threads(threads)
    model = copy.deepcopy(ck.model).eval()

    def run(x):
        with torch.inference_mode():
            return model(torch.from_numpy(x)).numpy()
    return run, {"threads": torch.get_num_threads()}


def ort_defaults_runner(ck, calib_x: np.ndarray, tmp: Path, threads: int):
    """quantize_static with every default, on the ONNX file mixer-edge exports for FP32 (the same
    graph a user would start from), after ONNX Runtime's recommended pre-processing."""
    import onnxruntime as ort
    from onnxruntime import quantization as q
    from onnxruntime.quantization.shape_inference import quant_pre_process

    from mixer_edge.export.onnx_io import export_fp32_onnx

    fp32, pre, out = tmp / "ort-fp32.onnx", tmp / "ort-pre.onnx", tmp / "ort-int8.onnx"
    export_fp32_onnx(ck.model, fp32)
    quant_pre_process(str(fp32), str(pre))

    class Reader(q.CalibrationDataReader):
        def __init__(self):
            self.items = iter([{"input": calib_x[i:i + 1]} for i in range(len(calib_x))])

        def get_next(self):
            return next(self.items, None)

    q.quantize_static(str(pre), str(out), Reader())
    so = ort.SessionOptions()
    so.intra_op_num_threads = threads
    so.log_severity_level = 3
    sess = ort.InferenceSession(str(out), so, providers=["CPUExecutionProvider"])
    return lambda x: sess.run(None, {"input": x})[0], {"threads": threads}


def nncf_defaults_runner(ck, calib_x: np.ndarray, threads: int):
    """nncf.quantize with every default on ov.convert_model's model, compiled with OpenVINO's
    defaults but the thread count: what a user writes by hand."""
    import nncf
    import openvino as ov
    import torch

    m = ov.convert_model(copy.deepcopy(ck.model).eval(), example_input=torch.zeros(1, *calib_x.shape[1:]))
    with contextlib.redirect_stdout(io.StringIO()):
        qm = nncf.quantize(m, nncf.Dataset([calib_x[i:i + 1] for i in range(len(calib_x))]),
                           subset_size=len(calib_x))
    compiled = ov_compile(ov.Core(), qm, "CPU", {"INFERENCE_NUM_THREADS": threads})
    request = compiled.create_infer_request()

    def run(x):
        request.infer({0: x})
        return request.get_output_tensor(0).data.copy()
    return run, {"threads": threads, "applied_precision": compiled.get_property("INFERENCE_PRECISION_HINT").get_type_name()}


# ---- timing, accuracy, ratios ---------------------------------------------------------------------

def interleaved_ms(runs: dict, x: np.ndarray, rounds: int, calls: int, warmup: int) -> dict:
    from mixer_edge.runtime.timing import paired_median_ms

    names = list(runs)
    return dict(zip(names, paired_median_ms([runs[n] for n in names], x, rounds=rounds, calls=calls, warmup=warmup)))


def agreement(reference: np.ndarray, run, x: np.ndarray, batch: int = 32) -> float:
    logits = np.concatenate([run(x[i:i + batch]) for i in range(0, len(x), batch)])
    return float((logits.argmax(1) == reference.argmax(1)).mean())


def ratios(ms: dict, floor_ms: float) -> dict:
    """The figures the acceptance and the guard read, per batch."""
    r = {f"{name} x floor": t / floor_ms for name, t in ms.items()}
    pairs = (("mixer-edge openvino int8", "nncf quantize defaults"), ("mixer-edge onnx int8", "ort quantize_static defaults"))
    for ours, peer in pairs:
        if ours in ms and peer in ms:
            r[f"{ours} / {peer}"] = ms[ours] / ms[peer]
    for name in ms:
        if name.startswith("mixer-edge") and "pytorch eager fp32" in ms:
            r[f"{name} / pytorch eager fp32"] = ms[name] / ms["pytorch eager fp32"]
    return r


def recommended(ms: dict, agree: dict, configs: dict) -> str | None:
    """The fastest mixer-edge artifact whose export validation did not fail and whose top-1
    agreement with FP32 here meets the acceptance line."""
    ok = [n for n in ms if n.startswith("mixer-edge") and agree.get(n, 0) >= ACCEPT["agreement"]
          and configs.get(n, {}).get("validation") != "failed"]
    return min(ok, key=ms.get) if ok else None


def acceptance(batch_figures: dict, rec: str | None) -> dict:
    """The issue's lines, each with the measured value; None where the subject did not run."""
    out = {}
    b1 = batch_figures.get("1", {}).get("ratios", {})
    b32 = batch_figures.get("32", {}).get("ratios", {})
    if rec:
        out["batch 1: recommended x floor <= 1.25"] = b1.get(f"{rec} x floor")
        out["batch 32: recommended x floor <= 1.25"] = b32.get(f"{rec} x floor")
        eager = b1.get(f"{rec} / pytorch eager fp32")
        out["batch 1: recommended >= 5x PyTorch eager"] = None if eager is None else 1 / eager
    out["batch 1: openvino int8 / nncf defaults <= 0.8"] = b1.get("mixer-edge openvino int8 / nncf quantize defaults")
    out["batch 1: onnx int8 / ort defaults <= 0.8"] = b1.get("mixer-edge onnx int8 / ort quantize_static defaults")
    limits = {"x floor": ACCEPT["x_floor"], "nncf": ACCEPT["vs_nncf"], "ort defaults": ACCEPT["vs_ort"]}
    met = {}
    for line, value in out.items():
        if value is None:
            met[line] = None
        elif "PyTorch eager" in line:
            met[line] = value >= ACCEPT["vs_eager_speedup"]
        else:
            met[line] = value <= next(v for k, v in limits.items() if k in line)
    return {line: {"value": out[line], "met": met[line]} for line in out}


# ---- the guard ------------------------------------------------------------------------------------

def guard(current: dict, baseline: dict, margin: float, floor: bool = False) -> list[str]:
    """Every ratio of mixer-edge's artifacts to a subject timed in the same rounds (its peer, PyTorch
    eager) that is worse than the baseline's by more than margin; with floor, the "x floor" ratios
    too. Those are left out by default: the floor probe's median moved twofold between runs of one
    hour on the AMX machine, the ratios to subjects timed in the same rounds by 2 % (RESULTS.md 12.1).
    A ratio the baseline lacks is new, not worse."""
    worse = []
    for batch, figures in current["batches"].items():
        before = baseline.get("batches", {}).get(batch, {}).get("ratios", {})
        for key, value in figures["ratios"].items():
            if not key.startswith("mixer-edge") or key not in before or (key.endswith(" x floor") and not floor):
                continue
            if value > before[key] * (1 + margin):
                worse.append(f"batch {batch}: {key} {value:.3f}, was {before[key]:.3f} "
                             f"({value / before[key]:.2f}x; margin {1 + margin:.2f}x)")
    return worse


# ---- the run --------------------------------------------------------------------------------------

def run(args) -> dict:
    import mixer_edge as me
    from mixer_edge.calibration import make_calibration
    from mixer_edge.data.dataset import take_split
    from mixer_edge.runtime.system import isa_flags

    ck = me.load_checkpoint(args.checkpoint)
    cfg = ck.config
    macs = model_macs(cfg)
    channel_shape = (cfg.num_tokens, cfg.hidden_dim, cfg.channels_mlp_dim)
    probe = probes(args.threads, channel_shape, args.probe_rounds)
    best = max(probe, key=lambda p: p["gops"])
    print(f"INT8 floor: {best['gops']} GOP/s ({best['probe']}); the model: {2 * macs / 1e9:.2f} GOP an image "
          f"-> {2 * macs / best['gops'] / 1e6:.2f} ms an image at best", flush=True)

    held = take_split(me.load_data(args.data), "eval", ck.split)
    x_eval = ck.preprocess(held.images[:args.eval_images])
    subjects: dict = {}
    with tempfile.TemporaryDirectory(prefix="speed-") as tmp:
        arts = mixer_edge_artifacts(ck, args.data, Path(args.work or tmp) / "artifacts", args.use, args.calib_size,
                                    args.threads)
        subjects["pytorch eager fp32"] = eager_runner(ck, args.threads)
        if not args.no_peers:   # the peers calibrate on the calibration split, as mixer-edge's export does
            calib = make_calibration(args.data, ck.preprocess, size=args.calib_size, trained=ck.trained_keys,
                                     split=ck.split)
            subjects["ort quantize_static defaults"] = ort_defaults_runner(ck, calib.x, Path(tmp), args.threads)
            subjects["nncf quantize defaults"] = nncf_defaults_runner(ck, calib.x, args.threads)
        for name, folder in arts.items():
            subjects[name] = artifact_runner(folder, args.threads)
            if name == "mixer-edge openvino fp32" and {"avx512_bf16", "amx_bf16"} & set(isa_flags()):
                subjects["mixer-edge openvino fp32 bf16-hint"] = artifact_runner(folder, args.threads, "bf16")
        runs = {n: s[0] for n, s in subjects.items()}
        reference = np.concatenate([runs["pytorch eager fp32"](x_eval[i:i + 32]) for i in range(0, len(x_eval), 32)])
        agree = {n: agreement(reference, r, x_eval) for n, r in runs.items() if n != "pytorch eager fp32"}
        print("top-1 agreement with FP32 PyTorch on", len(x_eval), "held-out images:",
              ", ".join(f"{n} {a:.4f}" for n, a in agree.items()), flush=True)
        batches = {}
        for b in args.batches:
            x = np.ascontiguousarray(x_eval[np.arange(b) % len(x_eval)])
            rounds = args.rounds if b == 1 else max(3, args.rounds // 4)
            ms = interleaved_ms(runs, x, rounds=rounds, calls=args.calls if b == 1 else 1,
                                warmup=args.warmup if b == 1 else 2)
            floor_ms = 2 * macs * b / best["gops"] / 1e6
            batches[str(b)] = {"ms": ms, "floor_ms": floor_ms, "ratios": ratios(ms, floor_ms)}
            print_batch(b, ms, floor_ms, batches[str(b)]["ratios"])
    configs = {n: s[1] for n, s in subjects.items()}
    rec = recommended(batches["1"]["ms"], agree, configs) if "1" in batches else None
    return {"kind": "mixer-edge-speed", "schema": 1, "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
            "command": " ".join(sys.argv), "machine": platform.processor() or platform.machine(),
            "cpu_flags": isa_flags(), "threads": args.threads,
            "model": {"variant": cfg.variant, "img_size": list(cfg.img_size), "macs_per_image": macs},
            "probes": probe, "floor": best, "agreement": agree, "eval_images": len(x_eval),
            "configs": configs, "batches": batches, "recommended": rec,
            "acceptance": acceptance(batches, rec)}


def print_batch(b: int, ms: dict, floor_ms: float, r: dict) -> None:
    print(f"\nbatch {b} (floor {floor_ms:.2f} ms):\n| subject | median ms | x floor | ratios |\n|---|---|---|---|")
    for name, t in sorted(ms.items(), key=lambda kv: -kv[1]):
        extra = ", ".join(f"{k.split(' / ', 1)[1]} {v:.2f}" for k, v in r.items() if k.startswith(f"{name} / "))
        print(f"| {name} | {t:.2f} | {t / floor_ms:.2f} | {extra} |", flush=True)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("checkpoint", help="a mixer-edge checkpoint (trained: random weights make near-ties)")
    ap.add_argument("--data", required=True, help="the data the checkpoint was trained on (its calibration split "
                                                  "calibrates, its eval split measures agreement)")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--batches", default="1,32", type=lambda s: [int(v) for v in s.split(",")])
    ap.add_argument("--rounds", type=int, default=20, help="interleaved rounds at batch 1 (a quarter at larger batches)")
    ap.add_argument("--calls", type=int, default=3, help="timed calls per subject per round at batch 1")
    ap.add_argument("--warmup", type=int, default=5)
    ap.add_argument("--probe-rounds", type=int, default=15)
    ap.add_argument("--calib-size", type=int, default=300)
    ap.add_argument("--eval-images", type=int, default=1000)
    ap.add_argument("--use", action="append", default=[], help="time this mixer-edge artifact instead of exporting "
                                                               "(repeatable)")
    ap.add_argument("--work", help="keep the exported artifacts here (default: a temporary folder)")
    ap.add_argument("--no-peers", action="store_true", help="leave out ORT quantize_static and nncf.quantize")
    ap.add_argument("--json", type=Path, help="write every figure here (the guard's baseline)")
    ap.add_argument("--baseline", type=Path, help="a stored --json of an earlier run: exit 3 when a mixer-edge "
                                                  "ratio got worse by more than --margin")
    ap.add_argument("--margin", type=float, default=0.15)
    ap.add_argument("--guard-floor", action="store_true", help="the guard also compares the \"x floor\" ratios "
                                                                "(off: the floor probe is the noisiest figure)")
    args = ap.parse_args(argv)
    baseline = json.loads(args.baseline.read_text()) if args.baseline else None   # read before the long run
    doc = run(args)
    print(f"\nrecommended: {doc['recommended']}")
    for line, v in doc["acceptance"].items():
        state = "not measured" if v["met"] is None else ("met" if v["met"] else "NOT met")
        value = "-" if v["value"] is None else f"{v['value']:.3f}"
        print(f"  {line}: {value} {state}")
    print(f"CPU flags: {' '.join(doc['cpu_flags'])}")
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(doc, indent=1))
    if baseline is not None:
        worse = guard(doc, baseline, args.margin, args.guard_floor)
        for line in worse:
            print(f"guard: slower than {args.baseline}: {line}", file=sys.stderr)
        if worse:
            return EXIT_SLOWER
        print(f"guard: no mixer-edge ratio worse than {args.baseline} by more than {100 * args.margin:.0f} %")
    return 0


if __name__ == "__main__":
    sys.exit(main())
