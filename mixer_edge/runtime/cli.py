"""edge_bench.py's command line: benchmark one artifact on the device that runs it (--data), or
classify images with it (--predict). `mixer-edge bench` takes the same measurement options
(add_measurement_arguments)."""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

from .artifact import atomic_write_json, read_manifest, require_writable
from .backends import Options
from .backends.coreml import COMPUTE_UNITS
from .backends.openvino import PRECISION_HINTS
from .bench import bench_artifact
from .bundle import bundled_data, default_result
from .conditions import Watch
from .errors import EXIT_BAD_INPUT, EXIT_DEVICE_CHECK, EXIT_NOT_RUN, EXIT_OK, BadInput, error_boundary
from .identity import SELECTIONS
from .predict import format_errors, format_predictions, load, predict_files
from .readers import DATA_HELP, read_data
from .results import document, format_table
from .signing import VERIFY_HELP, signature_line
from .system import base_versions, device_info
from .threads import use_threads
from .timing import Settings, parse_batch_sizes

DESCRIPTION = "edge_bench.py: benchmark one mixer-edge artifact on the device that runs it."
EPILOG = """It reads ARTIFACT_DIR/manifest.json, checks every file's sha256 and the manifest's claims against the
model file (precision, shapes, classes, golden threshold), loads the model (timed), applies the manifest's
preprocessing, runs the artifact's golden set (device_check: real images with the FP32 PyTorch
logits recorded at export; the runtime here must reproduce them), then measures first-inference time,
latency at batch 1 and throughput per batch size (with the median's 95% interval), top-1 / top-5 accuracy
and memory, and writes the same versioned JSON as `mixer-edge bench` (atomically).
Exit status: 0 done; 2 bad input (tampered artifact, a manifest edited against its model file, a signature
that does not verify under --verify-key, unknown data, class-count mismatch); 3 the runtime
cannot run here (the result, marked not-run, is still written); 4 the device check failed (the result,
marked, is still written); 130 interrupted."""


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="edge_bench.py", description=DESCRIPTION, epilog=EPILOG,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("artifact", help="artifact folder (with manifest.json)")
    p.add_argument("--data", default=None, help=f"evaluation data to benchmark on: {DATA_HELP}; default for a packed "
                                                 f"artifact (mixer-edge pack): its bundled held-out images")
    p.add_argument("--predict", nargs="+", default=None, metavar="IMAGE_OR_FOLDER",
                   help="instead of benchmarking: print each image's top classes (with --top-k, --json)")
    p.add_argument("--top-k", type=int, default=5, help="classes shown per image with --predict (default 5)")
    add_measurement_arguments(p)
    return p


def add_measurement_arguments(p: argparse.ArgumentParser) -> None:
    """The measurement options this script and `mixer-edge bench` share, defined once."""
    how = p.add_mutually_exclusive_group()
    how.add_argument("--iters", type=int, default=None, help="timed calls at batch 1 after warm-up (default 100)")
    how.add_argument("--duration", type=float, default=None,
                     help="time calls for this many seconds instead of a fixed count (also per batch size)")
    p.add_argument("--warmup", type=int, default=10, help="untimed calls after the first, timed one (default 10)")
    p.add_argument("--min-calls", type=int, default=Settings.min_calls,
                   help=f"every measurement (latency, each batch size) takes at least this many timed calls "
                        f"(default {Settings.min_calls})")
    p.add_argument("--min-time", type=float, default=Settings.min_seconds,
                   help=f"... and at least this many seconds, so a fast model's calls do not all fall in one "
                        f"burst of noise (default {Settings.min_seconds:g}; 0: off)")
    p.add_argument("--batch-sizes", default="1,8,32",
                   help="throughput batch sizes, comma-separated, when the batch axis is dynamic (default 1,8,32)")
    p.add_argument("--threads", type=int, default=None,
                   help="runtime threads (ONNX Runtime intra-op, OpenVINO INFERENCE_NUM_THREADS, torch), the same "
                        "for every model measured; default: the CPUs this process may use less the whole cores "
                        "other processes are busy with at the start (OMP_NUM_THREADS when set); printed as "
                        "'threads: N (...)' and recorded")
    p.add_argument("--precision-hint", choices=PRECISION_HINTS, default=None,
                   help="OpenVINO INFERENCE_PRECISION_HINT (default f32; bf16 for an FP16 artifact on a "
                        "CPU with AVX512-BF16 or AMX)")
    p.add_argument("--provider", default=None,
                   help="ONNX Runtime execution provider (default CPUExecutionProvider) or OpenVINO device "
                        "(default CPU)")
    p.add_argument("--compute-units", default=None, type=str.upper, choices=COMPUTE_UNITS,
                   help="Core ML compute units (default ALL): CPU_AND_NE asks for the Neural Engine (every batch "
                        "shape the program declares may run there), CPU_AND_GPU, CPU_ONLY; recorded in the result")
    p.add_argument("--limit", type=int, default=None, help="evaluate on the first N images only")
    p.add_argument("--images", default="held-out", choices=SELECTIONS,
                   help="held-out (default): only the images of --data that the model was not trained and the "
                        "artifact not calibrated on, recognised by content; all: every image, those included")
    p.add_argument("--reference", default=None,
                   help="FP32 artifact (or, with mixer-edge bench, checkpoint) for top-1 agreement and logit cosine")
    p.add_argument("--device-name", default=None, help="name of this device in reports (default: host name)")
    p.add_argument("--json", default=None, help="write the versioned result JSON here (atomically)")
    p.add_argument("--verify-key", default=None, metavar="PUBLIC_KEY", help=VERIFY_HELP)


def settings_from_args(args: argparse.Namespace) -> Settings:
    """Settings from add_measurement_arguments' options: 100 timed calls unless --iters or --duration."""
    iters = args.iters if args.iters is not None or args.duration is not None else 100
    return Settings(warmup=args.warmup, iters=iters, duration=args.duration,
                    batch_sizes=parse_batch_sizes(args.batch_sizes), min_calls=args.min_calls,
                    min_seconds=args.min_time)


def run(argv=None) -> int:
    args = build_parser().parse_args(argv)
    if args.predict:
        return run_predict(args)
    benchmark_defaults(args)
    settings = settings_from_args(args)
    if args.limit is not None and args.limit < 1:
        raise BadInput(f"--limit must be at least 1, got {args.limit}")
    manifest = read_manifest(args.artifact)  # a tampered artifact fails before the data is read
    print(signature_line(args.artifact, args.verify_key))   # with --verify-key: an altered one fails here too
    use_threads(args.threads)   # the runtimes' default count (OMP_NUM_THREADS), idle threads sleeping; printed
    data = read_data(args.data)
    options = Options(threads=args.threads, precision_hint=args.precision_hint, provider=args.provider,
                      compute_units=args.compute_units)
    watch = Watch()   # power mode, clocks, load and temperatures before and after
    entry, versions = bench_artifact(args.artifact, data, settings, options, args.images, args.limit,
                                     args.reference, manifest)
    doc = document([entry], device_info(args.device_name), {**base_versions(), **versions}, settings,
                   "edge_bench.py", args.data, watch.finish((entry["runtime"] or {}).get("compute_units")))
    return finish(doc, args.json)


def benchmark_defaults(args, data_required: bool = True) -> None:
    """A packed artifact's defaults: with no --data its bundled images, and with no --json its
    result written to ARTIFACT/result-<device>.json (the file its device README says to fetch).
    Then the result's folder must be writable, checked before any work. An artifact that was not
    packed needs --data where data_required (edge_bench.py; trt_build.py may only build)."""
    bundled = bundled_data(args.artifact)
    if bundled is None and not args.data and data_required:
        raise BadInput("give --data SPEC to benchmark, or --predict IMAGE... to classify images (a packed "
                       "artifact, made by mixer-edge pack, benchmarks its bundled images by default)")
    if bundled is not None and not args.data:
        args.data, bundle = bundled
        print(f"data: the bundle's {bundle['images']} held-out images ({bundle['data']})")
    if bundled is not None and not args.json:
        args.json = str(Path(args.artifact) / default_result(args.device_name))
        print(f"result: {args.json} (written when the run ends)")
    if args.data and args.json:
        require_writable(Path(args.json).parent, f"the result {args.json}")


def finish(doc: dict, json_path) -> int:
    """Print the result table, write the JSON (atomically), and say how the one result ended:
    EXIT_NOT_RUN or EXIT_DEVICE_CHECK with the reason on stderr, else EXIT_OK."""
    print(format_table(doc))
    if json_path:
        atomic_write_json(json_path, doc)
    entry = doc["results"][0]
    if entry["status"] != "ok":
        print(f"error: not run: {entry['reason']}", file=sys.stderr)
        return EXIT_NOT_RUN
    check = entry.get("device_check") or {}
    if check.get("status") == "failed":
        print(f"error: device check failed for {entry['name']}: {check['reason']}", file=sys.stderr)
        return EXIT_DEVICE_CHECK
    return EXIT_OK


def run_predict(args) -> int:
    use_threads(args.threads)
    # verified before any work; a status line on stderr: stdout holds the answers alone, one line per image
    print(signature_line(args.artifact, args.verify_key), file=sys.stderr)
    model = load(args.artifact, threads=args.threads, precision_hint=args.precision_hint, provider=args.provider,
                 compute_units=args.compute_units)
    doc = predict_files(args.predict, model.logits, model.classes, args.top_k, str(args.artifact),
                        model.manifest["preprocess"]["size"])
    return finish_predictions(doc, args.json)


def finish_predictions(doc: dict, json_path, skip_bad: bool = False) -> int:
    """Print each file's answer (predictions on stdout, one error line per file that could not be read
    on stderr), write the JSON, and exit 0 only when every file was answered (with skip_bad: when at
    least one was, the others listed as skipped)."""
    if doc["predictions"]:
        print(format_predictions(doc))
    for line in format_errors(doc, skip_bad):
        print(line, file=sys.stderr)
    if json_path:
        atomic_write_json(json_path, doc)
    if doc["errors"] and skip_bad and not doc["predictions"]:
        print(f"error: none of the {len(doc['errors'])} images could be read", file=sys.stderr)
    answered = not doc["errors"] or (skip_bad and doc["predictions"])
    return EXIT_OK if answered else EXIT_BAD_INPUT


def main(argv=None) -> int:
    return error_boundary(lambda: run(argv), "interrupted; no result written")
