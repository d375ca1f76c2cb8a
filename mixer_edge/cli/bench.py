"""`mixer-edge bench` and `mixer-edge report`: argument definitions and the two run functions."""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

from ..runtime.cli import add_measurement_arguments, settings_from_args
from ..runtime.artifact import MANIFEST
from ..runtime.errors import EXIT_DEVICE_CHECK, EXIT_NOT_RUN, EXIT_OK
from ..runtime.profile import format_profile
from ..runtime.results import format_table
from ..runtime.signing import signature_line
from .common import output_file, output_folder
from .reading import add_reading_arguments, read_options


def add_bench_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("items", nargs="+", metavar="ARTIFACT",
                   help="artifact folders (with manifest.json) and/or checkpoints (a .safetensors file or a "
                        "folder with model.safetensors, benchmarked as PyTorch eager FP32)")
    p.add_argument("--data", required=True,
                   help="evaluation data: digits, mnist:DIR, cifar10:DIR, imagefolder:DIR, folder:DIR "
                        "(unlabeled: no accuracy), or FILE.npz with uint8 'images' (N,H,W[,C]) and 'labels'")
    p.add_argument("--compile", action="store_true",
                   help="also benchmark each checkpoint with torch.compile (a failure is recorded, not fatal)")
    p.add_argument("--profile", nargs="?", type=int, const=10, default=0, metavar="CALLS",
                   help="after timing, profile each ONNX Runtime and OpenVINO artifact with the runtime's own "
                        "profiler over CALLS calls at the latency batch (default 10): milliseconds per op type "
                        "(matmul by precision, quantize / dequantize, LayerNorm, GELU, transpose, reorders) and "
                        "the share of matmul work that ran in INT8 kernels; printed, and written into the "
                        "--json result and the report. Timed figures are measured without the profiler")
    add_measurement_arguments(p)   # the device script's own options, one definition
    add_reading_arguments(p)
    p.set_defaults(choose_threads=True)   # main() chooses --threads: every subject, PyTorch too, runs with it


def bench_config(args: argparse.Namespace):
    """Map CLI options to the harness's BenchConfig, one field each."""
    from ..bench.harness import BenchConfig   # torch and the targets: imported when a command runs

    settings = settings_from_args(args)   # the device script's own reading of its options
    return BenchConfig(data=args.data, settings=settings, threads=args.threads, precision_hint=args.precision_hint,
                       provider=args.provider, compute_units=args.compute_units, limit=args.limit,
                       images=args.images, reference=args.reference, compile=args.compile,
                       device_name=args.device_name, read=read_options(args), profile=args.profile)


def run_bench(args: argparse.Namespace) -> int:
    from ..bench.harness import benchmark, write_results
    from ..bench.rows import int8_verdicts, rows_of

    output_file(args.json, "--json")   # before the benchmark, not after it
    signatures(args.items, args.verify_key)

    def progress(entry: dict) -> None:
        state = "ok" if entry["status"] == "ok" else f"not run: {entry['reason']}"
        print(f"  {entry['name']} ({entry['target']} {entry['precision']}): {state}", file=sys.stderr)

    doc = benchmark(args.items, bench_config(args), on_result=progress)
    print(format_table(doc))
    for _, verdict in int8_verdicts(rows_of([doc])):
        print(verdict)
    for r in doc["results"]:
        if r.get("profile"):
            print(format_profile(r["name"], r["profile"]))
    for r in doc["results"]:
        skipped = (r.get("runtime") or {}).get("not_applied")
        if skipped:
            print(f"note: {r['name']} ({r['target']}) takes no {', '.join(skipped)}; it ran with its defaults")
    if args.json:  # only now: an interrupted benchmark leaves no file
        write_results(args.json, doc)
        print(f"results: {args.json}")
    failed = [r for r in doc["results"] if (r.get("device_check") or {}).get("status") == "failed"]
    if failed:  # timings are written, marked; a device that computes something else is an error
        print(f"error: device check failed for {len(failed)} artifact(s): "
              + "; ".join(f"{r['name']}: {r['device_check']['reason']}" for r in failed), file=sys.stderr)
        return EXIT_DEVICE_CHECK
    not_run = [r for r in doc["results"] if r["status"] != "ok"]
    if not_run:  # recorded (reports show them), but the exit code says not everything ran
        print(f"error: {len(not_run)} of {len(doc['results'])} not run here: "
              + "; ".join(f"{r['name']} ({r['target']}): {r['reason']}" for r in not_run), file=sys.stderr)
        return EXIT_NOT_RUN
    return EXIT_OK


def signatures(items, verify_key) -> None:
    """The artifacts' signatures, before any work, one line per verdict ("onnx-fp32, onnx-int8: signature:
    unsigned"); with --verify-key each is verified or refused. Checkpoints, the PyTorch baselines, are never signed."""
    said: dict[str, list] = {}
    for item in items:
        if (Path(item) / MANIFEST).is_file():
            said.setdefault(signature_line(item, verify_key), []).append(Path(item).resolve().name)
    for line, names in said.items():
        print(f"{', '.join(names)}: {line}")


def add_report_arguments(p: argparse.ArgumentParser) -> None:
    from ..bench.rows import DEFAULT_BUDGET

    p.add_argument("results", nargs="+", metavar="RESULT.json",
                   help="result files of `mixer-edge bench` or edge_bench.py, from one or many devices")
    p.add_argument("--out", required=True, help="output folder for report.md, report.html and the PNG plots")
    p.add_argument("--budget", type=float, default=DEFAULT_BUDGET,
                   help=f"accuracy budget in top-1 points below the best FP32 accuracy for the recommended "
                        f"artifact per device (default {DEFAULT_BUDGET})")


def run_report(args: argparse.Namespace) -> int:
    from ..bench.report import recommendation_text, build_report

    output_folder(args.out, "--out")

    files = build_report(args.results, args.out, budget=args.budget)
    for rec in files.recommendations:
        print(f"recommended on {rec.device}: {recommendation_text(rec)}")
    for device, verdict in files.int8_verdicts:
        print(f"on {device}: {verdict}")
    print(f"report: {files.markdown} and {files.html}")
    return EXIT_OK
