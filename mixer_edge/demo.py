"""`mixer-edge demo`: the whole flow on the built-in digits set, end to end, in about a minute.

Each stage is a plain function call on the previous stage's value; later stages (export,
benchmark, report) append themselves here as they land.
"""
from __future__ import annotations

from pathlib import Path
from typing import Callable

from .models.checkpoint import atomic_write_json

DEMO_DATA = "digits"
DEMO_MODEL = "T/2"


def run(out: Path, *, epochs: int = 30, say: Callable[[str], None] = print) -> Path:
    from .train import TrainConfig, train

    out = Path(out)
    say(f"[1/1] training {DEMO_MODEL} on {DEMO_DATA} (scikit-learn's 8x8 digits) for {epochs} epochs")
    cfg = TrainConfig(data=DEMO_DATA, out=str(out / "model"), model=DEMO_MODEL, epochs=epochs,
                      batch_size=64, lr=3e-3, warmup_epochs=2)
    result = train(cfg)
    m = result.metrics
    say(f"      eval top-1 {m['eval_top1']:.4f} top-5 {m['eval_top5']:.4f} on {m['eval_n']} held-out images "
        f"({m['wall_s']:.1f} s)")
    summary = {"data": DEMO_DATA, "model": DEMO_MODEL, "checkpoint": str(result.checkpoint), "train": m}
    atomic_write_json(out / "summary.json", summary)
    (out / "summary.md").write_text(_markdown(summary))
    return out / "summary.json"


def _markdown(s: dict) -> str:
    m = s["train"]
    return (f"# mixer-edge demo\n\n- model: {s['model']} on `{s['data']}`\n- checkpoint: `{s['checkpoint']}`\n"
            f"- eval top-1: {m['eval_top1']:.4f}, top-5: {m['eval_top5']:.4f} on {m['eval_n']} held-out images\n"
            f"- training wall time: {m['wall_s']:.1f} s ({m['epoch']} epochs, {m['train_n']} images)\n")
