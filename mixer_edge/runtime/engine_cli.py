"""trt_build.py's command line (and `mixer-edge trt build`, which takes the very same options):
build the TensorRT engine of an artifact on this device, check it against the golden set, and with
--data benchmark it with edge_bench.py's measurements into the same JSON."""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

from .artifact import require_writable
from .backends import Options
from .bench import bench_artifact
from .cli import benchmark_defaults, finish
from .conditions import Watch
from .engine import BUILDER_VERSION, build_artifact, verify_engine
from .errors import EXIT_DEVICE_CHECK, EXIT_OK, BadInput, error_boundary
from .identity import SELECTIONS
from .readers import read_data
from .results import check_line, document
from .signing import VERIFY_HELP, signature_line
from .system import base_versions, device_info
from .timing import Settings, parse_batch_sizes

DESCRIPTION = ("trt_build.py: build the TensorRT engine of a mixer-edge TensorRT artifact on the device that "
               "will run it, stamp the versions into the artifact's manifest, and optionally benchmark the engine.")
EPILOG = """Needs tensorrt and numpy, plus one of cuda-python, torch or pycuda for GPU buffers when it runs
the engine (README, "On a Jetson"). Exit status, as edge_bench.py: 0 done; 2 bad input; 3 cannot run here
(no tensorrt, no GPU); 4 the engine failed the artifact's golden check (run right after every build);
130 interrupted."""
INTERRUPTED = "interrupted; the manifest was not changed unless the build finished"


def build_parser(add_help: bool = True) -> argparse.ArgumentParser:
    """The script's options; `mixer-edge trt build` takes the very same (argparse parents)."""
    p = argparse.ArgumentParser(prog="trt_build.py", description=DESCRIPTION, epilog=EPILOG, add_help=add_help,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("artifact", help="TensorRT artifact folder (with manifest.json and model.onnx)")
    p.add_argument("--min-batch", type=int, default=None, help="optimization profile minimum batch (default 1)")
    p.add_argument("--opt-batch", type=int, default=None, help="batch TensorRT tunes kernels for (default 1)")
    p.add_argument("--max-batch", type=int, default=None, help="largest batch the engine takes (default 32)")
    p.add_argument("--timing-cache", default=None, help="timing cache file (default ARTIFACT/timing.cache)")
    p.add_argument("--workspace-mib", type=int, default=None, help="builder workspace limit (default TensorRT's)")
    p.add_argument("--no-build", action="store_true", help="benchmark the engine already built")
    p.add_argument("--data", default=None, help="benchmark on this data after building (edge_bench.py's DATA); "
                                                 "default for a packed artifact: its bundled held-out images")
    p.add_argument("--iters", type=int, default=100, help="timed calls at batch 1 (default 100)")
    p.add_argument("--warmup", type=int, default=10, help="untimed calls (default 10)")
    p.add_argument("--batch-sizes", default="1,8,32", help="throughput batch sizes (default 1,8,32)")
    p.add_argument("--limit", type=int, default=None, help="use only the first N evaluation images")
    p.add_argument("--images", default="held-out", choices=SELECTIONS, help="as edge_bench.py")
    p.add_argument("--reference", default=None, help="FP32 artifact folder for top-1 agreement")
    p.add_argument("--device-name", default=None, help="name of this device in reports")
    p.add_argument("--json", default=None, help="write the benchmark JSON here (atomically)")
    p.add_argument("--verify-key", default=None, metavar="PUBLIC_KEY", help=VERIFY_HELP)
    return p


def bench(folder, args) -> dict:
    """Benchmark the built engine with edge_bench's measurements; returns its result document."""
    settings = Settings(warmup=args.warmup, iters=args.iters, batch_sizes=parse_batch_sizes(args.batch_sizes))
    data = read_data(args.data)
    watch = Watch()
    entry, versions = bench_artifact(folder, data, settings, Options(), args.images, args.limit, args.reference)
    return document([entry], device_info(args.device_name),
                    {**base_versions(), **versions, "trt_build": BUILDER_VERSION}, settings,
                    "trt_build.py", args.data, watch.finish())


def run(argv=None) -> int:
    return run_parsed(build_parser().parse_args(argv))


def run_parsed(args) -> int:
    benchmark_defaults(args, data_required=False)   # a packed artifact: build, then benchmark its bundled images
    if not args.no_build:
        require_writable(args.artifact, "trt_build.py writes the engine, its timing cache and the manifest's "
                                        "engine record into the artifact folder")
    if args.no_build and not args.data:
        raise BadInput("--no-build only makes sense with --data (benchmark the engine already built)")
    print(signature_line(args.artifact, args.verify_key))   # before the build: the ONNX it builds from is signed
    if not args.no_build:
        info = build_artifact(args.artifact, min_batch=args.min_batch, opt_batch=args.opt_batch,
                              max_batch=args.max_batch, timing_cache=args.timing_cache,
                              workspace_mib=args.workspace_mib)
        p = info["plan"]["profile"]
        print(f"built {Path(args.artifact) / info['file']} ({info['bytes'] / 1e6:.1f} MB) in {info['build_s']:.1f} s: "
              f"TensorRT {info['tensorrt']}, CUDA {info['cuda']['version']}, {info['gpu']['name']} "
              f"(sm {info['gpu']['compute_capability']}), batch {p['min'][0]}..{p['max'][0]} (opt {p['opt'][0]})")
        if not args.data:   # else the benchmark runs the golden check, and writes its result even when it fails
            return EXIT_OK if report_check(verify_engine(args.artifact)) else EXIT_DEVICE_CHECK
    return finish(bench(args.artifact, args), args.json)


def report_check(check: dict) -> bool:
    """Print a fresh engine's golden check; False when it failed, True when it passed or could not
    be checked here (says why: the build stands, exit 0; a benchmark would say not run)."""
    if check["status"] == "failed":
        print(f"error: device check failed: {check['reason']}", file=sys.stderr)
        return False
    print(check_line(check))
    return True


def main(argv=None) -> int:
    return error_boundary(lambda: run(argv), INTERRUPTED)
