"""The device rehearsal: the artifact's own scripts (trt_build.py, edge_bench.py) run end to end in
a fresh process as on a Jetson or a GPU host, against test doubles of TensorRT 10.3 / 11.x,
cuda-python 12 / 13, pycuda and nvidia-smi (tests/doubles, README there). torch and mixer_edge are
blocked, as on a device. The doubles prove the scripts' logic (calls, checks, messages, exit
codes), not TensorRT: a real device is the proof of that.

Each failure mode of the issue is a test here; every one failed on the code before the fix."""
from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import block_imports, reseal
from mixer_edge.export.base import ExportSpec
from mixer_edge.export.build import export_one
from mixer_edge.runtime.errors import EXIT_BAD_INPUT, EXIT_DEVICE_CHECK, EXIT_NOT_RUN, EXIT_OK

pytest.importorskip("onnxruntime")
onnx = pytest.importorskip("onnx")

DOUBLES = Path(__file__).resolve().parent / "doubles"
ERROR = re.compile(r"^error: ", re.M)


@pytest.fixture(scope="module")
def trt_artifacts(ck, calib, val, tmp_path_factory) -> dict:
    """TensorRT artifacts (engine not built: no TensorRT here) of the digits model, fp32 and int8."""
    out = tmp_path_factory.mktemp("trt-artifacts")
    return {p: export_one(ck, "tensorrt", ExportSpec(p, calib_method="minmax" if p == "int8" else None),
                          calib if p == "int8" else None, out, validation=val).artifact.path
            for p in ("fp32", "int8")}


@pytest.fixture(scope="module")
def digit_pngs(tmp_path_factory) -> Path:
    """The 1,797 digits as PNG class folders: what a user copies to the device."""
    from PIL import Image

    from mixer_edge import load_data

    d, root = load_data("digits"), tmp_path_factory.mktemp("digit-pngs")
    for i, (im, y) in enumerate(zip(d.images, d.labels)):
        (root / d.classes[y]).mkdir(exist_ok=True)
        Image.fromarray(im[..., 0]).save(root / d.classes[y] / f"{i:04d}.png")
    return root


@pytest.fixture(scope="module")
def digits_npz(tmp_path_factory) -> str:
    """The 1,797 digits as an .npz (uint8 images, labels, classes): data a device reads with numpy
    alone (the `digits` spec needs scikit-learn, which a device does not have)."""
    import numpy as np

    from mixer_edge import load_data

    d, path = load_data("digits"), tmp_path_factory.mktemp("digits-npz") / "digits.npz"
    np.savez(path, images=d.images, labels=d.labels, classes=np.array(d.classes))
    return str(path)


def device(tmp_path, bins=("bin", "jetson"), **env) -> dict:
    """The environment of a device: the doubles importable, their tools on PATH (by default a
    Jetson's: nvidia-smi, nvpmodel, jetson_clocks), no torch, no mixer_edge."""
    blocked = block_imports(tmp_path, "torch", "mixer_edge")
    path = os.pathsep.join([*(str(DOUBLES / b) for b in bins), os.environ["PATH"]])
    return {**blocked, "PYTHONPATH": f"{DOUBLES}{os.pathsep}{blocked['PYTHONPATH']}", "PATH": path,
            "OMP_NUM_THREADS": "1", **env}


def on_device(artifact: Path, tmp_path: Path, name: str = "art") -> Path:
    folder = tmp_path / name
    shutil.copytree(artifact, folder)
    return folder


def run(python: str, folder: Path, script: str, *args, env: dict) -> subprocess.CompletedProcess:
    return subprocess.run([python, script, *map(str, args)], cwd=folder, env=env, capture_output=True, text=True,
                          timeout=300)


def one_error(r: subprocess.CompletedProcess, code: int, *words) -> str:
    """Exit code `code`, exactly one `error:` line holding every word, no traceback."""
    assert "Traceback" not in r.stderr, r.stderr
    assert r.returncode == code, (r.returncode, r.stdout, r.stderr)
    lines = ERROR.findall(r.stderr)
    assert len(lines) == 1, r.stderr
    line = next(ln for ln in r.stderr.splitlines() if ln.startswith("error: "))
    assert all(w in line for w in words), line
    return line


def manifest(folder: Path) -> dict:
    return json.loads((folder / "manifest.json").read_text())


# ---- the happy path: build, stamp, golden check, benchmark, predict ---------------------------------

@pytest.mark.parametrize("precision", ["fp32", "int8"])
def test_build_check_benchmark_and_predict(trt_artifacts, digit_pngs, tmp_path, precision, py):
    folder = on_device(trt_artifacts[precision], tmp_path)
    env = device(tmp_path)
    r = run(py, folder, "trt_build.py", ".", "--data", f"imagefolder:{digit_pngs}", "--iters", "3", "--warmup", "0",
            "--batch-sizes", "1,8", "--json", "r.json", env=env)
    assert r.returncode == EXIT_OK, r.stderr
    assert "built model.engine" in r.stdout and "device check passed" in r.stdout
    m = manifest(folder)
    engine = m["export"]["engine"]
    assert engine["built"] is True and "model.engine" in {f["path"] for f in m["files"]}
    result = json.loads((folder / "r.json").read_text())["results"][0]
    assert result["status"] == "ok" and result["device_check"]["status"] == "passed"
    assert result["accuracy"]["top1"] > 0.9 and result["runtime"]["buffers"] == "cuda-python"
    cond = json.loads((folder / "r.json").read_text())["conditions"]   # after `sudo jetson_clocks`, MAXN
    jetson = cond["before"]["jetson"]
    assert jetson["power_mode"] == {"name": "MAXN", "id": 0} and jetson["clocks_source"] == "jetson_clocks --show"
    assert jetson["gpu_mhz"] == jetson["gpu_max_mhz"] == 1300.5 and jetson["emc_mhz"] == 3199.0
    assert cond["clocks_locked"] is True and not [w for w in cond["warnings"] if "clocks" in w]
    r = run(py, folder, "edge_bench.py", ".", "--predict", digit_pngs / "7" / "0007.png", env=env)
    assert r.returncode == EXIT_OK and r.stdout.split(": ")[1].startswith("7 "), r.stdout + r.stderr


# ---- each finding of issue 19 ---------------------------------------------------------------------

def test_a_driver_too_old_for_the_tensorrt_build_is_one_line(trt_artifacts, tmp_path, py):
    """x86 host, CUDA 12 driver, the CUDA 13 wheel: trt.Builder raises TypeError (factory returned
    nullptr). One line naming the driver and the cu12 / cu13 wheels, exit 3, manifest untouched."""
    folder = on_device(trt_artifacts["fp32"], tmp_path)
    before = manifest(folder)
    line = one_error(run(py, folder, "trt_build.py", ".", env=device(tmp_path, TRT_DOUBLE_FAIL="builder")),
                     EXIT_NOT_RUN, "driver", "tensorrt-cu12")
    assert "nullptr" in line and manifest(folder) == before


@pytest.mark.parametrize("fail, what", [("network", "create_network"), ("config", "create_builder_config")])
def test_a_builder_factory_returning_none_is_one_line(trt_artifacts, tmp_path, fail, what, py):
    """Out of memory (an Orin Nano): TensorRT's factories return None; one line, exit 3."""
    folder = on_device(trt_artifacts["fp32"], tmp_path)
    one_error(run(py, folder, "trt_build.py", ".", env=device(tmp_path, TRT_DOUBLE_FAIL=fail)), EXIT_NOT_RUN, what,
              "memory")


def test_no_execution_context_is_one_line(trt_artifacts, tmp_path, digits_npz, py):
    """create_execution_context returns None (out of memory): a benchmark or prediction says so in
    one line (exit 3); right after a good build the golden check says it was skipped, and why."""
    folder = on_device(trt_artifacts["fp32"], tmp_path)
    r = run(py, folder, "trt_build.py", ".", env=device(tmp_path, TRT_DOUBLE_FAIL="context"))
    assert r.returncode == EXIT_OK and "device check skipped" in r.stdout and "create_execution_context" in r.stdout
    one_error(run(py, folder, "edge_bench.py", ".", "--data", digits_npz, env=device(tmp_path, TRT_DOUBLE_FAIL="context")),
              EXIT_NOT_RUN, "create_execution_context returned None", "memory")


@pytest.mark.parametrize("precision", ["fp32", "int8"])
def test_tf32_is_cleared_for_every_precision(trt_artifacts, tmp_path, precision, py):
    """The float parts of an int8 (or fp16) engine compute in FP32, as export validated them."""
    folder = on_device(trt_artifacts[precision], tmp_path)
    assert run(py, folder, "trt_build.py", ".", env=device(tmp_path)).returncode == EXIT_OK
    header = json.loads((folder / "model.engine").read_bytes().split(b"\n")[1])
    assert header["tf32"] is False and manifest(folder)["export"]["engine"]["flags_cleared"] == ["TF32"]


def test_no_gpu_buffer_library_does_not_fail_a_good_build(trt_artifacts, tmp_path, digits_npz, py):
    """cuda-python 12.9 on JetPack 6's CUDA 12.6 driver (cudaErrorInsufficientDriver), no torch, no
    pycuda: the engine is built and stamped (exit 0); the golden check says it was skipped and how
    to get a buffer library of this CUDA; benchmarking then cannot run (exit 3, one line)."""
    folder = on_device(trt_artifacts["fp32"], tmp_path)
    env = device(tmp_path, CUDA_DOUBLE_ERROR="insufficient-driver", PYCUDA_DOUBLE_ABSENT="1")
    r = run(py, folder, "trt_build.py", ".", env=env)
    assert r.returncode == EXIT_OK and "Traceback" not in r.stderr, r.stderr
    assert manifest(folder)["export"]["engine"]["built"] is True
    skipped = next(ln for ln in (r.stdout + r.stderr).splitlines() if "device check skipped" in ln)
    assert "cudaErrorInsufficientDriver" in skipped and 'cuda-python>=12.6,<12.7' in skipped
    one_error(run(py, folder, "trt_build.py", ".", "--no-build", "--data", digits_npz, env=env), EXIT_NOT_RUN,
              "not run", "cudaErrorInsufficientDriver")


def test_min_batch_8_still_benchmarks(trt_artifacts, digit_pngs, tmp_path, py):
    """An engine whose profile starts at batch 8: latency is timed at batch 8, throughput only at the
    profile's sizes, accuracy on every image (the last batch padded), all said in the result."""
    folder = on_device(trt_artifacts["fp32"], tmp_path)
    r = run(py, folder, "trt_build.py", ".", "--min-batch", "8", "--opt-batch", "8", "--data",
            f"imagefolder:{digit_pngs}", "--iters", "3", "--warmup", "0", "--batch-sizes", "1,8,32",
            "--json", "r.json", env=device(tmp_path))
    assert r.returncode == EXIT_OK, r.stderr
    result = json.loads((folder / "r.json").read_text())["results"][0]
    assert result["latency_batch"] == 8 and [t["batch"] for t in result["throughput"]] == [8, 32]
    assert result["accuracy"]["n"] == 179 and result["device_check"]["status"] == "passed"


def test_pycuda_copies_through_page_locked_memory(trt_artifacts, tmp_path, py):
    """cuda-python absent, torch blocked: pycuda's async copies need page-locked host buffers."""
    folder = on_device(trt_artifacts["fp32"], tmp_path)
    r = run(py, folder, "trt_build.py", ".", env=device(tmp_path, CUDA_DOUBLE_ABSENT="1"))
    assert r.returncode == EXIT_OK and "device check passed" in r.stdout, r.stderr


def test_the_cuda_stamped_is_the_devices_not_cuda_pythons(trt_artifacts, tmp_path, py):
    """cuda-python 12.9 carries its own CUDA 12.9 runtime; the device's CUDA is the driver's 12.6."""
    folder = on_device(trt_artifacts["fp32"], tmp_path)
    r = run(py, folder, "trt_build.py", ".", env=device(tmp_path, CUDA_DOUBLE_RUNTIME="12090", CUDA_DOUBLE_DRIVER="12060"))
    assert r.returncode == EXIT_OK, r.stderr
    cuda = manifest(folder)["export"]["engine"]["cuda"]
    assert cuda["version"] == "12.6" and manifest(folder)["versions"]["cuda"] == "12.6" and "CUDA 12.6" in r.stdout


def test_a_foreign_timing_cache_is_not_fed_to_tensorrt(trt_artifacts, tmp_path, py):
    """A timing cache made on another GPU (a copied artifact) is set aside before TensorRT sees it:
    no ERROR in TensorRT's log during a good build, and the result says a fresh cache was started."""
    folder = on_device(trt_artifacts["fp32"], tmp_path)
    assert run(py, folder, "trt_build.py", ".", env=device(tmp_path, DOUBLE_GPU="A100")).returncode == EXIT_OK
    r = run(py, folder, "trt_build.py", ".", env=device(tmp_path))
    assert r.returncode == EXIT_OK and "[E]" not in r.stderr, r.stderr
    cache = manifest(folder)["export"]["engine"]["timing_cache"]
    assert cache["loaded_bytes"] == 0 and "another TensorRT version or GPU" in cache["note"]
    r = run(py, folder, "trt_build.py", ".", env=device(tmp_path))    # its own cache: used
    assert manifest(folder)["export"]["engine"]["timing_cache"]["loaded_bytes"] > 0 and "[E]" not in r.stderr


def test_an_engine_of_another_tensorrt_version_is_refused(trt_artifacts, tmp_path, digits_npz, py):
    folder = on_device(trt_artifacts["fp32"], tmp_path)
    assert run(py, folder, "trt_build.py", ".", env=device(tmp_path)).returncode == EXIT_OK
    r = run(py, folder, "trt_build.py", ".", "--no-build", "--data", digits_npz, env=device(tmp_path, TRT_DOUBLE_VERSION="11.1.0"))
    one_error(r, EXIT_BAD_INPUT, "engine built with TensorRT 10.3.0, this runtime is 11.1.0")


def test_tensorrt_11_builds_without_the_strongly_typed_flag(trt_artifacts, tmp_path, py):
    folder = on_device(trt_artifacts["int8"], tmp_path)
    r = run(py, folder, "trt_build.py", ".", env=device(tmp_path, TRT_DOUBLE_VERSION="11.1.0"))
    assert r.returncode == EXIT_OK and "TensorRT 11.1.0" in r.stdout, r.stderr
    assert manifest(folder)["export"]["engine"]["plan"]["network"]["creation_flags"] == []


def test_cuda_python_13_layout(trt_artifacts, tmp_path, py):
    """cuda-python 13 has cuda.bindings.runtime only (no cuda.cudart)."""
    folder = on_device(trt_artifacts["fp32"], tmp_path)
    r = run(py, folder, "trt_build.py", ".", env=device(tmp_path, CUDA_DOUBLE_MAJOR="13"))
    assert r.returncode == EXIT_OK and "device check passed" in r.stdout, r.stderr


def test_a_corrupt_or_missing_engine_is_rebuilt(trt_artifacts, tmp_path, py):
    """The engine is trt_build.py's own output: a rebuild mends a corrupt or deleted one (before:
    exit 2, "model.engine does not match its sha256" / "is missing", and no way but a fresh copy)."""
    folder = on_device(trt_artifacts["fp32"], tmp_path)
    assert run(py, folder, "trt_build.py", ".", env=device(tmp_path)).returncode == EXIT_OK
    (folder / "model.engine").write_bytes(b"corrupt")
    r = run(py, folder, "trt_build.py", ".", env=device(tmp_path))
    assert r.returncode == EXIT_OK and "built model.engine" in r.stdout, r.stderr
    (folder / "model.engine").unlink()
    assert run(py, folder, "trt_build.py", ".", env=device(tmp_path)).returncode == EXIT_OK
    import hashlib   # the rebuilt engine is listed with its own sha256

    listed = {f["path"]: f["sha256"] for f in manifest(folder)["files"]}
    assert listed["model.engine"] == hashlib.sha256((folder / "model.engine").read_bytes()).hexdigest()


def test_an_unbuilt_engine_says_how_to_build_it_first(trt_artifacts, tmp_path, digits_npz, py):
    """The reason recorded at export (the exporting host had no TensorRT) comes after the fix, not
    as the first words a device user reads."""
    folder = on_device(trt_artifacts["fp32"], tmp_path)
    line = one_error(run(py, folder, "edge_bench.py", ".", "--data", digits_npz, env=device(tmp_path)),
                     EXIT_NOT_RUN, "at export:")
    assert line.startswith("error: not run: the engine is not built yet: build it on this device with "
                           "`python3 trt_build.py .`"), line


# ---- the conditions a device measured under ------------------------------------------------------

def conditions_of(py, folder, tmp_path, data, bins=("bin", "jetson"), build=False, **env) -> tuple[dict, str]:
    """(the result's conditions, stdout) of a short benchmark of the engine (built first if asked)."""
    r = run(py, folder, "trt_build.py", ".", *([] if build else ["--no-build"]), "--data", data, "--iters", "2",
            "--warmup", "0",
            "--batch-sizes", "1", "--json", "c.json", env=device(tmp_path, bins=bins, **env))
    assert r.returncode == EXIT_OK, r.stderr
    return json.loads((folder / "c.json").read_text())["conditions"], r.stdout


def test_conditions_say_when_clocks_were_not_locked(trt_artifacts, tmp_path, digits_npz, py):
    """Dynamic clocks (no `sudo jetson_clocks`) in a 15 W mode: recorded, printed as a warning;
    jetson_clocks refusing a non-root user: the clocks' state unknown, said as such; an x86 GPU
    host: nvidia-smi's clocks and temperature, no Jetson."""
    folder = on_device(trt_artifacts["fp32"], tmp_path)
    assert run(py, folder, "trt_build.py", ".", env=device(tmp_path)).returncode == EXIT_OK
    cond, out = conditions_of(py, folder, tmp_path, digits_npz, JETSON_DOUBLE_CLOCKS="unlocked", JETSON_DOUBLE_MODE="15W 1")
    assert cond["clocks_locked"] is False and cond["before"]["jetson"]["power_mode"] == {"name": "15W", "id": 1}
    assert cond["before"]["jetson"]["gpu_mhz"] == 306.0 and cond["before"]["jetson"]["gpu_max_mhz"] == 1300.5
    assert "warning: clocks not locked: run `sudo jetson_clocks`" in out and "15W (1)" in out
    cond, out = conditions_of(py, folder, tmp_path, digits_npz, JETSON_DOUBLE_CLOCKS="root")
    assert cond["clocks_locked"] is None and "could not tell whether the Jetson's clocks were locked" in out
    cond, out = conditions_of(py, folder, tmp_path, digits_npz, bins=("bin",), build=True, DOUBLE_GPU="NVIDIA L4")
    gpu = cond["after"]["nvidia_gpus"]
    assert cond["before"]["jetson"] is None and gpu == [{"name": "NVIDIA L4", "sm_mhz": 1980, "sm_max_mhz": 2040,
                                                       "mem_mhz": 6250, "mem_max_mhz": 6251, "temperature_c": 47,
                                                       "pstate": "P0"}]
    assert "NVIDIA L4, SM 1980/2040 MHz, mem 6250/6251 MHz, P0" in out


def test_the_report_marks_a_run_whose_clocks_were_not_locked(trt_artifacts, tmp_path, digits_npz):
    from mixer_edge.bench.report import build_report

    folder = on_device(trt_artifacts["fp32"], tmp_path)
    assert run(sys.executable, folder, "trt_build.py", ".", env=device(tmp_path)).returncode == EXIT_OK
    conditions_of(sys.executable, folder, tmp_path, digits_npz, JETSON_DOUBLE_CLOCKS="unlocked")
    (folder / "c.json").rename(tmp_path / "unlocked.json")
    conditions_of(sys.executable, folder, tmp_path, digits_npz, JETSON_DOUBLE_CLOCKS="locked")
    build_report([tmp_path / "unlocked.json", folder / "c.json"], tmp_path / "report")
    md = (tmp_path / "report" / "report.md").read_text()
    speed = md.split("### Speed and memory")[1]   # the table with the conditions column
    rows = [ln for ln in speed.splitlines() if ln.startswith("| ") and "| tensorrt |" in ln]
    assert len(rows) == 2 and rows[0].endswith("run [1]** |") and "run [2]" in rows[1]   # each run's footnote
    assert "- [1] run conditions: MAXN (0); GPU 306/1300 MHz; EMC 2133/3199 MHz; clocks NOT locked" in md
    assert "- [2] run conditions: MAXN (0); GPU 1300/1300 MHz; EMC 3199/3199 MHz; clocks locked" in md
    assert "## Measurement warnings" in md and "clocks not locked: run `sudo jetson_clocks`" in md
    page = (tmp_path / "report" / "report.html").read_text()
    assert re.search(r'<td class="flag">[^<]*run \[1\]</td>', page)
    assert "[1] run conditions: MAXN (0); GPU 306/1300" in page


def test_a_packed_tensorrt_artifact_builds_and_benchmarks_with_no_argument(trt_artifacts, tmp_path, py):
    """`mixer-edge pack`, then on the device the README's one command: `python3 trt_build.py .`
    builds the engine, checks it, benchmarks the bundled held-out images, writes result-<device>.json."""
    import tarfile

    from mixer_edge.cli import main

    out = tmp_path / "trt.tar.gz"
    assert main(["pack", str(trt_artifacts["int8"]), "--data", "digits", "--images", "30", "--out", str(out)]) == EXIT_OK
    with tarfile.open(out) as tar:
        tar.extractall(tmp_path / "device", filter="data")
    folder = tmp_path / "device" / "tensorrt-int8"
    assert "python3 trt_build.py ." in (folder / "README-device.md").read_text()
    r = run(py, folder, "trt_build.py", ".", env=device(tmp_path, JETSON_DOUBLE_CLOCKS="locked"))
    assert r.returncode == EXIT_OK, r.stdout + r.stderr
    assert "built model.engine" in r.stdout and "data: the bundle's 30 held-out images" in r.stdout
    (result,) = folder.glob("result-*.json")
    entry = json.loads(result.read_text())["results"][0]
    assert entry["status"] == "ok" and entry["data"]["n"] == 30 and entry["device_check"]["status"] == "passed"
    assert "tensorrt-int8: device check passed: logit SQNR" in r.stdout


def _unreachable_golden(folder: Path) -> None:
    """golden.npz with reference logits no engine reaches (its threshold is re-derived from the file,
    so the file itself is what changes: no recorded export logits, the floor), rehashed and resealed."""
    import numpy as np

    from mixer_edge.runtime.artifact import sha256_file

    with np.load(folder / "golden.npz") as z:
        golden = {k: z[k] for k in z.files if k != "artifact"}
    golden["reference"] = golden["reference"] + 10.0
    np.savez(folder / "golden.npz", **golden)
    m = manifest(folder)
    for entry in m["files"]:
        if entry["path"] == "golden.npz":
            entry["sha256"], entry["bytes"] = sha256_file(folder / "golden.npz"), (folder / "golden.npz").stat().st_size
    m["golden"]["built_sqnr_db"] = None
    (folder / "manifest.json").write_text(json.dumps(m))
    reseal(folder)


def test_a_packed_engine_failing_its_golden_check_still_writes_its_result(trt_artifacts, tmp_path, py):
    """Exit 4, and the result written with the failed check marked, as edge_bench.py does (before:
    trt_build.py stopped after the build's check: exit 4 and no result, though it had named the file)."""
    import tarfile

    from mixer_edge.cli import main

    out = tmp_path / "trt.tar.gz"
    assert main(["pack", str(trt_artifacts["fp32"]), "--data", "digits", "--images", "20", "--out", str(out)]) == EXIT_OK
    with tarfile.open(out) as tar:
        tar.extractall(tmp_path / "device", filter="data")
    folder = tmp_path / "device" / "tensorrt-fp32"
    _unreachable_golden(folder)
    r = run(py, folder, "trt_build.py", ".", "--device-name", "orin", env=device(tmp_path))
    one_error(r, EXIT_DEVICE_CHECK, "device check failed")
    result = json.loads((folder / "result-orin.json").read_text())["results"][0]
    assert result["device_check"]["status"] == "failed" and result["latency_ms"]["p50"] > 0


# ---- on the exporting host ---------------------------------------------------------------------------

def export_env(tmp_path, **env) -> dict:
    """A host with the TensorRT and CUDA doubles and nvidia-smi: mixer-edge builds the engine at export."""
    return {**os.environ, "PYTHONPATH": str(DOUBLES), "PATH": f"{DOUBLES / 'bin'}{os.pathsep}{os.environ['PATH']}",
            "MIXER_EDGE_PROGRESS": "0", "OMP_NUM_THREADS": "1", **env}


def test_export_on_a_gpu_host_builds_the_engine_and_records_a_portable_cache(digits_checkpoint, tmp_path):
    """The engine is built at export and validation runs it; the manifest records the timing cache
    relative to the artifact, not the staging folder it was built in."""
    r = subprocess.run([sys.executable, "-m", "mixer_edge.cli", "export", str(digits_checkpoint), "--target",
                        "tensorrt", "--eval-data", "digits", "--out", str(tmp_path / "out")],
                       env=export_env(tmp_path), capture_output=True, text=True, timeout=300)
    assert r.returncode == EXIT_OK, r.stderr
    folder = tmp_path / "out" / "tensorrt-fp32"
    engine = manifest(folder)["export"]["engine"]
    assert engine["built"] is True and manifest(folder)["validation"]["checked_by"] == "own runtime"
    assert engine["timing_cache"]["path"] == "timing.cache" and engine["plan"]["timing_cache"] == "timing.cache"
    assert (folder / "timing.cache").is_file() and ".partial-" not in json.dumps(engine)


def test_export_where_the_builder_cannot_start_keeps_the_artifact(digits_checkpoint, tmp_path):
    """tensorrt imports, but its builder fails (a driver too old for its CUDA): the export still
    writes the TensorRT-ready ONNX, validated with ONNX Runtime, and says why the engine was not built."""
    r = subprocess.run([sys.executable, "-m", "mixer_edge.cli", "export", str(digits_checkpoint), "--target",
                        "tensorrt", "--eval-data", "digits", "--out", str(tmp_path / "out")],
                       env=export_env(tmp_path, TRT_DOUBLE_FAIL="builder"), capture_output=True, text=True, timeout=300)
    assert r.returncode == EXIT_OK and "Traceback" not in r.stderr, r.stderr
    m = manifest(tmp_path / "out" / "tensorrt-fp32")
    assert m["export"]["engine"]["built"] is False and "tensorrt-cu12" in m["export"]["engine"]["reason"]
    assert m["validation"]["passed"] is True and m["validation"]["checked_by"] == "stand-in"


def test_artifact_folders_can_be_entered_by_others(trt_artifacts):
    """Built in a mkdtemp folder (0700), kept with the umask's permissions: a copy into a container
    or to another user can be entered."""
    mask = os.umask(0)
    os.umask(mask)
    assert trt_artifacts["fp32"].stat().st_mode & 0o777 == 0o777 & ~mask


def test_an_opset_tensorrt_10_cannot_parse_is_refused(ck, tmp_path, val):
    from mixer_edge.errors import BadInput

    with pytest.raises(BadInput, match="ONNX opset 21 is newer than TensorRT 10.3's parser reads"):
        export_one(ck, "tensorrt", ExportSpec("fp32", opset=21), None, tmp_path, validation=val)
    assert not list(tmp_path.iterdir())


# ---- Core ML on a Mac ---------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def coreml_artifact(ck, val, tmp_path_factory) -> tuple[Path, Path]:
    """The digits model's Core ML fp32 artifact (converted here) and its ONNX twin for the MLModel double."""
    pytest.importorskip("coremltools")
    out = tmp_path_factory.mktemp("coreml")
    art = export_one(ck, "coreml", ExportSpec("fp32"), None, out, validation=val).artifact.path
    twin = export_one(ck, "onnx", ExportSpec("fp32"), None, out, validation=val).artifact.path / "model.onnx"
    return art, twin


def mac(tmp_path, twin, **env) -> dict:
    return device(tmp_path, bins=("mac",), COREML_DOUBLE_MACOS="14.5", COREML_DOUBLE_ONNX=str(twin), **env)


def test_core_ml_batches_are_enumerated_shapes(coreml_artifact):
    """A range-shaped batch (RangeDim) runs on the Neural Engine only at its default shape; the
    program declares enumerated batches instead, every one eligible, any batch split into them."""
    import coremltools as ct

    art, _ = coreml_artifact
    spec = ct.utils.load_spec(str(art / "model.mlpackage"))
    shapes = [list(s.shape) for s in spec.description.input[0].type.multiArrayType.enumeratedShapes.shapes]
    assert [s[0] for s in shapes] == [1, 2, 4, 8, 16, 32, 64] and all(s[1:] == [1, 8, 8] for s in shapes)
    assert manifest(art)["export"]["coreml"]["input"]["batches"] == [1, 2, 4, 8, 16, 32, 64]


def test_core_ml_benchmark_on_a_mac(coreml_artifact, digit_pngs, tmp_path, py):
    """--compute-units picks the units and is recorded; batch 100 (above the largest shape) runs as
    64 + 32 + 4; the result says which batch shapes the Neural Engine may take."""
    art, twin = coreml_artifact
    folder = on_device(art, tmp_path)
    r = run(py, folder, "edge_bench.py", ".", "--data", f"imagefolder:{digit_pngs}", "--iters", "3", "--warmup", "0",
            "--batch-sizes", "1,8,100", "--compute-units", "CPU_AND_NE", "--json", "r.json", env=mac(tmp_path, twin))
    assert r.returncode == EXIT_OK, r.stderr
    result = json.loads((folder / "r.json").read_text())["results"][0]
    assert result["runtime"]["compute_units"] == "CPU_AND_NE" and result["device_check"]["status"] == "passed"
    assert result["runtime"]["neural_engine_batches"] == [1, 2, 4, 8, 16, 32, 64]
    assert [t["batch"] for t in result["throughput"]] == [1, 8, 100] and result["accuracy"]["n"] == 179
    cond = json.loads((folder / "r.json").read_text())["conditions"]
    assert cond["before"]["macos"] == {"version": "14.5", "chip": "Apple M2 (double)"}
    assert cond["compute_units"] == "CPU_AND_NE" and "macOS 14.5, Apple M2 (double); compute units CPU_AND_NE" in r.stdout


def test_core_ml_program_the_framework_cannot_load_is_one_line(coreml_artifact, tmp_path, digits_npz, py):
    art, twin = coreml_artifact
    folder = on_device(art, tmp_path)
    one_error(run(py, folder, "edge_bench.py", ".", "--data", digits_npz, env=mac(tmp_path, twin, COREML_DOUBLE_FAIL="load")),
              EXIT_NOT_RUN, "Core ML cannot load", "Error compiling model")


def test_compute_units_are_documented():
    from mixer_edge.runtime.cli import build_parser

    text = build_parser().format_help()
    assert "--compute-units" in text and "CPU_AND_NE" in text and "Neural Engine" in text
