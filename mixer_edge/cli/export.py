"""`mixer-edge export`: options -> ExportPlan, one line per artifact."""
from __future__ import annotations

import argparse
import sys

from ..errors import BadInput, name_type, resolve
from ..export.base import CALIB_METHODS, INT4_BLOCK, INT4_FORMATS, ExportSpec
from ..export.registry import AUTO, expand, target_names
from ..export.validate import db_text
from ..runtime.errors import EXIT_OK, EXIT_VALIDATION_FAILED
from ..runtime.schema import PRECISIONS
from .common import add_threads_argument, _data_help, _listed, output_folder
from .reading import add_reading_arguments, read_options


# ---- export ------------------------------------------------------------------------------------

def add_export_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("checkpoint", help="a mixer-edge checkpoint (model.safetensors or its folder), or "
                   "timm / official Google weights")
    p.add_argument("--target", action="append", default=None,
                   help=f"one of {', '.join(target_names())}, or all; repeat or comma-separate for several "
                        "(default onnx). auto: export every target whose runtime runs on this machine, validate "
                        "each, time the ones within the accuracy budget (--max-drop, else 0.5 top-1 points) at "
                        "batch 1 on a real held-out image, and keep only the fastest, with every candidate's "
                        "figures in its manifest (default precisions with auto: int8 when --calib-data is given, "
                        "fp32, and fp16 on a CPU with AVX512-BF16 or AMX, where an FP16 OpenVINO artifact runs "
                        "in bf16)")
    p.add_argument("--precision", action="append", default=None,
                   help=f"{' | '.join(PRECISIONS)}; repeat or comma-separate for several (default fp32)")
    p.add_argument("--int8", action="store_true", help="shorthand for --precision int8")
    p.add_argument("--int4", action="store_true",
                   help="shorthand for --precision int4: 4-bit weights in the token- and channel-mixing MLPs, rounded "
                        "by GPTQ on --calib-data (docs/quantization.md, \"4-bit weights\")")
    p.add_argument("--fp16", action="store_true", help="shorthand for --precision fp16")
    p.add_argument("--calib-data", default=None,
                   help="calibration images for INT8: a data spec (" + _data_help().split(": ", 1)[1] +
                        ") or a saved calib .npz from `mixer-edge calib make`")
    p.add_argument("--calib-size", type=int, default=300,
                   help="calibration images to draw (default 300): from the training data only its calibration "
                        "split; from other images, with --eval-data, all of them (else a tenth stays for validation)")
    p.add_argument("--calib-seed", type=int, default=0, help="calibration selection seed (default 0)")
    p.add_argument("--calib-method", type=name_type("calibration method", CALIB_METHODS), default=None,
                   help="INT8 activation range estimator, the same for every target: minmax, percentile "
                        "(99.99th), entropy (TensorRT's KL search) or mse (least squared int8 error); "
                        "default mse, the most accurate on every target (docs/quantization.md)")
    p.add_argument("--smooth", type=float, default=0.5, metavar="ALPHA",
                   help="INT8: SmoothQuant strength for the exact LayerNorm -> channel-MLP and -> head folds, "
                        "0..1 (default 0.5)")
    p.add_argument("--no-smooth", dest="smooth", action="store_const", const=None,
                   help="INT8: quantize the model as it is, without smoothing")
    p.add_argument("--no-split", dest="split", action="store_false",
                   help="INT8: keep every MLP whole; by default an MLP whose hidden units include a few massive "
                        "ones (measured on the calibration images) is split exactly into two, so each half gets "
                        "its own int8 range (docs/quantization.md)")
    p.add_argument("--keep-float", default="", metavar="LAYERS",
                   help="INT8: comma-separated layers (module paths such as blocks.0.mlp_tokens.fc2, see "
                        "`mixer-edge quant inspect`) kept in float")
    p.add_argument("--max-drop", type=float, default=None, metavar="POINTS",
                   help="INT8, every target: keep the most sensitive layers in float, one at a time, until top-1 "
                        "on the validation images is at most POINTS percentage points below FP32 (e.g. 0.1); "
                        "says so when it cannot be met")
    p.add_argument("--coreml-input", type=name_type("Core ML input kind", ["tensor", "image"]), default="tensor",
                   help="Core ML: a float tensor input, or an image input with the preprocessing baked in "
                        "(needs one std for all channels); default tensor")
    p.add_argument("--coreml-target", default="iOS17",
                   help="Core ML minimum deployment target: iOS16, iOS17, iOS18, macOS13, macOS14, macOS15 "
                        "(default iOS17; W8A8 needs iOS17 / macOS14 or newer)")
    p.add_argument("--int4-block", type=int, default=INT4_BLOCK, metavar="N",
                   help=f"INT4: weights per scale along each layer's inputs, a power of two >= 16 (default "
                        f"{INT4_BLOCK}; larger: a smaller file, a coarser grid)")
    p.add_argument("--int4-token-bits", type=int, default=8, choices=(8, 4), metavar="{8,4}",
                   help="INT4: weight bits of the token-mixing MLPs (3-5 %% of the weights): 8 (default; at 4 bits "
                        "they carry most of the error) or 4 for the smallest file")
    p.add_argument("--int4-format", default="blocks", choices=INT4_FORMATS,
                   help="INT4: blocks (default; a scale per --int4-block weights, every target) or palette (Core ML "
                        "only): one 16-entry float16 table per layer, k-means refitted by GPTQ, bits spread over the "
                        "layers (token mixing 6, the least sensitive channel layers 3) at the size of a uniform "
                        "4-bit palette, the format of coremltools' palettization")
    p.add_argument("--weights-only", action="store_true",
                   help="with --int8: quantize weights only, activations stay float (Core ML, OpenVINO)")
    p.add_argument("--eval-data", default=None,
                   help="images to validate on, less every image the model was trained or calibrated on "
                        "(recognised by content); default: the held-out eval split of --calib-data, else of "
                        "the training data")
    add_reading_arguments(p)   # for --calib-data and --eval-data
    p.add_argument("--out", required=True, help="output folder; one sub-folder TARGET-PRECISION per artifact")
    p.add_argument("--force", action="store_true",
                   help="write into an --out that holds files other than mixer-edge artifacts, and replace "
                        "TARGET-PRECISION folders that are not artifacts; without it both are refused before any work")
    p.add_argument("--strict", action="store_true",
                   help="fail a check the validation images are too few to decide. Top-1 agreement (and the "
                        "--max-drop budget) is decided on the exact 95%% interval of the count: below the "
                        "threshold fails, above passes, an interval holding it is 'undecided: too few images', "
                        "kept and said unless --strict (e.g. 20 images can never show agreement >= 0.98)")
    p.add_argument("--keep-invalid", action="store_true",
                   help="keep artifacts that fail validation, marked so in their manifest (the exit code still "
                        "says they failed); without it a failed artifact is discarded and a previous artifact "
                        "at its path removed, so that nothing there looks current")
    add_threads_argument(p)
    p.add_argument("--sign-key", default=None, metavar="PRIVATE_KEY",
                   help="sign each artifact with this elliptic-curve private key (PEM; OpenSSF model signing, "
                        "offline): ARTIFACT/artifact.sig, which edge_bench.py / mixer-edge bench --verify-key PUB "
                        "check. Needs model-signing: pip install \"mixer-edge[sign]\"")




def export_plan(args: argparse.Namespace):
    """Map CLI options to the library's ExportPlan and ExportSpec, one field each."""
    from ..export.auto import default_precisions   # torch: imported when the command runs, not for --help
    from ..export.plan import ExportPlan

    listed_precisions = bool(args.precision or args.int8 or args.int4 or args.fp16)
    listed = _listed(args.precision, "fp32") if args.precision or not (args.int8 or args.int4 or args.fp16) else ()
    precisions = list(dict.fromkeys(resolve("precision", p, PRECISIONS) for p in listed))
    precisions += [p for p, on in (("fp16", args.fp16), ("int8", args.int8), ("int4", args.int4)) if on and p not in precisions]
    spec = ExportSpec(calib_method=args.calib_method, smooth=args.smooth, split=args.split, float_layers=_listed([args.keep_float], ""),
                      max_drop=args.max_drop, coreml_input=args.coreml_input, coreml_target=args.coreml_target,
                      weights_only=args.weights_only, strict=args.strict,
                      int4_block=args.int4_block, int4_token_bits=args.int4_token_bits,
                      int4_format=args.int4_format)
    targets = _listed(args.target, "onnx")
    if AUTO in (t.lower() for t in targets):
        if len(targets) > 1:
            raise BadInput(f"--target auto chooses among every target that runs here; it takes no other target "
                           f"(got {', '.join(targets)})")
        targets = [AUTO]
        if not listed_precisions:
            precisions = default_precisions(calibrated=bool(args.calib_data))
    else:
        targets = expand(targets)
    return ExportPlan(targets=tuple(targets), precisions=tuple(precisions),
                      out_dir=args.out, calib_data=args.calib_data, calib_size=args.calib_size,
                      calib_seed=args.calib_seed, eval_data=args.eval_data, force=args.force,
                      keep_invalid=args.keep_invalid, spec=spec, sign_key=args.sign_key, read=read_options(args))


# How the summary names what validation compared with (export/reference.reference); a line drops "FP32".
REFERENCE_NAMES = {"pytorch-fp32": "PyTorch FP32", "pytorch-qat-int8": "PyTorch QAT INT8"}


def validation_line(o) -> str:
    v = o.validation
    if v.get("skipped"):   # the runtime did not run here; a structural check (the INT8 op count) still may fail
        failed = "" if o.passed else "; FAILED: " + "; ".join(o.problems) + o.fate
        return f"{o.dest.name:16} validation skipped: {v['skipped']}{failed}"
    if v.get("refused"):   # a structural check refused it before validation could run
        return f"{o.dest.name:16} FAILED: {v['refused']}{o.fate}"
    reference = REFERENCE_NAMES.get(v.get("reference"), "PyTorch").removesuffix(" FP32")
    acc = f" top-1 {v['top1']:.4f} ({reference} {v['reference_top1']:.4f})" if "top1" in v else \
        f" no top-1: {(v.get('images') or {}).get('labels', 'no labels')}"
    verdict = "ok" if o.passed else "FAILED: " + "; ".join(o.problems) + o.fate
    if o.passed and v.get("status") == "undecided":
        verdict = "undecided"
    open_ = "".join(f"\n{'':16} {line}" for line in v.get("undecided") or [] if o.passed)
    return (f"{o.dest.name:16} {verdict:6} max|diff| {v['max_abs_diff']:.2e}  agree {v['top1_agreement']:.4f}  "
            f"cos {v['cosine']:.5f}  SQNR {db_text(v['sqnr_db'])}{acc}  [{v['samples']} images]{open_}")


def run_export(args: argparse.Namespace) -> int:
    from ..export.plan import run_plan

    output_folder(args.out, "--out")
    plan = export_plan(args)
    if plan.targets == (AUTO,):
        return run_auto_export(args, plan)
    outcomes = run_plan(args.checkpoint, plan, on_done=lambda o: print(validation_line(o)))
    for o in outcomes:
        for note in o.artifact.manifest["export"].get("notes", []) if o.artifact else []:
            print(f"note: {o.dest.name}: {note}", file=sys.stderr)
    failed = [o for o in outcomes if not o.passed]
    if failed:
        print(f"error: {len(failed)} of {len(outcomes)} artifacts failed validation against {_compared_with(outcomes)}",
              file=sys.stderr)
        return EXIT_VALIDATION_FAILED
    print(summary_line(outcomes, args.out))
    if args.sign_key:
        print(f"signed with {args.sign_key}: {len(outcomes)} artifact(s), each ARTIFACT/artifact.sig")
    return EXIT_OK


def run_auto_export(args: argparse.Namespace, plan) -> int:
    from ..export.plan import run_auto

    print("--target auto: every candidate this machine runs, validated, then timed", file=sys.stderr)
    kept, figures = run_auto(args.checkpoint, plan, on_done=lambda o: print(validation_line(o)))
    print(candidates_table(figures))
    print(f"kept: {kept.dest} (the fastest within the accuracy budget; the others discarded; every candidate's "
          f"figures in its manifest.json under \"selection\")")
    if args.sign_key:
        print(f"signed with {args.sign_key}: {kept.dest}/artifact.sig")
    return EXIT_OK


def candidates_table(figures: list[dict]) -> str:
    """One line per candidate: its batch-1 median, top-1, and why it was not eligible."""
    lines = ["candidate         p50 ms   top-1     ", ]
    for f in figures:
        ms = "-" if f["p50_ms"] is None else f"{f['p50_ms']:.3f}"
        top1 = "-" if f["top1"] is None else f"{100 * f['top1']:.2f}%"
        state = "kept" if f["chosen"] else (f["why"] if not f["eligible"] else "slower")
        lines.append(f"{f['name']:16}  {ms:>7}  {top1:>8}  {state}")
    return "\n".join(lines)


def _compared_with(outcomes) -> str:
    """'PyTorch FP32', 'PyTorch QAT INT8' or both: what this plan's artifacts were compared with."""
    used = sorted({REFERENCE_NAMES[r] for o in outcomes if (r := o.validation.get("reference")) in REFERENCE_NAMES})
    return " / ".join(used) or "PyTorch FP32"


def summary_line(outcomes, out) -> str:
    """Passed and skipped counted apart: a check that did not run is never reported as passed."""
    skipped = [o for o in outcomes if o.validation.get("skipped")]
    passed = len(outcomes) - len(skipped)
    text = f"{passed} artifact(s) validated against {_compared_with(outcomes)}"
    if skipped:
        text += (f", {len(skipped)} written with validation skipped (runtime not available here: "
                 f"{', '.join(o.dest.name for o in skipped)})")
    return f"{text}; under {out}"
