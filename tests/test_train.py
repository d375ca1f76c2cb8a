"""Training: reproducible, resumable, and data-parallel runs that match one process."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from mixer_edge.errors import BadInput
from mixer_edge.train import TrainConfig, train
from mixer_edge.train import loop


def _cfg(out, **kw):
    base = dict(data="digits", out=str(out), model="T/2", epochs=2, batch_size=64, lr=3e-3, warmup_epochs=0.5)
    return TrainConfig(**{**base, **kw})


def _weights(folder):
    return load_file(str(folder / "model.safetensors"))


def _max_diff(a, b):
    return max(float((a[k] - b[k]).abs().max()) for k in a)


@pytest.mark.parametrize("given, steps_per_epoch, want", [
    (None, 150, 34),     # 4,800 MNIST digits at batch 32: ceil(5,000 / 150)
    (None, 44, 100),     # the 1,438 digits at batch 32 would need 114: capped at 100
    (None, 40_000, 10),  # an ImageNet-sized set: never fewer than 10
    (8, 150, 8),         # a number given is kept
])
def test_auto_epochs_are_about_5000_optimizer_steps(given, steps_per_epoch, want):
    assert _cfg("x", epochs=given).epochs_for(steps_per_epoch) == want


def test_auto_epochs_resolve_before_training_and_are_recorded(tmp_path, monkeypatch):
    """auto becomes a number before the schedule is built; the checkpoint records that number."""
    from mixer_edge.train import config
    monkeypatch.setattr(config, "AUTO_STEPS", 4)
    monkeypatch.setattr(config, "AUTO_EPOCHS", (1, 100))
    train(_cfg(tmp_path / "auto", epochs=None, batch_size=512))    # 1,438 // 512 = 2 steps an epoch
    from mixer_edge import load_checkpoint
    meta = load_checkpoint(tmp_path / "auto").meta
    assert meta["train"]["epochs"] == 2 and [h["epoch"] for h in meta["history"]] == [1, 2]


def test_cli_epochs_accepts_auto_or_a_whole_number():
    from mixer_edge.cli.train import _epochs
    assert _epochs("auto") is None and _epochs("AUTO") is None and _epochs("8") == 8
    import argparse
    with pytest.raises(argparse.ArgumentTypeError, match="whole number or auto, got 'x'"):
        _epochs("x")


def test_same_seed_same_weights_and_checkpoint_metadata(tmp_path):
    r1 = train(_cfg(tmp_path / "a"))
    r2 = train(_cfg(tmp_path / "b"))
    assert _max_diff(_weights(tmp_path / "a"), _weights(tmp_path / "b")) == 0.0
    assert r1.metrics["eval_top1"] == r2.metrics["eval_top1"]
    from mixer_edge import load_checkpoint
    ck = load_checkpoint(tmp_path / "a")
    assert ck.classes == tuple(str(i) for i in range(10))
    assert ck.meta["data"] == "digits" and ck.meta["split"]["seed"] == 0
    assert ck.meta["metrics"]["eval_n"] == 179 and ck.meta["metrics"]["train_n"] == 1438
    import json
    sidecar = json.loads((tmp_path / "a" / "model.json").read_text())
    from mixer_edge.models.checkpoint import sha256_file
    assert sidecar["sha256"] == sha256_file(tmp_path / "a" / "model.safetensors") == ck.sha256


def test_other_seed_other_weights(tmp_path):
    train(_cfg(tmp_path / "a", epochs=1))
    train(_cfg(tmp_path / "b", epochs=1, seed=1))
    assert _max_diff(_weights(tmp_path / "a"), _weights(tmp_path / "b")) > 1e-3


def test_resume_after_interruption_matches_uninterrupted_run(tmp_path, monkeypatch):
    train(_cfg(tmp_path / "full", epochs=3))
    original = loop._save_resume
    calls = []

    def save_then_crash(*args, **kwargs):
        original(*args, **kwargs)
        calls.append(1)
        if len(calls) == 2:
            raise KeyboardInterrupt  # as if Ctrl-C arrived after epoch 2 was saved

    monkeypatch.setattr(loop, "_save_resume", save_then_crash)
    with pytest.raises(KeyboardInterrupt):
        train(_cfg(tmp_path / "cut", epochs=3))
    assert not (tmp_path / "cut" / "model.safetensors").exists()  # no final checkpoint yet
    monkeypatch.setattr(loop, "_save_resume", original)
    result = train(_cfg(tmp_path / "cut", epochs=3, resume=True))
    assert [h["epoch"] for h in loop_history(tmp_path / "cut")] == [1, 2, 3]
    assert result.metrics["epoch"] == 3
    assert _max_diff(_weights(tmp_path / "full"), _weights(tmp_path / "cut")) < 1e-6


def loop_history(folder):
    from mixer_edge import load_checkpoint
    return load_checkpoint(folder).meta["history"]


def test_resume_refuses_changed_settings(tmp_path):
    train(_cfg(tmp_path / "r", epochs=1))
    with pytest.raises(BadInput, match="lr: saved 0.003, now 0.001"):
        train(_cfg(tmp_path / "r", epochs=2, lr=1e-3, resume=True))
    with pytest.raises(BadInput, match="does not exist"):
        train(_cfg(tmp_path / "nothing", resume=True))


def test_two_process_gloo_matches_single_process(tmp_path):
    """torchrun, 2 CPU processes with gloo, global batch 64 = 2 x 32, against one process.
    Only float summation order differs, so after 2 epochs the weights agree to a relative L2 error
    of 1e-3 (measured: 1.2e-4). Per-tensor max-abs is not a fair test: the token-mixing fc2 biases
    get an exactly-zero gradient (every consumer is a LayerNorm over channels, which cancels a
    per-token constant), and AdamW turns that zero's rounding noise into lr-sized steps."""
    # Default augmentation and EMA included: both are seeded per image / deterministic. Stochastic
    # depth draws per sample from each process's generator, so it is off here (as mixup would be).
    # fp32: under bf16 autocast (auto's choice on CPUs with bf16) the rounding also depends on each
    # process's batch shape; measured 4.7e-3 on this test (docs/training.md).
    args = ["--data", "digits", "--model", "T/2", "--epochs", "2", "--batch-size", "64", "--lr", "3e-3",
            "--warmup-epochs", "0.5", "--drop-path", "0", "--precision", "fp32"]
    env = {**os.environ, "MIXER_EDGE_PROGRESS": "0", "OMP_NUM_THREADS": "1"}
    one = subprocess.run([sys.executable, "-m", "mixer_edge.cli", "train", *args, "--out", str(tmp_path / "one")],
                         env=env, capture_output=True, text=True, timeout=300)
    assert one.returncode == 0, one.stderr[-2000:]
    two = subprocess.run([sys.executable, "-m", "mixer_edge.cli", "train", *args, "--nproc", "2",
                          "--out", str(tmp_path / "two")], env=env, capture_output=True, text=True, timeout=300)
    assert two.returncode == 0, two.stderr[-2000:]
    from mixer_edge import load_checkpoint
    assert load_checkpoint(tmp_path / "two").meta["metrics"]["processes"] == 2
    w1, w2 = _weights(tmp_path / "one"), _weights(tmp_path / "two")
    err = sum(float(((w1[k] - w2[k]) ** 2).sum()) for k in w1) ** 0.5
    ref = sum(float((w1[k] ** 2).sum()) for k in w1) ** 0.5
    assert err / ref < 1e-3
    a, b = load_checkpoint(tmp_path / "one").meta["metrics"], load_checkpoint(tmp_path / "two").meta["metrics"]
    assert abs(a["eval_top1"] - b["eval_top1"]) <= 1 / 179  # at most one eval image flips


def test_drop_path_and_dropout_act_only_in_training():
    """regularize sets timm's linear stochastic-depth rule; eval mode (inference, export) is untouched."""
    from mixer_edge.models.variants import create_model

    torch.manual_seed(0)
    model = create_model("T/2", num_classes=10, in_chans=1)
    torch.nn.init.normal_(model.head.weight)   # a zero head would hide every difference
    x = torch.randn(4, 1, 8, 8)
    before = model.eval()(x)
    loop.regularize(model, drop_path=0.3, dropout=0.2)
    assert [round(b.drop_path.p, 6) for b in model.blocks] == [0.0, 0.1, 0.2, 0.3]
    assert all(b.mlp_tokens.drop.p == 0.2 and b.mlp_channels.drop.p == 0.2 for b in model.blocks)
    assert torch.equal(model.eval()(x), before)
    assert not torch.equal(model.train()(x), before)


def test_augmentation_is_seeded_per_image_not_per_process():
    """The same (seed, epoch, index) gives the same augmented image whichever process draws it;
    another epoch gives another."""
    import numpy as np

    from mixer_edge import load_data
    from mixer_edge.data.preprocess import Preprocess
    from mixer_edge.train import augment
    from mixer_edge.train.data import TrainImages

    d = load_data("digits")
    pre = Preprocess.default(8, 1)
    ds = TrainImages(d.images[:16], d.labels[:16], pre, augment.policy("geometry", (8, 8)), seed=3)
    a = ds[5][0]
    torch.manual_seed(123)                 # the global RNG state must not matter
    assert torch.equal(ds[5][0], a)
    state = torch.random.get_rng_state()   # ... nor change: drop path and mixup draw from it next
    ds[6]
    assert torch.equal(torch.random.get_rng_state(), state)
    ds.epoch = 1
    assert not torch.equal(ds[5][0], a)
    plain = TrainImages(d.images[:16], d.labels[:16], pre, None)
    assert np.array_equal(plain[5][0].numpy(), pre(d.images[5:6])[0])   # no augmentation: inference's input
    with pytest.raises(BadInput, match="unknown augmentation 'flip'"):
        augment.policy("flip", (8, 8))


def test_finetune_recipe_sets_the_papers_optimizer_unless_told_otherwise():
    """--recipe finetune: SGD momentum 0.9, no weight decay, clipping at 1, lr 0.01; an option
    given explicitly wins over the recipe."""
    import argparse

    from mixer_edge.cli.train import add_train_arguments, train_config

    p = argparse.ArgumentParser()
    add_train_arguments(p)
    cfg = train_config(p.parse_args(["--data", "digits", "--out", "x", "--recipe", "finetune"]))
    assert (cfg.optimizer, cfg.weight_decay, cfg.clip_grad, cfg.lr) == ("sgd", 0.0, 1.0, 0.01)
    cfg = train_config(p.parse_args(["--data", "digits", "--out", "x", "--recipe", "finetune", "--lr", "0.003"]))
    assert cfg.lr == 0.003 and cfg.optimizer == "sgd"
    assert train_config(p.parse_args(["--data", "digits", "--out", "x"])).optimizer == "adamw"
    assert isinstance(loop.OPTIMIZERS["sgd"]([torch.nn.Parameter(torch.zeros(1))], 0.1), torch.optim.SGD)


def test_training_writes_best_ema_metrics_and_curves(tmp_path):
    """One short run: the last, best and EMA checkpoints load; metrics.jsonl has one line per epoch
    with the EMA's figures; the curve plot is a PNG."""
    import json

    from mixer_edge import load_checkpoint

    train(_cfg(tmp_path / "r", epochs=2))
    lines = [json.loads(x) for x in (tmp_path / "r" / "metrics.jsonl").read_text().splitlines()]
    assert [x["epoch"] for x in lines] == [1, 2] and all("ema_eval_top1" in x for x in lines)
    for sub in ("", "best", "ema"):
        assert load_checkpoint(tmp_path / "r" / sub).config.variant == "T/2"
    assert load_checkpoint(tmp_path / "r" / "ema").meta["weights"] == "exponential moving average"
    assert (tmp_path / "r" / "curves.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_recipes_set_only_what_was_left_at_its_default():
    from mixer_edge.errors import UnknownName
    from mixer_edge.train.config import TrainConfig, with_recipe

    base = TrainConfig(data="digits", out="o", lr=0.02)                       # lr given explicitly
    ft = with_recipe(base, "finetune")
    assert (ft.optimizer, ft.weight_decay, ft.clip_grad, ft.lr) == ("sgd", 0.0, 1.0, 0.02)
    q = with_recipe(TrainConfig(data="digits", out="o", pretrained="p"), qat=True)
    assert (q.qat, q.epochs, q.lr, q.augment, q.ema, q.drop_path) == (True, 5, 1e-3, "geometry", False, 0.0)
    assert with_recipe(base) == base
    with pytest.raises(UnknownName, match="unknown recipe 'fine'; accepted: finetune, scratch; did you mean"):
        with_recipe(base, "fine")


# ---- issue 20: --out never replaces another run or lands among other files without --force ----------

def test_out_holding_another_run_is_refused_and_left_as_it_was(digits_checkpoint, tmp_path, capsys):
    """Before: `train --out EXISTING_RUN` on other data and another variant replaced the trained model."""
    import hashlib
    import shutil

    from mixer_edge.cli import main

    run = Path(shutil.copytree(digits_checkpoint, tmp_path / "run"))
    before = {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in run.iterdir() if p.is_file()}
    assert main(["train", "--data", "digits", "--model", "T/4", "--epochs", "1", "--out", str(run)]) == 2
    assert "holds another training run" in capsys.readouterr().err
    assert {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in run.iterdir() if p.is_file()} == before


def test_out_rules(tmp_path):
    from mixer_edge.errors import BadInput
    from mixer_edge.train.loop import check_out

    check_out(tmp_path / "new", resume=False, force=False)            # new
    (tmp_path / "empty").mkdir()
    check_out(tmp_path / "empty", resume=False, force=False)          # empty
    run = tmp_path / "run"
    run.mkdir()
    (run / "model.safetensors").write_bytes(b"x")
    check_out(run, resume=True, force=False)                          # the run being resumed
    check_out(run, resume=False, force=True)                          # replaced on request
    with pytest.raises(BadInput, match="--resume to continue it, --force to replace it"):
        check_out(run, resume=False, force=False)
    images = tmp_path / "images"
    (images / "7").mkdir(parents=True)
    with pytest.raises(BadInput, match=r"is not empty and holds no training run \(7\)"):
        check_out(images, resume=True, force=False)                   # --resume of nothing is no excuse


def test_qat_moves_every_weight_matrix_by_the_same_fraction_of_itself():
    """loop._param_groups(relative=True): a matrix's learning rate is lr x its RMS / the median
    matrix RMS (by hand here), so a function-preserving rescaling of a few units does not turn Adam's
    absolute step into a rewrite of the small matrices; biases keep lr; plain training one group."""
    net = torch.nn.Sequential(torch.nn.Linear(4, 4), torch.nn.Linear(4, 4), torch.nn.Linear(4, 4))
    with torch.no_grad():
        net[0].weight.fill_(1.0)        # RMS 1
        net[1].weight.fill_(0.001)      # RMS 0.001: a massive unit's fc2 columns
        net[2].weight.fill_(2.0)        # RMS 2
    groups = loop._param_groups(net, 0.05, 1e-3, relative=True)
    lrs = {id(g["params"][0]): g["lr"] for g in groups if g["weight_decay"] > 0}
    assert lrs[id(net[0].weight)] == pytest.approx(1e-3)          # the median matrix
    assert lrs[id(net[1].weight)] == pytest.approx(1e-6)
    assert lrs[id(net[2].weight)] == pytest.approx(2e-3)
    assert [g["lr"] for g in groups if g["weight_decay"] == 0] == [1e-3]
    assert len(loop._param_groups(net, 0.05, 1e-3)) == 2
