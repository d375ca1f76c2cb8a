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


@pytest.fixture(scope="session")
def mnist_checkpoint(tmp_path_factory, mnist_dir) -> tuple[Path, str]:
    """Ti/4 trained one epoch on the seeded 8,000-image MNIST train split: a real but quick model."""
    from mixer_edge.train import TrainConfig, train

    out = tmp_path_factory.mktemp("mnist-model")
    spec = f"mnist:{mnist_dir}"
    train(TrainConfig(data=spec, out=str(out), model="Ti/4", epochs=1, batch_size=128, lr=3e-3,
                      warmup_epochs=0.2))
    return out, spec


def block_imports(tmp_path: Path, *names: str) -> dict:
    """An environment in which `import NAME` fails for each name: proves a script needs none of them."""
    shadow = tmp_path / "shadow"
    for name in names:
        (shadow / name).mkdir(parents=True, exist_ok=True)
        (shadow / name / "__init__.py").write_text(f"raise ImportError('{name} is blocked for this test')\n")
    return {**os.environ, "PYTHONPATH": str(shadow)}


# The trained digits model as export tests use it: checkpoint, calibration set, validation data.
@pytest.fixture(scope="session")
def ck(digits_checkpoint):
    from mixer_edge import load_checkpoint

    return load_checkpoint(digits_checkpoint)


@pytest.fixture(scope="session")
def calib(ck):
    from mixer_edge.calibration import make_calibration

    return make_calibration("digits", ck.preprocess, size=100, trained=ck.trained_keys, split=ck.split)


@pytest.fixture(scope="session")
def val(ck):
    from mixer_edge import load_data
    from mixer_edge.data.dataset import take_split
    from mixer_edge.export.reference import validation_data

    part = take_split(load_data("digits"), "eval")
    return validation_data(ck, ck.preprocess(part.images), part.labels, "digits (eval split)")


@pytest.fixture(scope="session")
def digits_onnx_artifact(ck, val, tmp_path_factory) -> Path:
    """The digits model exported to ONNX FP32, validated: a real artifact folder (~2 s)."""
    from mixer_edge.export.base import ExportSpec
    from mixer_edge.export.build import export_one

    out = tmp_path_factory.mktemp("digits-artifacts")
    return export_one(ck, "onnx", ExportSpec("fp32"), None, out, validation=val).artifact.path


@pytest.fixture(scope="session")
def digits_bench_result(digits_onnx_artifact, tmp_path_factory) -> Path:
    """A real `mixer-edge bench` result JSON of that artifact (a few timed calls)."""
    from mixer_edge.cli import main

    path = tmp_path_factory.mktemp("digits-bench") / "result.json"
    assert main(["bench", str(digits_onnx_artifact), "--data", "digits", "--iters", "2", "--warmup", "0",
                 "--batch-sizes", "1", "--json", str(path)]) == 0
    return path


@pytest.fixture(scope="session")
def digits_calib_file(digits_checkpoint, tmp_path_factory) -> Path:
    """A calibration set saved by `mixer-edge calib make` (20 images): calib.npz + calib.json."""
    from mixer_edge.cli import main

    path = tmp_path_factory.mktemp("digits-calib") / "calib.npz"
    assert main(["calib", "make", str(digits_checkpoint), "--data", "digits", "--size", "20", "--out", str(path)]) == 0
    return path
