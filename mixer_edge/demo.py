"""`mixer-edge demo`: the whole flow on the built-in digits set, end to end, in about a minute.

Each stage is a plain function call on the previous stage's value: train -> calibration set ->
export every installed target at FP32 / FP16 / INT8, each validated against PyTorch.
"""
from __future__ import annotations

from pathlib import Path
from typing import Callable

from .models.checkpoint import atomic_write_json

DEMO_DATA = "digits"
DEMO_MODEL = "T/2"
DEMO_CALIB_SIZE = 150  # digits' calibration split holds 180 images


def run(out: Path, *, epochs: int = 30, say: Callable[[str], None] = print) -> Path:
    out = Path(out)
    m, checkpoint = _train(out, epochs, say)
    outcomes = _export(checkpoint, out / "artifacts", say)
    summary = {"data": DEMO_DATA, "model": DEMO_MODEL, "checkpoint": str(checkpoint), "train": m,
               "artifacts": [{"artifact": str(o.dest), "passed": o.passed, "validation": o.validation}
                             for o in outcomes]}
    atomic_write_json(out / "summary.json", summary)
    (out / "summary.md").write_text(_markdown(summary))
    return out / "summary.json"


def _train(out: Path, epochs: int, say):
    from .train import TrainConfig, train

    say(f"[1/2] training {DEMO_MODEL} on {DEMO_DATA} (scikit-learn's 8x8 digits) for {epochs} epochs")
    result = train(TrainConfig(data=DEMO_DATA, out=str(out / "model"), model=DEMO_MODEL, epochs=epochs,
                               batch_size=64, lr=3e-3, warmup_epochs=2))
    m = result.metrics
    say(f"      eval top-1 {m['eval_top1']:.4f} top-5 {m['eval_top5']:.4f} on {m['eval_n']} held-out images "
        f"({m['wall_s']:.1f} s)")
    return m, result.checkpoint.parent


def _export(checkpoint: Path, out: Path, say) -> list:
    from .cli import validation_line
    from .export import ExportPlan, run_plan
    from .export.registry import get_target, target_names

    targets = [t for t in target_names() if get_target(t).status().installed]
    say(f"[2/2] exporting to {', '.join(targets)} at fp32, fp16, int8 "
        f"(calibration: {DEMO_CALIB_SIZE} images of the calib split; validation: the eval split)")
    plan = ExportPlan(targets=tuple(targets), precisions=("fp32", "fp16", "int8"), out_dir=str(out),
                      calib_data=DEMO_DATA, calib_size=DEMO_CALIB_SIZE, eval_data=DEMO_DATA, keep_invalid=True)
    return run_plan(checkpoint, plan, on_done=lambda o: say("      " + validation_line(o)))


def _markdown(s: dict) -> str:
    m = s["train"]
    lines = [f"# mixer-edge demo\n", f"- model: {s['model']} on `{s['data']}`", f"- checkpoint: `{s['checkpoint']}`",
             f"- eval top-1: {m['eval_top1']:.4f}, top-5: {m['eval_top5']:.4f} on {m['eval_n']} held-out images",
             f"- training wall time: {m['wall_s']:.1f} s ({m['epoch']} epochs, {m['train_n']} images)\n",
             "| artifact | passed | top-1 | agreement | cosine | SQNR dB | max abs diff |", "|---|---|---|---|---|---|---|"]
    for a in s["artifacts"]:
        v = a["validation"]
        if v.get("skipped"):
            lines.append(f"| {Path(a['artifact']).name} | skipped: {v['skipped']} | | | | | |")
            continue
        lines.append(f"| {Path(a['artifact']).name} | {a['passed']} | {v.get('top1', float('nan')):.4f} | "
                     f"{v['top1_agreement']:.4f} | {v['cosine']:.5f} | {v['sqnr_db']:.1f} | {v['max_abs_diff']:.2e} |")
    return "\n".join(lines) + "\n"
