#!/usr/bin/env python3
"""OpenVINO INT8 by activation scheme, timed and profiled beside NNCF's defaults in one run (issue 21,
benchmarks/RESULTS.md 12.1.1 and 12.3): the same model and calibration images exported three ways
through qdq.FLAVORS["openvino"] (asymmetric, the scheme before; symmetric with one-sided inputs
recentred, the default now; plain symmetric), each with its logit SQNR and agreement on 100 held-out
images from its own validation, paired interleaved medians at batch 1 and 32 (2 threads), and
OpenVINO's per-op counters (PERF_COUNT) grouped by op and kernel.

Seeded weights by default (latency does not depend on them; the SQNR of a seeded model is only a
sanity check: accuracy on trained models is in RESULTS 12.3).

    python benchmarks/openvino_flavors.py ../shared/data/mnist --model B/16
"""
from __future__ import annotations

import argparse
import collections
import contextlib
import copy
import dataclasses
import io
import sys
import tempfile
from pathlib import Path

import numpy as np
import torch

import mixer_edge as me
from mixer_edge.calibration import make_calibration
from mixer_edge.data.dataset import take_split
from mixer_edge.export import qdq
from mixer_edge.export.base import ExportSpec
from mixer_edge.export.build import export_one
from mixer_edge.export.reference import validation_data
from mixer_edge.runtime.backends.openvino import compile_model as ov_compile
from mixer_edge.runtime.system import isa_flags
from mixer_edge.runtime.timing import paired_median_ms

sys.path.insert(0, str(Path(__file__).parent))
from scaling import seeded_model  # noqa: E402
from speed import artifact_runner  # noqa: E402

DEFAULT = qdq.FLAVORS["openvino"]
SCHEMES = {"asymmetric (before)": dataclasses.replace(DEFAULT, symmetric_activations=False, recentre=False),
           "symmetric, recentred (default)": dataclasses.replace(DEFAULT, symmetric_activations=True, recentre=True),
           "symmetric": dataclasses.replace(DEFAULT, symmetric_activations=True, recentre=False)}


def nncf_defaults(ck, calib_x):
    import nncf
    import openvino as ov

    m = ov.convert_model(copy.deepcopy(ck.model).eval(), example_input=torch.zeros(1, *calib_x.shape[1:]))
    with contextlib.redirect_stdout(io.StringIO()):
        return nncf.quantize(m, nncf.Dataset([calib_x[i:i + 1] for i in range(len(calib_x))]), subset_size=len(calib_x))


def op_times(model, x, threads: int, hint: str | None, calls: int = 20) -> dict:
    """{(op type, kernel): ms a call} from OpenVINO's own counters."""
    import openvino as ov

    config = {"INFERENCE_NUM_THREADS": threads, "PERF_COUNT": True, **({"INFERENCE_PRECISION_HINT": hint} if hint else {})}
    request = ov_compile(ov.Core(), model, "CPU", config).create_infer_request()
    for _ in range(5):
        request.infer({0: x})
    out = collections.defaultdict(float)
    for _ in range(calls):
        request.infer({0: x})
        for p in request.profiling_info:
            if p.status == p.status.EXECUTED:
                out[(p.node_type, p.exec_type)] += p.real_time.total_seconds() * 1e3 / calls
    return dict(out)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("mnist", help="folder with the MNIST IDX files")
    ap.add_argument("--model", default="B/16")
    ap.add_argument("--calib-size", type=int, default=128)
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    data = f"mnist:{args.mnist}"
    held = take_split(me.load_data(data), "eval")
    with tempfile.TemporaryDirectory(prefix="ov-flavors-") as tmp_s:
        tmp = Path(tmp_s)
        ck = seeded_model(args.model, tmp / "model")
        x = ck.preprocess(held.images[:100])
        val = validation_data(ck, x, held.labels[:100], f"{data} (eval split, 100 images)")
        calib = make_calibration(data, ck.preprocess, size=args.calib_size)
        runs, models = {}, {}
        try:
            for i, (name, flavor) in enumerate(SCHEMES.items()):
                qdq.FLAVORS["openvino"] = flavor
                o = export_one(ck, "openvino", ExportSpec("int8"), calib, tmp / f"s{i}", validation=val, force=True,
                               keep_invalid=True)
                print(f"{name}: logit SQNR {o.validation['sqnr_db']:.2f} dB, agreement "
                      f"{o.validation['top1_agreement']:.3f} (100 held-out images)", flush=True)
                runs[name] = artifact_runner(o.dest, args.threads)[0]
                models[name] = (str(o.dest / "model.xml"), "f32")
        finally:
            qdq.FLAVORS["openvino"] = DEFAULT
        nncf_model = nncf_defaults(ck, calib.x)
        import openvino as ov

        request = ov_compile(ov.Core(), nncf_model, "CPU", {"INFERENCE_NUM_THREADS": args.threads}).create_infer_request()

        def nncf_run(xb):
            request.infer({0: xb})
            return request.get_output_tensor(0).data.copy()
        runs["nncf defaults"], models["nncf defaults"] = nncf_run, (nncf_model, None)
        for b, rounds, calls in ((1, 15, 3), (32, 5, 1)):
            xb = np.ascontiguousarray(x[np.arange(b) % len(x)])
            ms = dict(zip(runs, paired_median_ms(list(runs.values()), xb, rounds=rounds, calls=calls, warmup=2)))
            print(f"\nbatch {b}: " + " | ".join(f"{k} {v:.2f} ms ({v / ms['nncf defaults']:.3f}x nncf)"
                                              for k, v in ms.items()), flush=True)
        for name, (model, hint) in models.items():
            times = op_times(model, np.ascontiguousarray(x[:1]), args.threads, hint)
            total = sum(times.values())
            print(f"\n{name}: {total:.2f} ms a call (sum of op times)")
            for (op, kernel), t in sorted(times.items(), key=lambda kv: -kv[1])[:10]:
                print(f"  {op:30s} {kernel:30s} {t:7.2f} ms {100 * t / total:5.1f} %")
    print(f"\nCPU flags: {' '.join(isa_flags())}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
