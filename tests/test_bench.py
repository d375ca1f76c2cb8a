"""Benchmarks: the timing loop, the on-device script (edge_bench.py) and the in-process harness
(`mixer-edge bench`), and the report. Small and real: a Ti/4 exported to ONNX in the test."""
from __future__ import annotations

import argparse
import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

from types import SimpleNamespace

import numpy as np
import pytest

from mixer_edge.export.artifact import ship_runtime
from mixer_edge.runtime.backends import BACKENDS
from mixer_edge.runtime.cli import build_parser, main
from mixer_edge.runtime.errors import BadInput
from mixer_edge.runtime.results import KIND, RESULT_KEYS, SCHEMA
from mixer_edge.runtime.timing import Settings

ort = pytest.importorskip("onnxruntime")

CLASSES = [str(i) for i in range(10)]
FAST = ["--iters", "5", "--warmup", "1", "--batch-sizes", "1,4", "--min-calls", "5", "--min-time", "0"]


# ---- fixtures: a tiny model, its checkpoint, hand-made artifacts, data ---------------------------

@pytest.fixture(scope="module")
def model():
    import torch

    from mixer_edge import create_model

    torch.manual_seed(0)
    m = create_model("Ti/4", num_classes=10, in_chans=1).eval()
    torch.nn.init.normal_(m.head.weight, std=0.5)  # the head starts at zero: every logit would be 0
    torch.nn.init.normal_(m.head.bias, std=0.1)
    return m


@pytest.fixture(scope="module")
def checkpoint(model, tmp_path_factory) -> Path:
    from mixer_edge import Preprocess, save_checkpoint

    out = tmp_path_factory.mktemp("ckpt")
    save_checkpoint(out, model, Preprocess.default(28, 1), CLASSES, meta={"data": "digits"})
    return out


def _manifest(target: str, files: list[str], folder: Path) -> dict:
    from mixer_edge.export.artifact import file_entries

    return {"target": target, "precision": "fp32", "files": file_entries(folder, files),
            "input": {"name": "input", "shape": ["batch", 1, 28, 28], "dtype": "float32"},
            "output": {"name": "logits", "shape": ["batch", 10]},
            "preprocess": {"size": [28, 28], "channels": 1, "mean": [0.5], "std": [0.5], "resize": "bilinear"},
            "classes": CLASSES, "model": {"variant": "Ti/4", "data": "digits"}, "versions": {}}


@pytest.fixture(scope="module")
def onnx_artifact(model, tmp_path_factory) -> Path:
    import torch

    from mixer_edge.export.artifact import write_manifest

    folder = tmp_path_factory.mktemp("arts") / "onnx-fp32"
    folder.mkdir()
    torch.onnx.export(model, (torch.zeros(1, 1, 28, 28),), str(folder / "model.onnx"), dynamo=False,
                      opset_version=17, input_names=["input"], output_names=["logits"],
                      dynamic_axes={"input": {0: "batch"}, "logits": {0: "batch"}})
    write_manifest(folder, _manifest("onnx", ["model.onnx"], folder))
    return folder


@pytest.fixture(scope="module")
def tensorrt_artifact(tmp_path_factory) -> Path:
    """An artifact whose runtime is not on this machine."""
    from mixer_edge.export.artifact import write_manifest

    folder = tmp_path_factory.mktemp("arts") / "tensorrt-fp16"
    folder.mkdir()
    (folder / "model.plan").write_bytes(b"not a real engine")
    write_manifest(folder, {**_manifest("tensorrt", ["model.plan"], folder), "precision": "fp16"})
    return folder


def _images(n: int, size: int, channels: int, seed: int) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (n, size, size, channels), dtype=np.uint8)


@pytest.fixture(scope="module")
def image_folder(tmp_path_factory) -> Path:
    """10 classes x 2 RGB 30x30 PNGs: the model's preprocessing converts to gray and resizes."""
    from PIL import Image

    root = tmp_path_factory.mktemp("imgs")
    for i, img in enumerate(_images(20, 30, 3, seed=1)):
        d = root / CLASSES[i % 10]
        d.mkdir(exist_ok=True)
        Image.fromarray(img).save(d / f"{i}.png")
    return root


@pytest.fixture(scope="module")
def npz_data(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("npz") / "eval.npz"
    labels = np.random.default_rng(2).integers(0, 10, 24)
    np.savez(path, images=_images(24, 28, 1, seed=3), labels=labels)
    return path


@pytest.fixture
def onnx_target():
    """The registry's ONNX target (mixer_edge/export/onnx.py) must load; no stand-in."""
    from mixer_edge.export.registry import get_target

    return get_target("onnx")


def _edge(capsys, *argv) -> tuple[int, str, str]:
    code = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return code, out, err


def _edge_json(capsys, tmp_path, artifact, data, *extra) -> dict:
    out = tmp_path / "edge.json"
    code, _, err = _edge(capsys, artifact, "--data", data, *FAST, "--json", out, *extra)
    assert code == 0, err
    return json.loads(out.read_text())


def _config(data: str, **kw):
    from mixer_edge.bench.harness import BenchConfig

    return BenchConfig(data=data, settings=Settings(warmup=1, iters=5, batch_sizes=(1, 4), min_calls=5,
                                                         min_seconds=0), **kw)


# ---- the timing loop, as the device script runs it ------------------------------------------------

@pytest.mark.parametrize("min_calls,timed_1,timed_4", [(1, 7, 2), (5, 7, 5), (9, 9, 9)])
def test_timed_calls_are_iters_with_a_floor(capsys, tmp_path, onnx_artifact, npz_data, monkeypatch, min_calls,
                                            timed_1, timed_4):
    """Batch 1: max(--iters, --min-calls) timed calls; batch 4: max(ceil(iters / 4), --min-calls)."""
    calls: dict[int, int] = {}
    real = BACKENDS["onnx"]

    def counting(folder, manifest, opt):
        b = real.load(folder, manifest, opt)

        def run(x):
            calls[len(x)] = calls.get(len(x), 0) + 1
            return b.run(x)
        return b._replace(run=run)

    monkeypatch.setitem(BACKENDS, "onnx", SimpleNamespace(load=counting, LIBRARY=real.LIBRARY, NEEDS=real.NEEDS))
    out = tmp_path / "r.json"
    code, _, err = _edge(capsys, onnx_artifact, "--data", npz_data, "--warmup", "2", "--iters", "7",
                         "--min-calls", min_calls, "--min-time", "0", "--batch-sizes", "1,4", "--limit", "8",
                         "--json", out)
    assert code == 0, err
    r = json.loads(out.read_text())["results"][0]
    assert calls[1] == 1 + 2 + timed_1          # first, warm-up, timed (batch 1 throughput reuses them)
    assert calls[4] == 1 + 1 + timed_4          # first, ceil(2/4) warm-up, timed
    assert calls[8] == 1                        # accuracy: the 8 images in one batch
    assert r["latency_ms"]["count"] == timed_1
    assert [(t["batch"], t["calls"]) for t in r["throughput"]] == [(1, timed_1), (4, timed_4)]


# ---- accuracy: harness, device script and plain onnxruntime agree -------------------------------

def _plain_ort_accuracy(artifact: Path, spec: str) -> dict:
    from mixer_edge import Preprocess
    from mixer_edge.data.sources import load_data

    data = load_data(spec)
    x = Preprocess.default(28, 1)(data.images)
    sess = ort.InferenceSession(str(artifact / "model.onnx"), providers=["CPUExecutionProvider"])
    logits = sess.run(None, {"input": x})[0]
    top5 = np.argsort(-logits, axis=1)[:, :5]
    return {"top1": float((logits.argmax(1) == data.labels).mean()),
            "top5": float((top5 == data.labels[:, None]).any(1).mean()), "n": len(data.labels)}


def test_harness_and_edge_accuracy_equal_plain_onnxruntime(capsys, tmp_path, onnx_artifact, checkpoint,
                                                           image_folder, onnx_target):
    from mixer_edge.bench.harness import benchmark

    spec = f"imagefolder:{image_folder}"
    expected = _plain_ort_accuracy(onnx_artifact, spec)
    doc = benchmark([str(onnx_artifact), str(checkpoint)], _config(spec))
    art, eager = doc["results"]
    assert art["status"] == eager["status"] == "ok"
    assert art["accuracy"] == pytest.approx(expected)
    assert {k: art["data"][k] for k in ("spec", "selection", "n", "reserved_in_data", "labels")} == \
        {"spec": spec, "selection": "held-out", "n": 20, "reserved_in_data": 0, "labels": "by name"}
    # The checkpoint is the default reference: the ONNX export agrees with PyTorch FP32.
    assert art["agreement"]["top1_agreement"] == 1.0 and art["agreement"]["cosine"] > 0.99999
    assert eager["target"] == "pytorch-eager" and eager["accuracy"] == pytest.approx(expected)
    assert art["latency_ms"]["count"] == 5 and art["first_inference_ms"] > 0 and art["load_s"] > 0
    assert art["process_peak_rss_mb"] > art["model_rss_mb"] >= 0 and art["size_bytes"] == (onnx_artifact / "model.onnx").stat().st_size
    edge = _edge_json(capsys, tmp_path, onnx_artifact, spec, "--reference", onnx_artifact)
    assert edge["results"][0]["accuracy"] == pytest.approx(expected)
    assert edge["results"][0]["agreement"]["top1_agreement"] == 1.0
    # One schema for both: the same keys at the top and in every result.
    assert set(doc) == set(edge) and set(art) == set(edge["results"][0]) == set(RESULT_KEYS)
    assert doc["schema"] == edge["schema"] == SCHEMA


def test_openvino_artifact_in_the_device_script(capsys, tmp_path, onnx_artifact, npz_data):
    ov = pytest.importorskip("openvino")
    from mixer_edge.export.artifact import write_manifest

    folder = tmp_path / "openvino-fp32"
    folder.mkdir()
    ov.save_model(ov.convert_model(str(onnx_artifact / "model.onnx")), str(folder / "model.xml"), compress_to_fp16=False)
    write_manifest(folder, _manifest("openvino", ["model.xml", "model.bin"], folder))
    r = _edge_json(capsys, tmp_path, folder, npz_data, "--threads", "1", "--reference", onnx_artifact)["results"][0]
    onnx = _edge_json(capsys, tmp_path, onnx_artifact, npz_data)["results"][0]
    assert r["status"] == "ok" and r["runtime"]["precision_hint"] == "f32"
    assert r["accuracy"] == onnx["accuracy"]
    assert r["agreement"]["top1_agreement"] == 1.0 and r["agreement"]["max_abs_diff"] < 1e-4


# ---- errors -------------------------------------------------------------------------------------

def test_tampered_artifact_is_refused(capsys, tmp_path, onnx_artifact, npz_data, onnx_target):
    from mixer_edge.bench.harness import benchmark

    bad = tmp_path / "onnx-fp32"
    shutil.copytree(onnx_artifact, bad)
    blob = bytearray((bad / "model.onnx").read_bytes())
    blob[-1] ^= 0xFF
    (bad / "model.onnx").write_bytes(bytes(blob))
    code, _, err = _edge(capsys, bad, "--data", npz_data, *FAST, "--json", tmp_path / "r.json")
    assert code == 2 and err.strip().splitlines() == [
        f"error: artifact {bad}: model.onnx does not match its sha256 in manifest.json (modified or corrupt)"]
    assert not (tmp_path / "r.json").exists()
    with pytest.raises(BadInput, match="does not match its sha256"):
        benchmark([str(bad)], _config(str(npz_data)))
    (bad / "model.onnx").unlink()
    code, _, err = _edge(capsys, bad, "--data", npz_data)
    assert code == 2 and "model.onnx is missing" in err


def test_foreign_classes_give_agreement_but_no_top1(capsys, tmp_path, onnx_artifact, onnx_target):
    """Labels that are not the model's classes: no top-1 (the reason names both lists), the rest
    of the row measured, on the device script and the host alike."""
    from PIL import Image

    from mixer_edge.bench.harness import benchmark

    for c in "abc":
        (tmp_path / c).mkdir()
        Image.fromarray(_images(1, 28, 1, seed=6)[0, ..., 0]).save(tmp_path / c / "x.png")
    spec = f"imagefolder:{tmp_path}"
    device = _edge_json(capsys, tmp_path, onnx_artifact, spec)["results"][0]
    host = benchmark([str(onnx_artifact)], _config(spec))["results"][0]
    why = "the data's classes [a, b, c] are not the model's classes [0, 1, 2, 3, 4, 5, 6, 7, 8, 9]"
    for row in (device, host):
        assert row["accuracy"] is None and row["data"]["labels"] == why and row["latency_ms"]["p50"] > 0


def test_result_of_another_schema_is_refused(tmp_path):
    from mixer_edge.bench.report import build_report

    path = tmp_path / "old.json"
    path.write_text(json.dumps({"schema": 2, "kind": KIND, "device": {}, "results": []}))
    with pytest.raises(BadInput, match=r"old.json has bench result schema 2; this mixer-edge reads schema 1"):
        build_report([path], tmp_path / "report")
    path.write_text(json.dumps({"schema": 1, "kind": "something-else"}))
    with pytest.raises(BadInput, match="is not a mixer-edge bench result"):
        build_report([path], tmp_path / "report")
    assert not (tmp_path / "report").exists()


# ---- Ctrl-C ---------------------------------------------------------------------------------------

def _interrupting(after: int):
    state = {"calls": 0}

    def wrap(run):
        def interrupted(x):
            state["calls"] += 1
            if state["calls"] > after:
                raise KeyboardInterrupt
            return run(x)
        return interrupted
    return wrap


def test_ctrl_c_in_the_device_script_writes_no_file(capsys, tmp_path, onnx_artifact, npz_data, monkeypatch):
    real, wrap = BACKENDS["onnx"], _interrupting(after=4)
    monkeypatch.setitem(BACKENDS, "onnx", SimpleNamespace(
        load=lambda *a: (lambda b: b._replace(run=wrap(b.run)))(real.load(*a)), LIBRARY=real.LIBRARY))
    out = tmp_path / "out" / "r.json"
    code, _, err = _edge(capsys, onnx_artifact, "--data", npz_data, *FAST, "--json", out)
    assert code == 130 and "interrupted" in err
    assert not out.exists() and not (out.parent.exists() and any(out.parent.iterdir()))


def test_ctrl_c_in_mixer_edge_bench_writes_no_file(tmp_path, onnx_artifact, npz_data, onnx_target, monkeypatch):
    from mixer_edge.cli import bench as cli_commands
    from mixer_edge.export import registry

    class Interrupting:
        def __init__(self, target):
            self.target, self.capabilities, self.backend = target, target.capabilities, target.backend

        def status(self):
            return self.target.status()

        def load_runner(self, artifact, threads=None, provider=None):
            r = self.target.load_runner(artifact)
            return type(r)(_interrupting(after=3)(r.run), r.config, r.what)

    monkeypatch.setattr(registry, "get_target", lambda name: Interrupting(onnx_target))
    p = argparse.ArgumentParser()
    cli_commands.add_bench_arguments(p)
    out = tmp_path / "r.json"
    args = p.parse_args([str(onnx_artifact), "--data", str(npz_data), *FAST, "--json", str(out)])
    with pytest.raises(KeyboardInterrupt):
        cli_commands.run_bench(args)
    assert list(tmp_path.iterdir()) == []


# ---- runtime-only mode -------------------------------------------------------------------------

def test_device_script_runs_without_torch_and_mixer_edge(capsys, tmp_path, onnx_artifact, image_folder):
    blocker = tmp_path / "blocked"
    for name in ("torch", "mixer_edge"):
        (blocker / name).mkdir(parents=True)
        (blocker / name / "__init__.py").write_text(f"raise ImportError('{name} is not on this device')\n")
    device = tmp_path / "device"
    device.mkdir()
    ship_runtime(device, ["edge_bench.py"])   # the launcher and the runtime package, as an artifact has them
    script = device / "edge_bench.py"
    env = {"PYTHONPATH": str(blocker), "PATH": "/usr/bin:/bin", "OMP_NUM_THREADS": "1"}
    probe = subprocess.run([sys.executable, "-c", "import mixer_edge"], env=env, capture_output=True, text=True,
                           cwd=device)
    assert probe.returncode != 0 and "not on this device" in probe.stderr  # the blocker works
    spec = f"imagefolder:{image_folder}"
    out = device / "result.json"
    proc = subprocess.run([sys.executable, str(script), str(onnx_artifact), "--data", spec, *FAST, "--json", str(out)],
                          env=env, capture_output=True, text=True, timeout=120, cwd=device)
    assert proc.returncode == 0, proc.stderr
    result = json.loads(out.read_text())["results"][0]
    assert result["accuracy"] == pytest.approx(_plain_ort_accuracy(onnx_artifact, spec))
    assert "torch" not in json.loads(out.read_text())["versions"]
    assert "p50 ms" in proc.stdout


# ---- not runnable here, torch.compile failure -----------------------------------------------------

def test_runtime_missing_is_recorded_not_fatal(capsys, tmp_path, tensorrt_artifact, npz_data, monkeypatch):
    out = tmp_path / "trt.json"
    code, _, err = _edge(capsys, tensorrt_artifact, "--data", npz_data, *FAST, "--json", out)
    assert code == 3 and "not run: " in err
    r = json.loads(out.read_text())["results"][0]
    assert r["status"] == "not-run" and r["reason"] and r["latency_ms"] is None


def test_torch_compile_failure_is_recorded(npz_data, checkpoint, tensorrt_artifact, monkeypatch):
    import torch

    from mixer_edge.bench.harness import benchmark

    def broken(*a, **k):
        raise RuntimeError("no C++ compiler here\nlong details")

    monkeypatch.setattr(torch, "compile", broken)
    eager, compiled, trt = benchmark([str(checkpoint), str(tensorrt_artifact)],
                                     _config(str(npz_data), compile=True))["results"]
    assert eager["status"] == "ok" and eager["accuracy"]["n"] == 24
    assert compiled["target"] == "pytorch-compile" and compiled["status"] == "not-run"
    assert compiled["reason"] == "torch.compile failed: RuntimeError: no C++ compiler here"
    assert trt["status"] == "not-run" and trt["reason"]


# ---- report -------------------------------------------------------------------------------------

def _scaled(v, factor):
    return [x * factor for x in v] if isinstance(v, list) else v * factor


def _two_devices(tmp_path, onnx_artifact, checkpoint, tensorrt_artifact, npz_data) -> list[Path]:
    from mixer_edge.bench.harness import benchmark

    doc = benchmark([str(checkpoint), str(onnx_artifact), str(tensorrt_artifact)],
                    _config(str(npz_data), device_name="laptop"))
    for r in doc["results"]:   # a quiet machine, whatever this one's load was: speed-ups are printed
        r["load"] = {"others_cores": 0.0, "busy": False} if r["status"] == "ok" else None
    paths = [tmp_path / "laptop.json"]
    paths[0].write_text(json.dumps(doc))
    board = json.loads(json.dumps(doc))
    board["device"]["name"] = "board"
    for r in board["results"]:
        if r["status"] == "ok":  # the board: 4x slower, still the same accuracy
            r["latency_ms"] = {k: _scaled(v, 4) if k not in ("count", "p50_ci_coverage") else v
                               for k, v in r["latency_ms"].items()}
            for t in r["throughput"]:
                t["images_per_s"], t["images_per_s_ci"] = t["images_per_s"] / 4, _scaled(t["images_per_s_ci"], 0.25)
    paths.append(tmp_path / "board.json")
    paths[1].write_text(json.dumps(board))
    return paths


def test_report_from_two_devices(tmp_path, onnx_artifact, checkpoint, tensorrt_artifact, npz_data, onnx_target):
    from mixer_edge.bench.report import build_report
    from mixer_edge.bench.rows import load_result, pareto_front, rows_of

    paths = _two_devices(tmp_path, onnx_artifact, checkpoint, tensorrt_artifact, npz_data)
    files = build_report(paths, tmp_path / "report", budget=0.5)
    md, page = files.markdown.read_text(), files.html.read_text()
    for png in files.plots:
        assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert page.count('<img alt="') == 2 and page.count('src="data:image/png;base64,') == 2
    offline = re.sub(r"data:image/png;base64,[A-Za-z0-9+/=]+", "", page)
    assert "<table>" in page and "http" not in offline  # nothing fetched when opened
    assert all(src.startswith("data:image/png;base64,") for src in re.findall(r'(?:src|href)="([^"]*)"', page))
    for text in (md, page):
        assert "laptop" in text and "board" in text and "tensorrt" in text and "not run here [" in text
        assert text.count("needs tensorrt") == 1   # the reason once, as a footnote both devices' rows refer to
        assert "accuracy_vs_latency.png" in md and "1.00x" in text
    assert {r.device for r in files.recommendations} == {"laptop", "board"}
    assert all(r.row is not None and r.row.ok for r in files.recommendations)
    rows = rows_of([load_result(p) for p in paths])
    assert len(rows) == 6 and sum(not r.ok for r in rows) == 2
    eager = next(r for r in rows if r.device == "board" and r.target == "pytorch-eager")
    assert eager.speedup == pytest.approx(1.0)
    front = pareto_front([r for r in rows if r.device == "board"])
    assert front and all(r.ok for r in front)


def test_recommendation_is_the_fastest_within_the_budget():
    from mixer_edge.bench.rows import Row, pareto_front, recommend

    def row(name, precision, top1, p50):
        return Row("dev", name, "onnx", precision, None, "ok", None, 1, top1, None, None, None, p50, p50, (), None)

    rows = [row("fp32", "fp32", 0.950, 10.0), row("fp16", "fp16", 0.948, 6.0), row("int8", "int8", 0.930, 3.0)]
    assert recommend(rows, 0.5)[0].row.name == "fp16"     # int8 is 2 points below
    assert recommend(rows, 2.5)[0].row.name == "int8"
    assert [r.name for r in pareto_front(rows)] == ["int8", "fp16", "fp32"]
    assert [r.name for r in pareto_front(rows + [row("slow", "fp32", 0.9, 20.0)])] == ["int8", "fp16", "fp32"]


def test_every_bench_and_report_option_has_help():
    from mixer_edge.cli import bench as cli_commands

    for add in (cli_commands.add_bench_arguments, cli_commands.add_report_arguments):
        p = argparse.ArgumentParser()
        add(p)
        for action in p._actions:
            if not isinstance(action, argparse._HelpAction):
                assert action.help, action.option_strings or action.dest
    p = build_parser()
    assert all(a.help for a in p._actions)


CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser") or shutil.which("google-chrome")
WINDOW = 1400   # px: the width the report must read well at (issue 20)


def _crowded_result(path: Path) -> Path:
    """A wide report of one host run (issue 20's): 12 rows, three TensorRT and three Core ML rows not
    run with a long reason each, stand-in checks, a busy row, three batch sizes, a long device name."""
    from mixer_edge.runtime.results import result_entry

    why = ("needs tensorrt and an NVIDIA GPU: tensorrt is not installed here, the engine is built on the device "
           "(pip install 'mixer-edge[tensorrt]'); no NVIDIA GPU here (no /dev/nvidia0, no Jetson /dev/nvgpu, no "
           "nvidia-smi); export writes the TensorRT-ready ONNX, validated with ONNX Runtime")
    check = {"status": "passed", "checked_by": "own runtime", "runner": "onnxruntime", "reason": None}
    results = []
    for i, (target, prec) in enumerate((t, p) for t in ("onnx", "openvino", "coreml", "tensorrt")
                                       for p in ("fp32", "fp16", "int8")):
        base = dict(name=f"mnist-t4-aug-{target}-{prec}", artifact="a", target=target, precision=prec,
                    size_bytes=2_300_000, validation={**check, "checked_by": "stand-in"} if i % 4 == 3 else check)
        if target in ("coreml", "tensorrt"):
            results.append(result_entry(**base, status="not-run", reason=why if target == "tensorrt" else
                                        "needs macOS (this is Linux): conversion and structural checks only"))
            continue
        p50 = 0.65 + 0.1 * i
        results.append(result_entry(**base, status="ok", accuracy={"top1": 0.986, "top5": 1.0, "n": 1000},
                                    agreement={"top1_agreement": 0.998, "cosine": 0.99993},
                                    latency_ms={"p10": p50 * 0.9, "p50": p50, "p90": p50 * 1.2, "p50_ci":
                                                [p50 * 0.97, p50 * 1.03]}, model_rss_mb=31.2,
                                    throughput=[{"batch": b, "images_per_s": 1000 * b / p50 / (1 + b / 40),
                                                 "images_per_s_ci": [900 * b / p50 / (1 + b / 40),
                                                                     1100 * b / p50 / (1 + b / 40)]}
                                                for b in (1, 8, 32)],
                                    data={"n": 1000, "selection": "held-out"}))
        results[-1]["load"] = {"others_cores": 0.8 if i == 1 else 0.02, "busy": i == 1}
    doc = {"schema": 1, "kind": "mixer-edge-bench", "tool": "mixer-edge bench", "versions": {},
           "device": {"name": "ubuntu-workstation-long-name [AMD EPYC 7B13 64-Core Processor]", "cpu": "AMD EPYC"},
           "conditions": {"before": {"cpu_governor": "schedutil", "load_avg": [0.5, 0.4, 0.3]}, "after": {},
                          "cores_usable": 2, "others_cores": 0.3, "clocks_locked": False}, "results": results}
    path.write_text(json.dumps(doc))
    return path


def _chromium(tmp_path, *args) -> subprocess.CompletedProcess:
    """Headless Chromium with its network off (a proxy that answers nothing) at the report's width."""
    return subprocess.run([CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic",
                           "--no-first-run", "--disable-background-networking", "--disable-component-update",
                           "--disable-sync", f"--user-data-dir={tmp_path / 'profile'}", "--proxy-server=127.0.0.1:9",
                           "--hide-scrollbars", f"--window-size={WINDOW},1200", "--virtual-time-budget=5000", *args],
                          capture_output=True, text=True, timeout=120)


@pytest.mark.skipif(CHROMIUM is None, reason="needs headless Chromium (apt-get install chromium)")
def test_report_html_renders_offline_in_headless_chromium(tmp_path, onnx_artifact, checkpoint, tensorrt_artifact,
                                                          npz_data):
    """Chromium, with its network off and a 1400 px wide window, loads report.html: both embedded
    plots decode (natural width > 0), the results table has a row per result, and nothing is wider
    than the window. How: a copy of the page with a script that, once loaded, writes what the
    layout engine measured (the window's inner width, the document's scrollWidth, the right edge of
    every table) into an attribute that --dump-dom prints; the window's width is checked too, so
    --window-size took effect. A screenshot at that size is saved beside it for a person to look at."""
    from mixer_edge.bench.report import build_report

    paths = _two_devices(tmp_path, onnx_artifact, checkpoint, tensorrt_artifact, npz_data)
    files = build_report(paths + [_crowded_result(tmp_path / "crowded.json")], tmp_path / "report")
    probe = tmp_path / "report" / "probe.html"
    probe.write_text(files.html.read_text().replace("</body>", (
        "<script>window.addEventListener('load', () => document.body.setAttribute('data-probe', "
        "[...document.images].map(i => i.naturalWidth).join(',') + ';' + "
        "document.querySelectorAll('table tr').length + ';' + window.innerWidth + ';' + "
        "document.documentElement.scrollWidth + ';' + "
        "Math.ceil(Math.max(...[...document.querySelectorAll('table')].map(t => t.getBoundingClientRect().right)))"
        "));</script></body>")))
    proc = _chromium(tmp_path, "--dump-dom", probe.as_uri())
    found = re.search(r'data-probe="([^"]*)"', proc.stdout)
    assert found, proc.stderr[-2000:]
    widths, rows, inner, scroll, right = found.group(1).split(";")
    assert [int(w) > 100 for w in widths.split(",")] == [True, True]
    assert int(rows) == (1 + 3) + 2 * (1 + 6 + 12)   # devices; each results table: header, 6 + 12 results
    assert int(inner) == WINDOW and int(scroll) <= WINDOW and int(right) <= WINDOW, (inner, scroll, right)
    shot = tmp_path / "report" / "screenshot.png"
    proc = _chromium(tmp_path, f"--screenshot={shot}", files.html.as_uri())
    assert shot.is_file(), proc.stderr[-2000:]
    head = shot.read_bytes()[:24]   # PNG signature, IHDR: width and height, big-endian
    assert head[:8] == b"\x89PNG\r\n\x1a\n" and int.from_bytes(head[16:20], "big") == WINDOW


def test_mixer_edge_bench_with_a_runtime_not_installed_exits_non_zero(capsys, tmp_path, tensorrt_artifact, npz_data):
    from mixer_edge.cli import main

    out = tmp_path / "r.json"
    code = main(["bench", str(tensorrt_artifact), "--data", str(npz_data), *map(str, FAST), "--json", str(out)])
    err = [line for line in capsys.readouterr().err.splitlines() if line.startswith("error:")]
    assert code == 3 and len(err) == 1 and "1 of 1 not run here" in err[0] and "tensorrt" in err[0]
    assert json.loads(out.read_text())["results"][0]["status"] == "not-run"  # recorded for the report
