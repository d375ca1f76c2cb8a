"""Shared fixtures: small, seeded, real. One tiny digits model trained once per test session."""
from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

os.environ.setdefault("MIXER_EDGE_PROGRESS", "0")
# The suite's thread count fixed once, before torch loads: every in-process `mixer-edge` command
# then takes it as given (runtime/threads.py) instead of sampling the machine's load each time, and
# leaves torch where the suite put it. Tests of the choice itself unset it.
os.environ.setdefault("OMP_NUM_THREADS", str(len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity")
                                             else os.cpu_count() or 1))
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")   # a suite shares its machine; and fixed, nothing is sampled

MNIST_DIR = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "mnist"
# Does this CPU compute bf16 in hardware? Read from /proc/cpuinfo here, not from the code under test
# (runtime/system.X86_BF16), so the tests of OpenVINO's FP16 hint and auto's candidates can fail.
CPU_BF16 = sys.platform == "linux" and bool({"avx512_bf16", "amx_bf16"} & set(Path("/proc/cpuinfo").read_text().split()))


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


def reseal(folder: Path) -> None:
    """What a deliberate forger does after editing manifest.json: binding.json recomputed to match
    (runtime/claims.py), so that a test reaches the check it is about. Only a signature stops this."""
    import json

    from mixer_edge.runtime.artifact import atomic_write_json
    from mixer_edge.runtime.claims import BINDING, binding_of

    atomic_write_json(Path(folder) / BINDING, binding_of(json.loads((Path(folder) / "manifest.json").read_text())))


def make_keys(folder: Path) -> dict:
    """Two elliptic-curve (P-256) key pairs as PEM files in `folder`, as `openssl ecparam -genkey`
    makes them: {"private", "public", "other_public"}. Skips the test where model-signing (which
    brings cryptography) is not installed: signing is the optional extra `sign`."""
    pytest.importorskip("model_signing")
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import ec

    pem = serialization.Encoding.PEM
    folder.mkdir(parents=True, exist_ok=True)
    out = {}
    for name in ("", "other_"):
        key = ec.generate_private_key(ec.SECP256R1())
        out[f"{name}private"], out[f"{name}public"] = folder / f"{name}key.pem", folder / f"{name}key.pub.pem"
        out[f"{name}private"].write_bytes(
            key.private_bytes(pem, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()))
        out[f"{name}public"].write_bytes(
            key.public_key().public_bytes(pem, serialization.PublicFormat.SubjectPublicKeyInfo))
    return out


@pytest.fixture(scope="session")
def signing_keys(tmp_path_factory) -> dict:
    return make_keys(tmp_path_factory.mktemp("keys"))


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


# ---- a device's Python: JetPack 6's 3.10 with numpy < 2, in a virtual environment ----------------------

JETPACK_PACKAGES = ("numpy==1.26.4", "Pillow>=9", "onnxruntime")   # what the device README installs, numpy as JetPack 6
VENV_CACHE = Path(os.environ.get("MIXER_EDGE_TEST_VENVS", Path.home() / ".cache" / "mixer-edge-test-venvs"))


def python310() -> str | None:
    """These machines' Python 3.10 (pyenv's), or $MIXER_EDGE_PY310, or python3.10 on PATH."""
    pyenv = sorted((Path.home() / ".pyenv" / "versions").glob("3.10.*/bin/python3.10"), reverse=True)
    found = [os.environ.get("MIXER_EDGE_PY310"), *map(str, pyenv), shutil.which("python3.10")]
    # pyenv's shim on PATH names a version it may not select here: the interpreter itself, never the shim
    return next((p for p in found if p and Path(p).is_file() and "/shims/" not in p), None)


def device_venv(name: str, packages: tuple) -> str:
    """The python of a virtual environment made from Python 3.10 holding only `packages` (binary
    wheels), made once and kept under VENV_CACHE; skips the test with the reason where it cannot be."""
    base = python310()
    if base is None:
        pytest.skip("no Python 3.10 here (JetPack 6's Python): looked in ~/.pyenv/versions/3.10.*, $MIXER_EDGE_PY310 "
                    "and PATH")
    key = hashlib.sha256(repr((base, packages)).encode()).hexdigest()[:10]
    folder = VENV_CACHE / f"{name}-{key}"
    if not (folder / ".complete").is_file():
        partial = folder.with_name(folder.name + ".partial")
        shutil.rmtree(partial, ignore_errors=True)
        steps = ([base, "-m", "venv", str(partial)],
                 [str(partial / "bin" / "python"), "-m", "pip", "install", "-q", "--disable-pip-version-check",
                  "--only-binary=:all:", *packages])
        for cmd in steps:
            r = subprocess.run(cmd, capture_output=True, text=True, timeout=900)
            if r.returncode != 0:
                tail = (r.stderr.strip().splitlines() or ["?"])[-1]
                pytest.skip(f"cannot make the Python 3.10 environment ({' '.join(packages)}): {tail}")
        shutil.rmtree(folder, ignore_errors=True)
        partial.rename(folder)
        (folder / ".complete").write_text(" ".join(packages) + "\n")
    return str(folder / "bin" / "python")


@pytest.fixture(scope="session")
def jetpack_python() -> str:
    """Python 3.10 with numpy 1.26, Pillow and ONNX Runtime only: a device as the README sets it up."""
    return device_venv("jetpack", JETPACK_PACKAGES)


@pytest.fixture(scope="session")
def rehearsal_python() -> str:
    """JetPack's Python as above plus onnx, which only the TensorRT double needs (it reads the ONNX)."""
    return device_venv("rehearsal", JETPACK_PACKAGES + ("onnx",))


@pytest.fixture(params=["host", "py3.10-numpy1"])
def py(request) -> str:
    """The interpreter a device script runs under: this one, then JetPack 6's (3.10, numpy < 2)."""
    return sys.executable if request.param == "host" else request.getfixturevalue("rehearsal_python")


@pytest.fixture(autouse=True)
def _signal_stack_kept():
    """After every test, the main thread's alternate signal stack is the process-lifetime one
    (runtime/signal_stack.py): a third-party call that compiled an OpenVINO model outside
    runtime/backends/openvino.compile_model (NNCF, a benchmark function) must not leave a stack
    behind that OpenVINO frees, or a later test's subprocess ends with the suite (exit 139)."""
    yield
    from mixer_edge.runtime.signal_stack import keep

    keep()
