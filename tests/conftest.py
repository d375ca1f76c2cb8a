"""Shared fixtures: small, seeded, real. One tiny digits model trained once per test session."""
from __future__ import annotations

import os
from pathlib import Path

import pytest

os.environ.setdefault("MIXER_EDGE_PROGRESS", "0")

MNIST_DIR = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "mnist"


@pytest.fixture(scope="session")
def mnist_dir() -> Path:
    if not (MNIST_DIR / "t10k-images-idx3-ubyte.gz").is_file():
        pytest.skip(f"MNIST test set not found at {MNIST_DIR}")
    return MNIST_DIR


@pytest.fixture(scope="session")
def digits_checkpoint(tmp_path_factory) -> Path:
    """T/2 trained on the digits train split for 6 epochs (~10 s on 2 cores, ~95% eval top-1)."""
    from mixer_edge.train import TrainConfig, train

    out = tmp_path_factory.mktemp("digits-model")
    result = train(TrainConfig(data="digits", out=str(out), model="T/2", epochs=6, batch_size=64,
                               lr=3e-3, warmup_epochs=1))
    assert result.metrics["eval_top1"] > 0.85, result.metrics
    return out
