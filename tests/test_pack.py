"""`mixer-edge pack`: an ONNX INT8 artifact packed with held-out digits, unpacked as on a device
(torch and mixer_edge blocked; and in a Python 3.10 environment holding only numpy 1.26, Pillow and
ONNX Runtime), benchmarked with `python3 edge_bench.py .` and nothing else, and its result merged
with the host's by `mixer-edge report`. The bundle's images are checked by content key against the
training and calibration images the artifact's manifest names, and SHA256SUMS with hashlib."""
from __future__ import annotations

import hashlib
import json
import subprocess
import sys
import tarfile
from pathlib import Path

import numpy as np
import pytest

from conftest import block_imports
from mixer_edge.cli import main
from mixer_edge.runtime.errors import EXIT_BAD_INPUT, EXIT_OK

pytest.importorskip("onnxruntime")


@pytest.fixture(scope="module")
def int8_artifact(ck, calib, val, tmp_path_factory) -> Path:
    from mixer_edge.export.base import ExportSpec
    from mixer_edge.export.build import export_one

    out = tmp_path_factory.mktemp("int8")
    return export_one(ck, "onnx", ExportSpec("int8"), calib, out, validation=val).artifact.path


@pytest.fixture(scope="module")
def packed(int8_artifact, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("packed") / "onnx-int8.tar.gz"
    assert main(["pack", str(int8_artifact), "--data", "digits", "--images", "60", "--out", str(out)]) == EXIT_OK
    return out


def unpack(bundle: Path, where: Path) -> Path:
    with tarfile.open(bundle) as tar:
        tar.extractall(where, filter="data")
    (folder,) = where.iterdir()
    return folder


def test_the_bundle_holds_no_training_or_calibration_image(packed, int8_artifact, tmp_path):
    from mixer_edge import load_data
    from mixer_edge.data.dataset import take_split
    from mixer_edge.runtime.identity import image_keys, reserved_keys

    folder = unpack(packed, tmp_path)
    bundled = np.load(folder / "bundle" / "images.npz")
    keys = image_keys(bundled["images"])
    manifest = json.loads((int8_artifact / "manifest.json").read_text())
    assert len(keys) == 60 and len(np.unique(keys)) == 60
    assert not np.isin(keys, reserved_keys(manifest)).any()          # the manifest's training + calibration keys
    digits = load_data("digits")                                        # and independently, the split itself:
    for part in ("train", "calib"):
        assert not np.isin(keys, image_keys(take_split(digits, part).images)).any(), part
    assert np.isin(keys, image_keys(take_split(digits, "eval").images)).all()
    assert np.bincount(bundled["labels"], minlength=10).min() >= 5   # class-stratified: 6 a class, give or take
    assert list(bundled["classes"]) == [str(c) for c in digits.classes]


def test_checksums_and_contents(packed, tmp_path):
    folder = unpack(packed, tmp_path)
    lines = (folder / "SHA256SUMS").read_text().splitlines()
    listed = {}
    for line in lines:
        digest, name = line.split("  ", 1)
        listed[name] = digest
        assert hashlib.sha256((folder / name).read_bytes()).hexdigest() == digest, name
    files = {p.relative_to(folder).as_posix() for p in folder.rglob("*") if p.is_file()}
    assert files - set(listed) == {"SHA256SUMS"}
    assert {"manifest.json", "model.onnx", "edge_bench.py", "bundle.json", "bundle/images.npz",
            "README-device.md"} <= files
    readme = (folder / "README-device.md").read_text()
    assert "python3 edge_bench.py ." in readme and "sha256sum -c SHA256SUMS" in readme and "60 images" in readme
    if sys.platform != "win32":
        r = subprocess.run(["sha256sum", "-c", "--quiet", "SHA256SUMS"], cwd=folder, capture_output=True, text=True)
        assert r.returncode == 0, r.stdout + r.stderr


def device_run(folder: Path, python: str, env: dict) -> subprocess.CompletedProcess:
    """What the device README says: from the unpacked folder, `python3 edge_bench.py .`, nothing else."""
    return subprocess.run([python, "edge_bench.py", "."], cwd=folder, env={**env, "OMP_NUM_THREADS": "1"},
                          capture_output=True, text=True, timeout=600)


@pytest.mark.parametrize("where", ["host-python-torch-blocked", "python3.10-numpy1-only"])
def test_unpacked_on_a_device_and_merged_into_one_report(packed, digits_bench_result, tmp_path, request, where):
    folder = unpack(packed, tmp_path / "device")
    if where == "python3.10-numpy1-only":
        python, env = request.getfixturevalue("jetpack_python"), {"PATH": "/usr/bin:/bin"}
        listed = subprocess.run([python, "-m", "pip", "list", "--format=json"], capture_output=True, text=True)
        names = {p["name"].lower() for p in json.loads(listed.stdout)}
        assert {"numpy", "pillow", "onnxruntime"} <= names and not names & {"torch", "mixer-edge", "onnx", "scikit-learn"}
    else:
        python, env = sys.executable, block_imports(tmp_path, "torch", "mixer_edge", "sklearn")
    r = device_run(folder, python, env)
    assert r.returncode == EXIT_OK, r.stdout + r.stderr
    (result,) = folder.glob("result-*.json")
    doc = json.loads(result.read_text())
    entry = doc["results"][0]
    assert entry["status"] == "ok" and entry["device_check"]["status"] == "passed"
    assert entry["data"]["n"] == 60 and entry["data"]["reserved_in_data"] == 0 and entry["accuracy"]["top1"] > 0.8
    assert doc["conditions"]["before"] and "data: the bundle's 60 held-out images" in r.stdout
    assert f"{entry['name']}: device check passed: logit SQNR" in r.stdout
    assert main(["report", str(result), str(digits_bench_result), "--out", str(tmp_path / "report")]) == EXIT_OK
    md = (tmp_path / "report" / "report.md").read_text()
    assert "2 result file(s)" in md and "| 60 held-out |" in md and "| 179 held-out |" in md


def test_run_from_elsewhere_the_result_lands_in_the_artifact_folder(packed, tmp_path):
    """`python3 onnx-int8/edge_bench.py onnx-int8` from the parent folder: the result goes beside the
    artifact (where the device README says to fetch it), not into the current folder."""
    folder = unpack(packed, tmp_path / "device")
    r = subprocess.run([sys.executable, f"{folder.name}/edge_bench.py", folder.name, "--device-name", "pi 5"],
                       cwd=folder.parent, env={**block_imports(tmp_path, "torch", "mixer_edge"), "OMP_NUM_THREADS": "1"},
                       capture_output=True, text=True, timeout=600)
    assert r.returncode == EXIT_OK, r.stderr
    assert (folder / "result-pi-5.json").is_file() and not list(folder.parent.glob("*.json"))


def test_other_images_on_a_packed_artifact_still_write_the_result(packed, tmp_path, digits_bench_result):
    """`--data SPEC` instead of the bundled images: the result still goes to result-<device>.json in
    the artifact folder (before: nothing was written without --json)."""
    import numpy as np

    from mixer_edge import load_data

    folder = unpack(packed, tmp_path / "device")
    d = load_data("digits")
    np.savez(tmp_path / "mine.npz", images=d.images, labels=d.labels, classes=np.array(d.classes))
    r = subprocess.run([sys.executable, "edge_bench.py", ".", "--data", str(tmp_path / "mine.npz"), "--device-name",
                        "jetson"], cwd=folder, env={**block_imports(tmp_path, "torch", "mixer_edge"),
                                                   "OMP_NUM_THREADS": "1"}, capture_output=True, text=True, timeout=600)
    assert r.returncode == EXIT_OK, r.stderr
    assert "data: the bundle's" not in r.stdout and "result: " in r.stdout
    assert json.loads((folder / "result-jetson.json").read_text())["results"][0]["data"]["n"] == 179


def test_a_tampered_bundle_is_one_line(packed, tmp_path):
    folder = unpack(packed, tmp_path)
    images = folder / "bundle" / "images.npz"
    images.write_bytes(images.read_bytes()[:-10])
    r = device_run(folder, sys.executable, block_imports(tmp_path, "torch", "mixer_edge"))
    assert r.returncode == EXIT_BAD_INPUT and "Traceback" not in r.stderr
    assert r.stderr.count("error: ") == 1 and "do not match their sha256" in r.stderr


def test_images_of_several_sizes_are_bundled_as_png_folders(int8_artifact, tmp_path):
    """Images of different sizes cannot share one array: one PNG folder per class, read by Pillow on the device."""
    from PIL import Image

    from mixer_edge import load_data

    d = load_data("digits")
    for i in range(40):   # upscaled digits: not the training images' content, so every one is held out
        size = 16 if i % 2 else 12
        (tmp_path / "data" / d.classes[d.labels[i]]).mkdir(parents=True, exist_ok=True)
        Image.fromarray(d.images[i][..., 0]).resize((size, size)).save(tmp_path / "data" / d.classes[d.labels[i]] / f"{i}.png")
    out = tmp_path / "b.tar.gz"
    assert main(["pack", str(int8_artifact), "--data", f"imagefolder:{tmp_path / 'data'}", "--images", "20",
                 "--out", str(out)]) == EXIT_OK
    folder = unpack(out, tmp_path / "device")
    assert json.loads((folder / "bundle.json").read_text())["data"] == "bundle/images"
    assert len(list((folder / "bundle" / "images").rglob("*.png"))) == 20
    r = device_run(folder, sys.executable, block_imports(tmp_path, "torch", "mixer_edge"))
    assert r.returncode == EXIT_OK, r.stderr
    assert json.loads(next(folder.glob("result-*.json")).read_text())["results"][0]["data"]["n"] == 20


@pytest.mark.parametrize("args, words", [
    (["--out", "b.zip"], "must end in .tar.gz"),
    (["--images", "0"], "--images must be at least 1"),
    (["--data", "nosuchdata:x"], "nosuchdata"),
])
def test_bad_input_writes_nothing(int8_artifact, tmp_path, capsys, args, words, monkeypatch):
    monkeypatch.chdir(tmp_path)
    base = {"--data": "digits", "--images": "10", "--out": "b.tar.gz"}
    for k, v in zip(args[::2], args[1::2]):
        base[k] = v
    argv = ["pack", str(int8_artifact)] + [x for kv in base.items() for x in kv]
    assert main(argv) == EXIT_BAD_INPUT
    err = capsys.readouterr().err
    assert words in err and "Traceback" not in err and not list(tmp_path.iterdir())


def test_an_artifact_from_before_pack_is_refused(int8_artifact, tmp_path, capsys):
    import shutil

    old = tmp_path / "old"
    shutil.copytree(int8_artifact, old)
    m = json.loads((old / "manifest.json").read_text())
    m["files"] = [f for f in m["files"] if f["path"] != "mixer_edge_runtime/bundle.py"]
    (old / "mixer_edge_runtime" / "bundle.py").unlink()
    (old / "binding.json").unlink()   # an artifact that old has no binding.json either (runtime/claims.py)
    (old / "manifest.json").write_text(json.dumps(m))
    assert main(["pack", str(old), "--data", "digits", "--out", str(tmp_path / "b.tar.gz")]) == EXIT_BAD_INPUT
    assert "exported before mixer-edge pack existed" in capsys.readouterr().err
