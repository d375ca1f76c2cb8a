"""Self-checking artifacts: every artifact carries a golden set (real images, FP32 PyTorch logits,
the artifact's own logits at export, hashed in the manifest), and the device script runs it before
timing. An untouched artifact passes on every backend that runs here; an artifact whose weights
were altered and whose manifest hashes were recomputed to match (a tampering sha256 cannot see)
fails with a clear message and exit code 4, its timing still written and marked."""
from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest

from mixer_edge.export.base import ExportSpec

from conftest import block_imports, reseal  # noqa: E402
from mixer_edge.export.build import export_one
from mixer_edge.export.reference import validation_data
from mixer_edge.runtime.artifact import sha256_file
from mixer_edge.runtime.cli import main as device_main
from mixer_edge.runtime.errors import DeviceCheckFailed, EXIT_BAD_INPUT, EXIT_DEVICE_CHECK
from mixer_edge.runtime.golden import GOLDEN_FLOOR_DB, GOLDEN_MARGIN_DB, GOLDEN_N
from mixer_edge.runtime.predict import load

RUNS_HERE = {"onnx": "onnxruntime", "openvino": "openvino"}
CASES = [(t, p) for t in RUNS_HERE for p in ("fp32", "int8")]


@pytest.fixture(scope="module")
def artifacts(ck, calib, tmp_path_factory):
    from mixer_edge import load_data
    from mixer_edge.data.dataset import take_split

    part = take_split(load_data("digits"), "eval")
    val = validation_data(ck, ck.preprocess(part.images), part.labels, "digits (eval split)", raw=part.images)
    out = {}
    for t, p in CASES:
        pytest.importorskip(RUNS_HERE[t])
        o = export_one(ck, t, ExportSpec(p), calib if p == "int8" else None,
                           tmp_path_factory.mktemp(f"golden-{t}-{p}"), validation=val)
        out[(t, p)] = o.artifact
    return out


@pytest.fixture(scope="module")
def digits_npz(tmp_path_factory):
    """The digits eval images as raw uint8 in an .npz: data the device script reads."""
    from mixer_edge import load_data
    from mixer_edge.data.dataset import take_split

    part = take_split(load_data("digits"), "eval")
    path = tmp_path_factory.mktemp("data") / "digits-eval.npz"
    np.savez(path, images=np.asarray(part.images), labels=part.labels)
    return path


def edge_bench(folder, tmp_path, data, *extra):
    """The artifact's own script, with torch and mixer_edge unimportable, as on a device."""
    out = tmp_path / "result.json"
    done = subprocess.run([sys.executable, str(folder / "edge_bench.py"), str(folder), "--data", str(data),
                           "--iters", "3", "--batch-sizes", "1", "--json", str(out), *extra],
                          capture_output=True, text=True, env=block_imports(tmp_path, "torch", "mixer_edge"))
    return done, (json.loads(out.read_text()) if out.exists() else None)


@pytest.mark.parametrize("target,precision", CASES)
def test_golden_set_recorded_and_hashed(artifacts, target, precision):
    a = artifacts[(target, precision)]
    g = a.manifest["golden"]
    assert g["file"] in [f["path"] for f in a.manifest["files"]]
    assert g["n"] == GOLDEN_N and g["input"] == "raw" and g["built_sqnr_db"] is not None
    with np.load(a.path / g["file"], allow_pickle=False) as z:
        assert z["raw"].dtype == np.uint8 and z["raw"].shape[0] == GOLDEN_N
        assert z["reference"].shape == z["artifact"].shape == (GOLDEN_N, 10)
    assert g["threshold_sqnr_db"] == min(GOLDEN_FLOOR_DB[precision], g["built_sqnr_db"] - GOLDEN_MARGIN_DB)


@pytest.mark.parametrize("target,precision", CASES)
def test_untouched_artifact_passes_on_the_device_script(artifacts, target, precision, tmp_path, digits_npz):
    done, doc = edge_bench(artifacts[(target, precision)].path, tmp_path, digits_npz)
    assert done.returncode == 0, done.stderr
    check = doc["results"][0]["device_check"]
    assert check["status"] == "passed" and check["input"] == "raw images" and check["n"] == GOLDEN_N
    assert check["sqnr_db"] >= check["threshold_sqnr_db"] and check["sqnr_db_vs_export"] > 60


def _rehash(folder, name):
    manifest = json.loads((folder / "manifest.json").read_text())
    for f in manifest["files"]:
        if f["path"] == name:
            f["sha256"] = sha256_file(folder / name)
            f["bytes"] = (folder / name).stat().st_size
    (folder / "manifest.json").write_text(json.dumps(manifest))
    reseal(folder)   # the forger's whole job: only the golden check (or a signature) is left to stop it


def _tamper_onnx(folder):
    import onnx
    from onnx import numpy_helper

    m = onnx.load(str(folder / "model.onnx"))
    w = next(i for i in m.graph.initializer if i.name.endswith("norm2.weight"))
    w.CopyFrom(numpy_helper.from_array(numpy_helper.to_array(w) * 4.0, w.name))   # far outside any noise
    onnx.save(m, str(folder / "model.onnx"))
    return "model.onnx"


def _tamper_openvino(folder):
    data = bytearray((folder / "model.bin").read_bytes())
    rng = np.random.default_rng(0)
    start = len(data) // 3
    data[start:start + len(data) // 10] = rng.integers(0, 64, len(data) // 10, dtype=np.uint8).tobytes()
    (folder / "model.bin").write_bytes(bytes(data))
    return "model.bin"


@pytest.mark.parametrize("target,precision", CASES)
def test_tampered_weights_with_recomputed_hashes_fail_the_device_check(artifacts, target, precision, tmp_path,
                                                                      digits_npz):
    import shutil

    folder = tmp_path / "copy"
    shutil.copytree(artifacts[(target, precision)].path, folder)
    _rehash(folder, {"onnx": _tamper_onnx, "openvino": _tamper_openvino}[target](folder))
    done, doc = edge_bench(folder, tmp_path, digits_npz)
    assert done.returncode == EXIT_DEVICE_CHECK, (done.returncode, done.stderr)
    lines = [line for line in done.stderr.splitlines() if line.strip()]
    assert lines[-1].startswith("error: device check failed for copy: logit SQNR") and "Traceback" not in done.stderr
    result = doc["results"][0]   # the timing is still written, marked
    assert result["device_check"]["status"] == "failed" and result["latency_ms"]["p50"] > 0


def test_host_bench_runs_the_same_check_and_report_shows_it(artifacts, tmp_path):
    from mixer_edge.bench import report
    from mixer_edge.cli import main

    a = artifacts[("onnx", "int8")]
    out = tmp_path / "bench.json"
    assert main(["bench", str(a.path), "--data", "digits", "--iters", "3", "--batch-sizes", "1",
                 "--json", str(out)]) == 0
    doc = json.loads(out.read_text())
    assert doc["results"][0]["device_check"]["status"] == "passed"
    md = report.markdown([doc], report.rows_of([doc]), [], 0.5)
    assert "device check" in md and "passed " in md


def test_artifact_run_from_inside_its_folder_keeps_its_name(artifacts, tmp_path, digits_npz):
    a = artifacts[("onnx", "fp32")]
    out = tmp_path / "r.json"
    done = subprocess.run([sys.executable, "edge_bench.py", ".", "--data", str(digits_npz), "--iters", "2",
                           "--batch-sizes", "1", "--json", str(out)], cwd=a.path, capture_output=True, text=True,
                          env=block_imports(tmp_path, "torch", "mixer_edge"))
    assert done.returncode == 0, done.stderr
    assert json.loads(out.read_text())["results"][0]["name"] == a.path.name


@pytest.mark.parametrize("target,precision", CASES)
def test_runtime_copied_into_the_artifact_is_the_package_module(artifacts, target, precision):
    """What a device runs is byte for byte what the host imports: no second copy to drift."""
    from pathlib import Path

    import mixer_edge.runtime.edge_bench as module

    folder = artifacts[(target, precision)].path
    assert (folder / "edge_bench.py").read_bytes() == Path(module.__file__).read_bytes()


def test_predict_refuses_a_tampered_artifact(artifacts, tmp_path, digits_npz, capsys):
    """An application loading an artifact gets the device check first: a tampered one is refused
    (exit 4 from the CLI and the device script), not used."""
    import shutil

    from mixer_edge.cli import main

    folder = tmp_path / "copy"
    shutil.copytree(artifacts[("onnx", "fp32")].path, folder)
    _rehash(folder, _tamper_onnx(folder))
    with pytest.raises(DeviceCheckFailed, match="logit SQNR"):
        load(folder)
    with np.load(digits_npz) as z:
        from PIL import Image
        Image.fromarray(z["images"][0][..., 0]).save(tmp_path / "one.png")
    assert main(["predict", str(folder), str(tmp_path / "one.png")]) == EXIT_DEVICE_CHECK
    assert "device check failed" in capsys.readouterr().err
    assert device_main([str(folder), "--predict", str(tmp_path / "one.png")]) == EXIT_DEVICE_CHECK


def _flat(x, pre=""):
    if isinstance(x, dict):
        return {k2: v2 for k, v in x.items() for k2, v2 in _flat(v, f"{pre}.{k}" if pre else k).items()}
    if isinstance(x, list) and x and isinstance(x[0], dict):
        return {k2: v2 for i, v in enumerate(x) for k2, v2 in _flat(v, f"{pre}[{i}]").items()}
    return {pre: x}


# What may differ between two runs of one measurement: timings, memory, timestamps, the machine's
# load, temperatures and clocks meanwhile; and what says who ran it (tool, the host's extra package
# versions, how the artifact path was spelled).
VARYING = ("latency", "load_s", "first_inference", "throughput", "rss", "created", "images_per_s", "load_avg",
           "conditions.seconds", "others_cores", "temperature", "_mhz", "conditions.warnings")
WHO = ("tool", "versions.mixer_edge", "versions.torch", "results[0].artifact")


@pytest.mark.parametrize("target", list(RUNS_HERE))
def test_host_bench_and_device_script_write_the_same_json(artifacts, target, tmp_path, digits_npz):
    """One runtime, one result: `mixer-edge bench` on the host and the artifact's own script on the
    same data agree key by key, apart from timings, memory, timestamps and who ran it."""
    from mixer_edge.cli import main

    folder = artifacts[(target, "int8")].path
    host = tmp_path / "host.json"
    assert main(["bench", str(folder), "--data", str(digits_npz), "--iters", "3", "--batch-sizes", "1,4",
                 "--json", str(host)]) == 0
    done, device = edge_bench(folder, tmp_path, digits_npz, "--batch-sizes", "1,4")
    assert done.returncode == 0, done.stderr
    a, b = _flat(json.loads(host.read_text())), _flat(device)
    versions = {k: v for k, v in b.items() if k.startswith("versions.")}
    assert versions and all(a.get(k) == v for k, v in versions.items())   # the host lists more packages
    keys = {k for k in set(a) | set(b) if not any(v in k for v in VARYING) and k not in WHO
            and not k.startswith("versions.")}
    assert keys >= {"results[0].accuracy.top1", "results[0].device_check.sqnr_db", "results[0].runtime.what",
                    "results[0].quantization.calib_method", "results[0].sha256.golden.npz", "device.cpu"}
    differ = {k: (a.get(k), b.get(k)) for k in keys if a.get(k) != b.get(k)}
    assert not differ, differ


@pytest.mark.parametrize("path", ["/etc/passwd", "../outside.onnx", "sub/../../outside.onnx", ""])
def test_manifest_paths_are_confined_to_the_artifact(artifacts, tmp_path, path, digits_npz):
    """A manifest names files inside its folder; an absolute path or a way out is refused with one
    line, by the device script and the host alike."""
    import shutil

    from mixer_edge.errors import BadInput
    from mixer_edge.export.artifact import load_artifact

    folder = tmp_path / "copy"
    shutil.copytree(artifacts[("onnx", "fp32")].path, folder)
    (tmp_path / "outside.onnx").write_bytes(b"x")
    manifest = json.loads((folder / "manifest.json").read_text())
    manifest["files"].append({"path": path, "sha256": sha256_file(tmp_path / "outside.onnx")})
    (folder / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(BadInput, match="manifest file path"):
        load_artifact(folder)
    done, _ = edge_bench(folder, tmp_path, digits_npz)
    lines = [line for line in done.stderr.splitlines() if line.strip()]
    assert done.returncode == EXIT_BAD_INPUT and lines[-1].startswith("error: manifest file path"), done.stderr


@pytest.mark.parametrize("target, unlisted, said", [
    ("openvino", "model.bin", "'model.bin' is not among the files manifest.json lists and hashes"),
    ("onnx", "golden.npz", "'golden.npz' is not among the files manifest.json lists and hashes")])
def test_a_file_the_manifest_does_not_list_is_not_opened(artifacts, tmp_path, digits_npz, target, unlisted, said):
    """OpenVINO's read_model opens model.bin beside model.xml by itself, and the golden set is read
    by name: both must be listed (hence hashed), else refused with one line."""
    import shutil

    folder = tmp_path / "copy"
    shutil.copytree(artifacts[(target, "fp32")].path, folder)
    manifest = json.loads((folder / "manifest.json").read_text())
    manifest["files"] = [e for e in manifest["files"] if e["path"] != unlisted]
    (folder / "manifest.json").write_text(json.dumps(manifest))
    reseal(folder)   # resealed by hand: the refusal below is the runtime's, not the binding's
    done, _ = edge_bench(folder, tmp_path, digits_npz)
    lines = [line for line in done.stderr.splitlines() if line.strip()]
    assert done.returncode == EXIT_BAD_INPUT and "Traceback" not in done.stderr, done.stderr
    assert lines[-1].startswith("error:") and said in lines[-1], lines
