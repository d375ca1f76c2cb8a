#!/usr/bin/env python3
"""edge_bench.py: benchmark one mixer-edge artifact on the device that runs it.

Self-contained on purpose: it needs the Python standard library, numpy and the artifact's runtime
(onnxruntime, openvino, ...), plus Pillow only to decode or resize images (NEEDS says what to install
on a Jetson or a Mac, with versions). It never imports torch or mixer_edge, so it can be copied next
to an artifact onto a board that has nothing else.

    python edge_bench.py ARTIFACT_DIR --predict IMAGE_OR_FOLDER... [--top-k 5] [--json OUT]
    python edge_bench.py ARTIFACT_DIR --data SPEC [--iters N | --duration S] [--warmup N]
                         [--min-calls N] [--min-time S] [--batch-sizes 1,8,32] [--threads N] [--precision-hint f32|bf16|f16]
                         [--provider NAME] [--limit N] [--images held-out|all]
                         [--reference FP32_ARTIFACT_DIR] [--json OUT]

It reads ARTIFACT_DIR/manifest.json, checks every file's sha256, loads the model (timed), applies
the manifest's preprocessing (the same steps as mixer_edge/data/preprocess.py, written out here in
numpy + PIL), measures first-inference time, latency at batch 1 (warm-up, then --iters timed
calls or --duration seconds, and at least --min-calls calls and --min-time seconds) with its p10-p90
and the median's 95% interval, throughput per batch size (the same floors, the same spread), top-1 /
top-5 accuracy, the model's resident memory (what load and first inference added) beside the
process's peak, and writes the same versioned JSON as `mixer-edge bench` (atomically: an
interrupted run leaves no file). `mixer-edge bench` imports this module for those measurements.

Before timing it runs the artifact's golden set (device_check): real images recorded at export with
the FP32 PyTorch logits; the runtime here must reproduce them within the precision's tolerance.

Exit status: 0 done; 2 bad input (tampered artifact, unknown data, class-count mismatch);
3 the runtime cannot run here (the result, marked not-run, is still written); 4 the device check
failed (the result, marked, is still written); 130 interrupted.
"""
from __future__ import annotations

import sys

if __name__ == "__main__":   # run as a script: trt_build.py's `import edge_bench` must find this very module
    sys.modules.setdefault("edge_bench", sys.modules[__name__])

import argparse
import gzip
import hashlib
import json
import math
import pickle
import os
import platform
import re
import shutil
import subprocess
import tempfile
import time
import zipfile
import zlib
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Callable, NamedTuple

import numpy as np

SCHEMA = 1                      # of the result JSON; `mixer-edge report` refuses any other
KIND = "mixer-edge-bench"
ARTIFACT_SCHEMA = 1             # of manifest.json
SCRIPT_VERSION = "1"
MANIFEST = "manifest.json"

# The exit codes of every mixer-edge program, host CLI and device scripts alike (the one table;
# the host imports it from here, the runtime being the leaf).
EXIT_OK = 0
EXIT_VALIDATION_FAILED = 1   # export: an artifact disagrees with PyTorch FP32 beyond tolerance
EXIT_BAD_INPUT = 2           # a file, option or data set that cannot be used as given; missing package
EXIT_NOT_RUN = 3             # some runtime cannot run here (results written, marked not-run)
EXIT_DEVICE_CHECK = 4        # an artifact failed its golden check on this device (results written, marked)
EXIT_INTERRUPTED = 130       # Ctrl-C; nothing half-written is kept


class BenchError(Exception):
    """A problem with the input the user can fix; main() prints it as one line, exit 2."""


class DeviceCheckFailed(Exception):
    """The artifact does not compute, on this device, what was validated at export (golden set)."""


class NotRunnable(Exception):
    """The artifact's runtime is missing or cannot execute on this machine; says why."""


# ---- the artifact -------------------------------------------------------------------------------

def sha256_file(path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def read_json(path, what: str):
    """The JSON document in a file; each way of not being one (absent, a folder, unreadable, not
    UTF-8, not JSON, nested too deep, a number too long) is one BenchError naming the file."""
    path = Path(path)
    if not path.is_file():
        raise BenchError(f"{what} {'is a folder, not a file' if path.is_dir() else 'not found'}: {path}")
    try:
        doc = json.loads(path.read_bytes())
        json.dumps(doc, ensure_ascii=False).encode()   # JSON may spell unpaired surrogates (\ud800); text may not
    except OSError as e:
        raise BenchError(f"cannot read {what} {path}: {e.strerror or e}") from None
    except (ValueError, RecursionError) as e:
        raise BenchError(f"{what} {path} is not valid JSON: {e}") from None
    return doc


def read_manifest(folder, verify: bool = True) -> dict:
    """ARTIFACT/manifest.json, its schema checked, every listed file present with its sha256
    (verify=False: the manifest alone, for the exporter's own staging folder)."""
    folder = Path(folder)
    path = folder / MANIFEST
    if not path.is_file():
        why = f"no {MANIFEST}" if folder.is_dir() else "not a folder" if folder.exists() else "not found"
        raise BenchError(f"{folder} is not a mixer-edge artifact ({why})")
    manifest = read_json(path, "artifact manifest")
    if not isinstance(manifest, dict) or manifest.get("schema") != ARTIFACT_SCHEMA:
        found = manifest.get("schema") if isinstance(manifest, dict) else None
        raise BenchError(f"{path} has artifact schema {found!r}; this script reads schema {ARTIFACT_SCHEMA}")
    check_document(manifest, path, MANIFEST_SHAPE, manifest_problems)
    if verify:
        verify_files(folder, manifest)
    return manifest


def confined(folder: Path, name) -> Path:
    """folder/name, refused unless name is a relative path that stays inside folder (no absolute
    path, no '..' out of it, no link leading out): a manifest names files, it cannot point elsewhere."""
    if not isinstance(name, str) or not name or Path(name).is_absolute():
        raise BenchError(f"manifest file path {name!r} is not a relative path inside the artifact folder")
    root = Path(folder).resolve()
    path = (root / name).resolve()
    if path != root and root not in path.parents:
        raise BenchError(f"manifest file path {name!r} leads outside the artifact folder {folder}")
    return Path(folder) / name


def verify_files(folder: Path, manifest: dict) -> None:
    for entry in manifest["files"]:
        f = confined(folder, entry["path"])
        if not f.is_file():
            raise BenchError(f"artifact {folder} is incomplete: {entry['path']} is missing")
        if sha256_file(f) != entry["sha256"]:
            raise BenchError(f"artifact {folder}: {entry['path']} does not match its sha256 in "
                             f"{MANIFEST} (modified or corrupt)")


def file_hashes(manifest: dict) -> dict:
    return {e["path"]: e["sha256"] for e in manifest["files"]}


def artifact_size(folder: Path, manifest: dict) -> int:
    return sum((Path(folder) / e["path"]).stat().st_size for e in manifest["files"])


def model_file(folder: Path, manifest: dict, suffix: str) -> Path:
    """The artifact's model file: model<suffix> when listed, else the only listed *<suffix>."""
    names = [e["path"] for e in manifest["files"] if e["path"].endswith(suffix)]
    if f"model{suffix}" in names:
        return Path(folder) / f"model{suffix}"
    if len(names) == 1:
        return Path(folder) / names[0]
    raise BenchError(f"artifact {folder}: expected one {suffix} file in {MANIFEST}, found {names or 'none'}")


def listed(folder, manifest: dict, name) -> Path:
    """folder/name for a file the manifest lists (so read_manifest checked its sha256): the runtime
    opens no file the manifest does not vouch for."""
    if name not in {e["path"] for e in manifest["files"]}:
        raise BenchError(f"artifact {folder}: {name!r} is not among the files {MANIFEST} lists and hashes")
    return confined(folder, name)


def batch_axis(manifest: dict) -> int | None:
    """None when the batch axis is dynamic (a name such as "batch"), else the fixed batch size."""
    shape = manifest.get("input", {}).get("shape") or ["batch"]
    return shape[0] if isinstance(shape[0], int) else None


# ---- runtimes -----------------------------------------------------------------------------------

@dataclass(frozen=True)
class Options:
    """How to run: None means the runtime's default, recorded as read back from the runtime."""
    threads: int | None = None
    precision_hint: str | None = None   # OpenVINO INFERENCE_PRECISION_HINT: f32 | bf16 | f16
    provider: str | None = None         # ONNX Runtime execution provider / OpenVINO device


class Backend(NamedTuple):
    run: Callable[[np.ndarray], np.ndarray]   # (N, C, H, W) float32 -> logits (N, K)
    config: dict                               # the runtime configuration actually in use
    what: str                                  # e.g. "onnxruntime 1.20.1 CPUExecutionProvider"
    versions: dict


PRECISION_HINTS = ("f32", "bf16", "f16")


# ---- what a device needs ------------------------------------------------------------------------
# One table for the messages below and trt_build.py's, and for the README's "On a Jetson" and "On a
# Mac" sections, which print every install line of it (a test checks): message and docs cannot drift.

class Need(NamedTuple):
    module: str      # the import it provides
    install: str     # the command, exactly as the README prints it
    note: str        # where, which version, and why

# cuda-python's major must be the device's CUDA major (it carries its own CUDA runtime). A Python
# older than the newest release's floor makes pip take an older release of the same major.
CUDA_PYTHON = {11: 'pip install "cuda-python>=11.8,<12"', 12: 'pip install "cuda-python>=12,<13"',
               13: 'pip install "cuda-python>=13,<14"'}

PILLOW = 'pip install "Pillow>=9"'

NEEDS = {   # target -> what edge_bench.py / trt_build.py import on its device besides the standard library
    "tensorrt": (
        Need("tensorrt", "sudo apt-get install python3-libnvinfer",
             "on a Jetson: JetPack 6.1 / 6.2's TensorRT 10.3 bindings, for the system python3 (3.10); never "
             "pip there: PyPI's aarch64 wheels are built for Arm servers, not Jetson"),
        Need("tensorrt", 'pip install "tensorrt>=10,<12"',
             "on an x86-64 Linux machine with an NVIDIA GPU: NVIDIA's wheel, with its own CUDA libraries"),
        Need("cuda", CUDA_PYTHON[12],
             "GPU buffers, for the device's CUDA major: JetPack 6 is CUDA 12.6 (CUDA 11: "
             f"{CUDA_PYTHON[11]}; CUDA 13: {CUDA_PYTHON[13]}); a CUDA build of torch, or pycuda, also serves"),
        Need("numpy", 'pip install "numpy>=1.24,<2"',
             "JetPack 6's NVIDIA Python wheels (its torch among them) are built against NumPy 1"),
        Need("PIL", PILLOW, "decodes image files and resizes images of another size"),
    ),
    "coreml": (
        Need("coremltools", 'pip install "coremltools>=8,<10"',
             "on macOS 14 or newer (15 for iOS18 / macOS15 programs): Core ML prediction, whose native "
             "part ships only in the macOS wheels"),
        Need("numpy", 'pip install "numpy>=1.24"', "arrays"),
        Need("PIL", PILLOW, "decodes image files, resizes images of another size, feeds image-input programs"),
    ),
}


def install_hint(target: str, module: str) -> str:
    """How to install `module` for `target` artifacts: NEEDS' lines, else plain pip."""
    lines = [f"{n.install} ({n.note})" for n in NEEDS.get(target, ()) if n.module == module]
    return "; or ".join(lines) or f"pip install {module}"


def _pil():
    """PIL.Image, imported only where images are decoded or resized."""
    try:
        from PIL import Image
    except ImportError as e:
        raise NotRunnable(f"decoding or resizing images needs Pillow ({e}); {PILLOW}") from None
    return Image


def _import(module: str, target: str):
    import importlib

    try:
        return importlib.import_module(module)
    except ImportError as e:
        raise NotRunnable(f"needs {module} for {target} artifacts ({e}); {install_hint(target, module)}") from None


def load_onnx(folder: Path, manifest: dict, opt: Options) -> Backend:
    if opt.precision_hint is not None:
        raise BenchError(f"--precision-hint applies to openvino artifacts; "
                         f"ONNX Runtime runs {manifest['precision']} as exported")
    return onnx_backend(model_file(folder, manifest, ".onnx"), opt.threads, opt.provider)


def onnx_backend(path, threads: int | None = None, provider: str | None = None,
                 optimization: str = "all") -> Backend:
    """An ONNX Runtime session on one .onnx file: the one place sessions are set up, for devices,
    `mixer-edge bench` and export validation. optimization "basic" runs Q/DQ as written (what
    TensorRT's kernels compute) instead of fusing them into ONNX Runtime's integer kernels."""
    ort = _import("onnxruntime", "onnx")
    so = ort.SessionOptions()
    so.intra_op_num_threads = threads or os.cpu_count() or 1
    so.graph_optimization_level = {"all": ort.GraphOptimizationLevel.ORT_ENABLE_ALL,
                                   "basic": ort.GraphOptimizationLevel.ORT_ENABLE_BASIC}[optimization]
    so.log_severity_level = 3
    # Nodes an accelerator provider does not take fall back to the CPU provider, as ORT intends.
    wanted = [provider or "CPUExecutionProvider"]
    if wanted[0] != "CPUExecutionProvider":
        wanted.append("CPUExecutionProvider")
    available = ort.get_available_providers()
    if wanted[0] not in available:
        raise NotRunnable(f"needs ONNX Runtime provider {wanted[0]}; this onnxruntime has {', '.join(available)}")
    sess = ort.InferenceSession(str(path), so, providers=wanted)
    if sess.get_providers()[0] != wanted[0]:
        raise NotRunnable(f"ONNX Runtime could not start {wanted[0]} (session runs on {sess.get_providers()})")
    in_name, out_name = sess.get_inputs()[0].name, sess.get_outputs()[0].name

    def run(x: np.ndarray) -> np.ndarray:
        return sess.run([out_name], {in_name: x})[0]

    config = {"provider": wanted[0], "providers": sess.get_providers(), "threads": so.intra_op_num_threads,
              "graph_optimization": optimization}
    return Backend(run, config, f"onnxruntime {ort.__version__} {wanted[0]}", {"onnxruntime": ort.__version__})


def load_openvino(folder: Path, manifest: dict, opt: Options) -> Backend:
    ov = _import("openvino", "openvino")
    hint = opt.precision_hint or "f32"  # explicit: OpenVINO's CPU default is bf16 where the ISA has it
    if hint not in PRECISION_HINTS:
        raise BenchError(f"unknown --precision-hint {hint!r}; accepted: {', '.join(PRECISION_HINTS)}")
    device = opt.provider or "CPU"
    core = ov.Core()
    if device.split(":")[0].split(".")[0] not in {d.split(".")[0] for d in core.available_devices} \
            and not device.startswith(("AUTO", "HETERO", "MULTI")):
        raise NotRunnable(f"needs OpenVINO device {device}; this machine has {', '.join(core.available_devices)}")
    threads = opt.threads or _usable_cpus()
    xml = model_file(folder, manifest, ".xml")
    weights = listed(folder, manifest, xml.with_suffix(".bin").name)  # read_model would open it unlisted
    compiled = core.compile_model(core.read_model(str(xml), str(weights)), device,
                                  {"INFERENCE_PRECISION_HINT": hint, "INFERENCE_NUM_THREADS": threads})
    request = compiled.create_infer_request()

    def run(x: np.ndarray) -> np.ndarray:
        request.infer({0: x})
        return request.get_output_tensor(0).data.copy()

    config = {"device": device, "precision_hint": hint, "threads": threads}
    try:  # what the plugin actually uses: a CPU without BF16 runs a bf16 hint in f32
        config["applied_precision"] = compiled.get_property("INFERENCE_PRECISION_HINT").get_type_name()
        config["applied_threads"] = int(compiled.get_property("INFERENCE_NUM_THREADS"))
    except (RuntimeError, AttributeError, TypeError):  # not every device reports these
        pass
    release = ov.__version__.split("-")[0]   # "2026.4.1-22982-e213a147257-releases/..." -> "2026.4.1"
    return Backend(run, config, f"openvino {release} {device} {hint}", {"openvino": ov.__version__})


def _usable_cpus() -> int:
    """CPUs this process may use (a container's affinity mask, not the host's count)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # macOS, Windows
        return os.cpu_count() or 1


def load_tensorrt(folder: Path, manifest: dict, opt: Options) -> Backend:
    """The engine runner lives in trt_build.py (engine build, buffers, version checks), imported as
    an ordinary module: the package's sibling on the host, the script beside this one in every
    TensorRT artifact. It raises this module's own error classes."""
    try:
        from . import trt_build            # inside the mixer_edge package
    except ImportError:
        try:
            import trt_build               # a script in an artifact folder, trt_build.py beside it
        except ImportError:
            raise NotRunnable("trt_build.py is not beside edge_bench.py; re-export the artifact with "
                              "mixer-edge export --target tensorrt") from None
    return trt_build.load_tensorrt(folder, manifest, opt)


def load_coreml(folder: Path, manifest: dict, opt: Options) -> Backend:
    """Core ML on macOS: MLModel.predict on the .mlpackage; --provider picks the compute units
    (ALL, CPU_ONLY, CPU_AND_GPU, CPU_AND_NE)."""
    _check_macos(manifest)
    ct = _import("coremltools", "coreml")
    units = (opt.provider or "ALL").upper()
    if units not in ct.ComputeUnit.__members__:
        raise BenchError(f"unknown Core ML compute units {units!r}; accepted: {', '.join(ct.ComputeUnit.__members__)}")
    model = ct.models.MLModel(str(folder / "model.mlpackage"), compute_units=ct.ComputeUnit[units])
    image_input = (manifest.get("export") or {}).get("spec", {}).get("coreml_input") == "image"
    pre = manifest["preprocess"]
    mean, std = np.asarray(pre["mean"], np.float32), np.asarray(pre["std"], np.float32)

    def as_image(img: np.ndarray):  # (C, H, W) preprocessed -> the 8-bit image the program expects
        Image = _pil()
        raw = np.clip(np.rint((img.transpose(1, 2, 0) * std + mean) * 255), 0, 255).astype(np.uint8)
        return Image.fromarray(raw[..., 0] if raw.shape[-1] == 1 else raw)

    def run(x: np.ndarray) -> np.ndarray:
        if image_input:
            return np.stack([np.asarray(model.predict({"input": as_image(img)})["logits"]).reshape(-1) for img in x])
        return np.asarray(model.predict({"input": x})["logits"], dtype=np.float32)

    return Backend(run, {"compute_units": units, "input": "image" if image_input else "tensor"},
                   f"coremltools {ct.__version__} MLModel {units}", {"coremltools": ct.__version__})


# Core ML specification version of a program -> the first macOS that runs it (iOS16 / macOS13 programs
# are version 7, iOS17 / macOS14 version 8, iOS18 / macOS15 version 9).
MACOS_FOR_SPEC = {7: 13, 8: 14, 9: 15}


def _check_macos(manifest: dict) -> None:
    """Core ML runs on macOS only, and a program only on the macOS of its deployment target or newer."""
    if platform.system() != "Darwin":
        raise NotRunnable(f"Core ML prediction needs macOS (this is {platform.system()}); copy the artifact to a "
                          f"Mac and run edge_bench.py there ({install_hint('coreml', 'coremltools')})")
    spec = ((manifest.get("export") or {}).get("coreml") or {}).get("specification_version")
    need, have = MACOS_FOR_SPEC.get(spec), platform.mac_ver()[0]
    if need and have and int(have.split(".")[0]) < need:
        raise NotRunnable(f"this Core ML program (specification version {spec}) needs macOS {need} or newer; "
                          f"this is macOS {have}")


BACKENDS: dict[str, Callable[[Path, dict, Options], Backend]] = {
    "onnx": load_onnx,
    "openvino": load_openvino,
    "tensorrt": load_tensorrt,
    "coreml": load_coreml,
}


def load_backend(folder: Path, manifest: dict, opt: Options) -> Backend:
    target = manifest["target"]
    if target not in BACKENDS:
        raise NotRunnable(f"edge_bench.py has no runner for target {target!r}; it runs {', '.join(BACKENDS)}")
    return BACKENDS[target](Path(folder), manifest, opt)


# ---- inference for applications -----------------------------------------------------------------

def image_files(paths) -> list:
    """Image files from files and folders (a folder: every image below it, sorted)."""
    files = []
    for p in map(Path, paths):
        if p.is_dir():
            found = sorted(f for f in p.rglob("*") if f.suffix.lower() in IMAGE_SUFFIXES and not f.name.startswith("."))
            if not found:
                raise BenchError(f"folder {p} has no images ({'/'.join(s[1:] for s in IMAGE_SUFFIXES)})")
            files += found
        elif p.is_file():
            files.append(p)
        else:
            raise BenchError(f"image not found: {p}")
    return files


def ranked(logits: np.ndarray, classes, k: int = 5) -> list:
    """Per image, the k best classes by softmax score: [[{"class", "index", "score"}, ...], ...]."""
    if k < 1:
        raise BenchError(f"--top-k must be at least 1, got {k}")
    if logits.shape[1] != len(classes):
        raise BenchError(f"the model gives {logits.shape[1]} scores but its manifest names {len(classes)} classes")
    z = logits.astype(np.float64) - logits.max(axis=1, keepdims=True)
    p = np.exp(z) / np.exp(z).sum(axis=1, keepdims=True)
    order = np.argsort(-p, axis=1, kind="stable")[:, :k]
    return [[{"class": str(classes[i]), "index": int(i), "score": round(float(row[i]), 6)} for i in idx]
            for row, idx in zip(p, order)]


class Predictor:
    """An artifact ready to answer "what is in this image?" with the manifest's preprocessing:

        import edge_bench                       # or: from mixer_edge.runtime import edge_bench
        model = edge_bench.load("artifacts/onnx-int8")
        model.predict(["cat.png"], top_k=3)     # -> [[{"class": "cat", "index": 3, "score": 0.91}, ...]]
    """

    def __init__(self, folder, options: "Options | None" = None):
        self.folder = Path(folder)
        self.manifest = read_manifest(self.folder)
        self.backend = load_backend(self.folder, self.manifest, options or Options())
        self.classes = self.manifest["classes"]
        # Before the first answer: does this device compute what was validated? (on a Mac, the
        # first Core ML prediction is this check)
        self.device_check = device_check(self.folder, self.manifest, self.backend.run, batch_axis(self.manifest))
        if self.device_check["status"] == "failed":
            raise DeviceCheckFailed(self.device_check["reason"])

    def logits(self, images) -> np.ndarray:
        """images: raw uint8 arrays (H, W[, C]) or a list of image file paths; many files are decoded
        and preprocessed a batch at a time (model_inputs), so a large folder is never held."""
        if len(images) and isinstance(images[0], (str, Path)):
            images = ImageFiles(image_files(images))
        x = model_inputs(images, lambda part: preprocess(part, self.manifest["preprocess"]))
        return predict(self.backend.run, x, 32, batch_axis(self.manifest))

    def predict(self, images, top_k: int = 5) -> list:
        return ranked(self.logits(images), self.classes, top_k)


def load(folder, **options) -> Predictor:
    """Load an artifact for prediction (options: threads, precision_hint, provider)."""
    return Predictor(folder, Options(**options))


def predictions_document(names, tops, source: str) -> dict:
    return {"kind": "mixer-edge-predictions", "schema": 1, "model": source,
            "predictions": [{"image": str(n), "top": t} for n, t in zip(names, tops)]}


def format_predictions(doc: dict) -> str:
    return "\n".join(f"{p['image']}: " + ", ".join(f"{t['class']} {t['score']:.3f}" for t in p["top"])
                     for p in doc["predictions"])


# ---- the golden set: does this device compute what was validated? ------------------------------

GOLDEN = "golden.npz"
GOLDEN_N = 32
# The check: logit SQNR against FP32 PyTorch on the golden images of at least
# min(floor, SQNR the artifact reached at export - margin). The floor is what any correct artifact
# of the precision reaches (fp32: arithmetic order only; fp16: half rounding; int8: quantization);
# the margin allows another runtime's kernels (TensorRT on a GPU, Core ML on the Neural Engine).
GOLDEN_FLOOR_DB = {"fp32": 60.0, "fp16": 35.0, "int8": 20.0}
GOLDEN_MARGIN_DB = 6.0


def golden_threshold(precision: str, built_sqnr_db: float | None) -> float:
    floor = GOLDEN_FLOOR_DB[precision]
    return floor if built_sqnr_db is None else min(floor, built_sqnr_db - GOLDEN_MARGIN_DB)


def sqnr_db(reference: np.ndarray, logits: np.ndarray) -> float:
    ref, out = reference.astype(np.float64), logits.astype(np.float64)
    if not np.all(np.isfinite(out)):
        return float("-inf")
    return float(10 * np.log10(max((ref ** 2).sum(), 1e-30) / max(((out - ref) ** 2).sum(), 1e-30)))


def device_check(folder, manifest: dict, run, fixed_batch: int | None = None) -> dict:
    """Run the golden images (raw, through this script's preprocessing, when the export had them)
    and compare with the FP32 PyTorch logits recorded at export: {"status": passed | failed |
    skipped, figures, threshold}. The golden file is one of the manifest's hashed files."""
    section = manifest.get("golden")
    if not isinstance(section, dict):
        return {"status": "skipped", "reason": "the artifact has no golden set (exported before mixer-edge 0.2)"}
    with np.load(listed(folder, manifest, section["file"]), allow_pickle=False) as z:
        g = {k: z[k] for k in z.files}
    x = preprocess(g["raw"], manifest["preprocess"]) if "raw" in g else g["x"]
    logits = predict(run, x, GOLDEN_N, fixed_batch)
    figures = {"n": int(len(x)), "input": "raw images" if "raw" in g else "preprocessed tensors",
               "sqnr_db": round(sqnr_db(g["reference"], logits), 2),
               "top1_agreement": round(float((logits.argmax(1) == g["reference"].argmax(1)).mean()), 4),
               "threshold_sqnr_db": section["threshold_sqnr_db"]}
    if "artifact" in g:
        figures["sqnr_db_vs_export"] = round(sqnr_db(g["artifact"], logits), 2)
    ok = figures["sqnr_db"] >= section["threshold_sqnr_db"]
    return {"status": "passed" if ok else "failed", **figures,
            **({} if ok else {"reason": f"logit SQNR {figures['sqnr_db']} dB against FP32 PyTorch on the "
                                        f"{len(x)} golden images is below {section['threshold_sqnr_db']} dB: this "
                                        f"device does not compute what was validated at export"})}


# ---- evaluation data ----------------------------------------------------------------------------

class Data(NamedTuple):
    images: object                  # uint8 (N, H, W, C), or a list of (H, W, C) when sizes differ
    labels: np.ndarray | None       # int64 (N,) or None (unlabeled)
    classes: tuple | None           # class names when the source knows them
    spec: str


IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp")
DATA_HELP = ("mnist:DIR (IDX files, gzipped or not), imagefolder:DIR (one sub-folder of images per "
             "class), folder:DIR (unlabeled images), DIR (either, guessed), FILE.npz (uint8 'images' "
             "(N,H,W[,C]) and 'labels')")


def read_data(spec: str) -> Data:
    name, sep, arg = spec.partition(":")
    if spec == "digits":
        return read_digits()
    readers = {"mnist": read_mnist, "cifar10": read_cifar10, "imagefolder": read_imagefolder, "folder": read_folder}
    if sep and name in readers:
        root = Path(arg).expanduser()
        if not root.is_dir():
            raise BenchError(f"data folder {'is a file' if root.exists() else 'not found'}: {arg} (from spec {spec!r})")
        return readers[name](root)._replace(spec=spec)
    p = Path(spec).expanduser()
    if p.suffix == ".npz" and p.is_file():
        return read_npz(p)._replace(spec=spec)
    if p.is_dir():
        has_images = bool(_images_in(p))
        has_classes = any(_images_in(d) for d in _class_dirs(p))
        if has_images != has_classes:
            return (read_imagefolder(p) if has_classes else read_folder(p))._replace(spec=spec)
        raise BenchError(f"cannot tell what folder {p} holds; say imagefolder:{p} or folder:{p}")
    raise BenchError(f"cannot read data {spec!r}; accepted: {DATA_HELP}")


def read_npz(path: Path) -> Data:
    try:
        return _read_npz(path)
    except (ValueError, OSError, EOFError, zipfile.BadZipFile) as e:   # not an .npz, truncated, pickled
        raise BenchError(f"cannot read {path} as an .npz of uint8 'images' and 'labels': {e}") from None


def _read_npz(path: Path) -> Data:
    with np.load(path, allow_pickle=False) as z:
        if "images" not in z.files:
            raise BenchError(f"{path} has no 'images' array (found {', '.join(z.files)}); expected raw "
                             f"uint8 'images' (N,H,W[,C]) and 'labels' (a calibration .npz holds "
                             f"preprocessed tensors, not images)")
        images = z["images"]
        labels = z["labels"].astype(np.int64) if "labels" in z.files else None
        classes = tuple(str(c) for c in z["classes"]) if "classes" in z.files else None
    if images.dtype != np.uint8 or images.ndim not in (3, 4):
        raise BenchError(f"{path}: 'images' is {images.dtype} {images.shape}; expected uint8 (N,H,W[,C])")
    if labels is not None and labels.shape != (len(images),):
        raise BenchError(f"{path}: {len(images)} images but 'labels' of shape {labels.shape}")
    return Data(images if images.ndim == 4 else images[..., None], labels, classes, str(path))


# ---- digits, mnist, cifar10 (the readers mixer_edge's data sources wrap) -------------------------

DIGIT_CLASSES = tuple(str(d) for d in range(10))
CIFAR10_CLASSES = ("airplane", "automobile", "bird", "cat", "deer",
                   "dog", "frog", "horse", "ship", "truck")


def read_digits(_root=None) -> Data:
    """digits  scikit-learn's bundled 8x8 handwritten digits, 1,797 images, 10 classes."""
    try:
        from sklearn.datasets import load_digits as sk_digits  # heavy import, only when asked for
    except ImportError:
        raise BenchError("the digits data set comes with scikit-learn: pip install scikit-learn") from None
    d = sk_digits()
    # Pixels are counts 0..16 (an 8x8 grid of 4x4 blocks); scale to the 0..255 every source uses.
    images = np.rint(d.images * (255.0 / 16.0)).astype(np.uint8)[..., None]  # (N, 8, 8, 1)
    return Data(images, d.target.astype(np.int64), DIGIT_CLASSES, "digits")


# ---- mnist --------------------------------------------------------------------------------------

IDX_IMAGES = re.compile(r"^(?P<stem>.+)-images[-.]idx3-ubyte(\.gz)?$")
IDX_MAGIC = {"images": 2051, "labels": 2049}  # 0x0803 / 0x0801: uint8 data, 3 or 1 dimensions


def read_mnist(root: Path) -> Data:
    """mnist:DIR  MNIST-style IDX files (*-images-idx3-ubyte[.gz] + *-labels-idx1-ubyte[.gz])."""
    pairs = _idx_pairs(root)
    images, labels = zip(*(_read_idx_pair(img, lab) for img, lab in pairs))
    if len({im.shape[1:] for im in images}) > 1:
        raise BenchError(f"IDX image files in {root} differ in image size: "
                       + ", ".join(f"{p[0].name} {im.shape[1:3]}" for p, im in zip(pairs, images)))
    return Data(np.concatenate(images), np.concatenate(labels), DIGIT_CLASSES, f"mnist:{root}")


def _idx_pairs(root: Path) -> list[tuple[Path, Path]]:
    """Every images file with its labels file, train-* before t10k-* as in the original release."""
    stems = {}
    for p in sorted(root.iterdir()):
        m = IDX_IMAGES.match(p.name)
        if m and p.is_file():
            stems.setdefault(m["stem"], p)  # sorted: the plain file wins over its .gz twin
    if not stems:
        raise BenchError(f"no MNIST files in {root}; expected *-images-idx3-ubyte[.gz] "
                       f"with matching *-labels-idx1-ubyte[.gz]")
    order = sorted(stems, key=lambda s: (not s.startswith("train"), not s.startswith("t10k"), s))
    return [(stems[s], _labels_for(root, s, stems[s])) for s in order]


def _labels_for(root: Path, stem: str, images: Path) -> Path:
    for name in (f"{stem}-labels-idx1-ubyte", f"{stem}-labels.idx1-ubyte"):
        for p in (root / name, root / f"{name}.gz"):
            if p.is_file():
                return p
    raise BenchError(f"{images} has no labels file; expected {root / stem}-labels-idx1-ubyte[.gz]")


def _read_idx_pair(images_path: Path, labels_path: Path) -> tuple[np.ndarray, np.ndarray]:
    images = _read_idx(images_path, "images")
    labels = _read_idx(labels_path, "labels")
    if len(images) != len(labels):
        raise BenchError(f"{images_path} holds {len(images)} images but {labels_path} "
                       f"holds {len(labels)} labels; expected the same count")
    if labels.size and labels.max() > 9:
        raise BenchError(f"{labels_path} has label {labels.max()}; expected digits 0-9")
    return images[..., None], labels.astype(np.int64)  # (N, H, W, 1), (N,)


def _read_idx(path: Path, kind: str) -> np.ndarray:
    raw = _read_maybe_gzip(path)
    ndim = 3 if kind == "images" else 1
    head = 4 * (1 + ndim)
    if len(raw) < head:
        raise BenchError(f"{path} is truncated: {len(raw)} bytes, expected an IDX {kind} header of {head}")
    magic, *dims = np.frombuffer(raw, ">u4", count=1 + ndim).tolist()
    if magic != IDX_MAGIC[kind]:
        raise BenchError(f"{path} is not an IDX {kind} file: magic {magic}, expected {IDX_MAGIC[kind]}")
    want = head + int(np.prod(dims))
    if len(raw) != want:
        problem = "truncated" if len(raw) < want else "too long"
        raise BenchError(f"{path} is {problem}: {len(raw)} bytes, expected {want} for {kind} of shape {tuple(dims)}")
    return np.frombuffer(raw, np.uint8, offset=head).reshape(dims)


def _read_maybe_gzip(path: Path) -> bytes:
    """By content, not by name: renamed and re-compressed copies are common."""
    raw = path.read_bytes()
    if raw[:2] != b"\x1f\x8b":
        return raw
    try:
        return gzip.decompress(raw)
    except (OSError, EOFError, zlib.error) as e:
        raise BenchError(f"cannot read {path}: broken gzip data ({e})") from None


# ---- cifar10 ------------------------------------------------------------------------------------

CIFAR_RECORD = 1 + 3 * 32 * 32  # label byte, then the image as 3 planes of 32x32 (R, G, B)


def read_cifar10(root: Path) -> Data:
    """cifar10:DIR  CIFAR-10, binary or python version, in DIR or its cifar-10-batches-* folder."""
    folder, read, batches = _find_cifar(root)
    parts = [read(p) for p in batches]
    images = np.concatenate([im for im, _ in parts])
    labels = np.concatenate([lab for _, lab in parts])
    return Data(images, labels, _cifar_classes(folder, labels), f"cifar10:{root}")


def _find_cifar(root: Path):
    """(folder, reader, batch files) of the first layout found."""
    for folder in (root, root / "cifar-10-batches-bin", root / "cifar-10-batches-py"):
        # The binary version first: it needs no unpickling at all.
        for suffix, read in ((".bin", _cifar_bin), ("", _cifar_py)):
            batches = _batches(folder, suffix)
            if batches:
                return folder, read, batches
    raise BenchError(f"no CIFAR-10 batches in {root}; expected data_batch_*.bin / test_batch.bin "
                   f"or data_batch_* / test_batch, here or in cifar-10-batches-bin/ or cifar-10-batches-py/")


def _batches(folder: Path, suffix: str) -> list[Path]:
    """data_batch_1..5 in number order, then test_batch, as the original release orders them."""
    if not folder.is_dir():
        return []
    pattern = re.compile(r"^(data_batch_(\d+)|test_batch)" + re.escape(suffix) + "$")
    found = [(m, p) for p in folder.iterdir() if p.is_file() and (m := pattern.match(p.name))]
    found.sort(key=lambda mp: (mp[0][2] is None, int(mp[0][2] or 0)))
    return [p for _, p in found]


def _cifar_bin(path: Path) -> tuple[np.ndarray, np.ndarray]:
    raw = np.fromfile(path, np.uint8)
    if raw.size == 0 or raw.size % CIFAR_RECORD:
        raise BenchError(f"{path} is {raw.size} bytes; expected a whole number of "
                       f"{CIFAR_RECORD}-byte CIFAR-10 records (1 label + 3x32x32 pixels)")
    records = raw.reshape(-1, CIFAR_RECORD)
    images = records[:, 1:].reshape(-1, 3, 32, 32).transpose(0, 2, 3, 1)  # (N, 32, 32, 3)
    return np.ascontiguousarray(images), records[:, 0].astype(np.int64)


def _cifar_py(path: Path) -> tuple[np.ndarray, np.ndarray]:
    batch = _unpickle(path)
    data, labels = _key(batch, "data", path), _key(batch, "labels", path)
    data = np.asarray(data)
    if data.dtype != np.uint8 or data.ndim != 2 or data.shape[1] != 3072:
        raise BenchError(f"{path}: 'data' is {data.dtype} {data.shape}; expected uint8 (N, 3072)")
    try:
        labels = np.asarray(labels, dtype=np.int64)
    except (TypeError, ValueError) as e:
        raise BenchError(f"{path}: labels are not integers ({e})") from None
    if labels.shape != (len(data),):
        raise BenchError(f"{path}: {len(data)} images but labels of shape {labels.shape}; expected ({len(data)},)")
    images = data.reshape(-1, 3, 32, 32).transpose(0, 2, 3, 1)  # (N, 32, 32, 3)
    return np.ascontiguousarray(images), labels


def _key(d, key: str, path: Path):
    """The batches were written by Python 2, so keys are bytes; accept re-pickled str keys too."""
    if isinstance(d, dict):
        for k in (key.encode(), key):
            if k in d:
                return d[k]
    raise BenchError(f"{path} has no {key!r} entry; expected a dict as the CIFAR-10 python version has")


def _cifar_classes(folder: Path, labels: np.ndarray) -> tuple[str, ...]:
    classes = CIFAR10_CLASSES
    if (folder / "batches.meta.txt").is_file():
        lines = (folder / "batches.meta.txt").read_text(encoding="utf-8", errors="replace").splitlines()
        classes = tuple(s.strip() for s in lines if s.strip())
    elif (folder / "batches.meta").is_file():
        names = _key(_unpickle(folder / "batches.meta"), "label_names", folder / "batches.meta")
        classes = tuple(n.decode() if isinstance(n, bytes) else str(n) for n in names)
    if labels.size and labels.max() >= len(classes):
        raise BenchError(f"CIFAR-10 label {labels.max()} in {folder} but only {len(classes)} class names")
    return classes


# ---- restricted unpickling ----------------------------------------------------------------------

def _latin1_bytes(text: str, encoding: str = "latin1") -> bytes:
    """Protocol-2 pickles spell bytes as _codecs.encode(text, 'latin1'); allow exactly that."""
    if encoding.lower().replace("-", "") != "latin1":
        raise pickle.UnpicklingError(f"refusing _codecs.encode with encoding {encoding!r}")
    return text.encode("latin1")


# Resolved from live objects, so the allow-list works on numpy 1 (numpy.core) and 2 (numpy._core)
# without importing the numpy.core shim that numpy 2 deprecates.
_RECONSTRUCT = np.empty(0).__reduce__()[0]
_SCALAR = np.int64(0).__reduce__()[0]
_FROMBUFFER = np.empty(1).__reduce_ex__(5)[0]  # protocol 5 writes arrays as _frombuffer(bytes, ...)
PICKLE_ALLOWED = {
    **{(m, "_reconstruct"): _RECONSTRUCT for m in ("numpy.core.multiarray", "numpy._core.multiarray")},
    **{(m, "scalar"): _SCALAR for m in ("numpy.core.multiarray", "numpy._core.multiarray")},
    **{(m, "_frombuffer"): _FROMBUFFER for m in ("numpy.core.numeric", "numpy._core.numeric")},
    ("numpy", "ndarray"): np.ndarray,
    ("numpy", "dtype"): np.dtype,
    ("_codecs", "encode"): _latin1_bytes,
    **{("builtins", t.__name__): t for t in (list, dict, tuple, str, bytes, bytearray, int, float)},
}


class _DataOnlyUnpickler(pickle.Unpickler):
    """Unpickles numpy arrays and plain containers only. A pickle can name any callable and
    have it run while loading; a downloaded batch file is untrusted input."""

    def __init__(self, file, path: Path):
        super().__init__(file, encoding="bytes")  # Python 2 str -> bytes, as CIFAR's own loader does
        self.path = path

    def find_class(self, module: str, name: str):
        if (module, name) in PICKLE_ALLOWED:
            return PICKLE_ALLOWED[(module, name)]
        raise BenchError(f"refusing to unpickle {module}.{name} from {self.path}; "
                       f"only numpy arrays and plain lists, dicts, strings and bytes are accepted")


def _unpickle(path: Path):
    with open(path, "rb") as f:
        try:
            return _DataOnlyUnpickler(f, path).load()
        except BenchError:
            raise
        except Exception as e:  # a corrupt pickle can fail in many ways; all mean "not a batch"
            raise BenchError(f"cannot read {path}: {type(e).__name__}: {e}") from None



def _visible(folder: Path) -> list:
    return sorted(p for p in folder.iterdir() if not p.name.startswith("."))


def _class_dirs(root: Path) -> list:
    return [p for p in _visible(root) if p.is_dir()]


def _images_in(folder: Path) -> list:
    return [p for p in _visible(folder) if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file()]


def imagefolder_files(root: Path) -> tuple:
    """(files, labels int64 (N,), classes) of imagefolder:DIR, nothing decoded yet: one sub-folder of
    images per class; sorted folder names are the classes, files sorted within each."""
    dirs = _class_dirs(root)
    if not dirs:
        raise BenchError(f"no class sub-folders in {root}; imagefolder:DIR wants one folder per class "
                         f"(use folder:DIR for unlabeled images)")
    files, labels = [], []
    for index, d in enumerate(dirs):
        found = _images_in(d)
        if not found:
            raise BenchError(f"class folder {d} has no images (png/jpg/jpeg/bmp)")
        files += found
        labels += [index] * len(found)
    return files, np.array(labels, np.int64), tuple(d.name for d in dirs)


def folder_files(root: Path) -> list:
    """The sorted image files of folder:DIR (unlabeled), nothing decoded yet."""
    files = _images_in(root)
    if not files:
        raise BenchError(f"folder {root} has no images (png/jpg/jpeg/bmp)")
    return files


def read_imagefolder(root: Path) -> Data:
    """imagefolder:DIR: one sub-folder of images per class, decoded now or streamed (decoded_or_streamed)."""
    files, labels, classes = imagefolder_files(root)
    return Data(decoded_or_streamed(ImageFiles(files)), labels, classes, f"imagefolder:{root}")


def read_folder(root: Path) -> Data:
    """folder:DIR: unlabeled images (calibration, prediction), decoded now or streamed."""
    return Data(decoded_or_streamed(ImageFiles(folder_files(root))), None, None, f"folder:{root}")


GRAY_MODES = {"1", "L", "LA", "I", "I;16", "I;16L", "I;16B", "I;16N", "F"}


def _read_images(files: list, wrap=None):
    """Stacked (N, H, W, C) uint8 when every image has one shape, else a list of (H, W, C) arrays."""
    images = [read_image(p) for p in (wrap(files) if wrap else files)]
    return np.stack(images) if len({im.shape for im in images}) == 1 else images


def read_image(path) -> np.ndarray:
    """(H, W, 1) uint8 for grayscale files, (H, W, 3) for everything else; alpha dropped; 16-bit
    scaled to 8; Pillow's decompression-bomb limit enforced (a huge image is refused, not decoded)."""
    Image = _pil()

    try:
        with Image.open(path) as img:
            img.load()  # decode now, so a corrupt file fails here with its name
            if img.mode not in GRAY_MODES:
                return np.asarray(img.convert("RGB"))
            if img.mode.startswith("I"):  # 16-bit PNGs: scale 0..65535 to 0..255 (convert("L") would clip)
                wide = np.asarray(img, dtype=np.float64)
                return np.rint(np.clip(wide, 0, 65535) / 257.0).astype(np.uint8)[..., None]
            return np.asarray(img.convert("L"))[..., None]  # "1" -> 0/255, "LA" drops alpha, "F" clips
    except (OSError, SyntaxError, ValueError, Image.DecompressionBombError) as e:
        raise BenchError(f"cannot read image {path}: {e}") from None


# ---- streaming: folders too large to hold, decoded and preprocessed a batch at a time ------------
# An image folder is decoded into memory when that is small (each file decoded once, not once per
# epoch or per artifact) and streamed otherwise. The host's training, evaluation, calibration and
# benchmark use these same classes (docs/data.md, Streaming).

# Above this decoded size (MiB) an image folder is streamed, and above this float32 size a benchmark's
# or a validation's model input is made a batch at a time. 256 MiB keeps every small set in memory
# (MNIST's 70,000 digits as PNGs: 55 MB; CIFAR-10's 60,000: 184 MB) and streams what grows with the
# data: 2,000 RGB images at 224 px are already 287 MiB, ImageNet's 1.28 million are 180 GiB.
STREAM_ABOVE_MB = 256
STREAM_ENV = "MIXER_EDGE_STREAM_ABOVE_MB"   # overrides STREAM_ABOVE_MB (torchrun children, tests)


def stream_above_mb() -> float:
    """STREAM_ABOVE_MB, or MIXER_EDGE_STREAM_ABOVE_MB when set (the one place it is read)."""
    text = os.environ.get(STREAM_ENV)
    if text is None:
        return STREAM_ABOVE_MB
    try:
        value = float(text)
    except ValueError:
        value = float("nan")
    if not value >= 0:
        raise BenchError(f"{STREAM_ENV}={text!r} is not a size; accepted: megabytes >= 0 of decoded images "
                         f"(or of model input) above which an image folder is streamed (or the input made a "
                         f"batch at a time); default {STREAM_ABOVE_MB}, 0 streams everything")
    return value


class ImageFiles:
    """Image files decoded on access, a sequence like the decoded array it stands for: len, x[i] is
    uint8 (H, W, C) by read_image, x[index_array] and x[a:b] are lazy subsets, iteration decodes one
    image at a time. Nothing holds more than one decoded image. `error`: what a bad file or index
    raises (the host's subclass raises its own BadInput)."""
    error = BenchError

    def __init__(self, paths):
        self.paths = tuple(str(p) for p in paths)

    def __len__(self) -> int:
        return len(self.paths)

    def __repr__(self) -> str:
        return f"{type(self).__name__}({len(self)} files)"

    def __getitem__(self, index):
        if isinstance(index, (int, np.integer)):
            return self._decode(self.paths[index])
        if isinstance(index, slice):
            return type(self)(self.paths[index])
        idx = np.asarray(index)
        if idx.dtype == bool and idx.shape == (len(self),):
            idx = np.flatnonzero(idx)
        if idx.ndim != 1 or not (idx.dtype.kind in "iu" or idx.size == 0):
            raise self.error(f"image files are indexed by an int, a slice or a 1-d index array, got "
                             f"{type(index).__name__} {getattr(idx, 'dtype', '')} {getattr(idx, 'shape', '')}")
        return type(self)([self.paths[i] for i in idx.astype(np.int64)])

    def __iter__(self):
        return (self._decode(p) for p in self.paths)

    def _decode(self, path: str) -> np.ndarray:
        try:
            return read_image(path)   # looked up each call, so a test can count decodes
        except BenchError as e:
            raise self.error(str(e)) from None


def streams(files: ImageFiles) -> bool:
    """Whether a folder is too large to decode into memory: the first image's decoded size times the
    file count (the images of a folder are usually of one size) above stream_above_mb()."""
    estimate = files[0].nbytes * len(files)   # bytes, one image decoded to find out
    return estimate > stream_above_mb() * 2 ** 20


def decoded_or_streamed(files: ImageFiles, wrap=None):
    """Every image decoded now when the folder fits (streams), else the files, decoded when used.
    wrap: an optional iterator wrapper over the files being decoded (the host's progress bar)."""
    return files if streams(files) else _read_images(files.paths, wrap)


class Batches:
    """Raw images seen as their model input, made a slice at a time: x[i:j] -> prepare(images[i:j]),
    (j - i, C, H, W) float32. What the benchmark and validation run on when holding it would not fit."""

    def __init__(self, images, prepare: Callable):
        self.images, self.prepare = images, prepare

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, part: slice) -> np.ndarray:
        if not isinstance(part, slice):
            raise BenchError(f"model inputs are taken by slices (a batch), got {type(part).__name__}")
        return self.prepare(self.images[part])


def model_inputs(images, prepare: Callable):
    """The model input of raw images: (N, C, H, W) float32 held, made once for every run over it, up
    to stream_above_mb(); above it Batches, made a batch at a time each time (20,000 images at 224
    px are 12 GB of float32). The size is estimated from the first image's input."""
    lazy = Batches(images, prepare)
    mb = lazy[0:1].nbytes * len(lazy) / 2 ** 20 if len(lazy) else 0.0
    return lazy if mb > stream_above_mb() else lazy[0:len(lazy)]


# ---- labels: the data's classes mapped to the model's ------------------------------------------

def label_map(model_classes, data_classes, model_named: bool = True, labels=None):
    """(index array data label -> model output, how) or (None, why top-1 cannot be computed).
    Names decide where both sides have them: image-folder labels follow sorted folder names, which
    need not be the model's order. A model whose classes are bare indices (foreign weights without
    names) takes labels by index only when the class counts agree."""
    model_classes = [str(c) for c in model_classes]
    if data_classes is None:  # labels without names (.npz): they must be model indices
        if labels is not None and len(labels) and (labels.min() < 0 or labels.max() >= len(model_classes)):
            return None, (f"labels run {int(labels.min())}..{int(labels.max())} but the model has "
                          f"{len(model_classes)} outputs")
        return np.arange(len(model_classes)), "by index (the data has no class names)"
    data_classes = [str(c) for c in data_classes]
    if model_named:
        where = {c: i for i, c in enumerate(model_classes)}
        if all(c in where for c in data_classes):
            return np.array([where[c] for c in data_classes], np.int64), "by name"
        return None, (f"the data's classes {_names(data_classes)} are not the model's classes "
                      f"{_names(model_classes)}")
    if len(data_classes) == len(model_classes):
        return np.arange(len(model_classes)), "by index (the model's classes carry no names)"
    return None, (f"the data has {len(data_classes)} classes {_names(data_classes)} but the model's "
                  f"{len(model_classes)} outputs carry no names to match them to")


def _names(names, show: int = 12) -> str:
    return "[" + ", ".join(names[:show]) + (f", ... ({len(names)} in all)" if len(names) > show else "") + "]"


def model_labels(manifest: dict, data: "Data") -> tuple:
    """(labels as model outputs, or None, and a note): top-1 only where the labels are the model's."""
    if data.labels is None:
        return None, "unlabeled data"
    mapping, how = label_map(manifest["classes"], data.classes or None, manifest.get("classes_named", True),
                             data.labels)
    return (None, how) if mapping is None else (mapping[data.labels], how)


# ---- image identity: content keys, fingerprints, splits --------------------------------------
# An image is known by its pixels, not by the path or spec it came through: the same digit read from
# mnist:data/mnist, mnist:/data/mnist, a copied folder of PNGs or a saved .npz has one key, so the
# split and the images held out from evaluation are the same everywhere (docs/data.md).

SPLIT_DEFAULT = {"seed": 0, "train": 0.8, "calib": 0.1, "eval": 0.1}
KEY_BYTES = 8


def image_keys(images) -> np.ndarray:
    """(N,) uint64: BLAKE2b of each (H, W, C) uint8 image's shape and pixels, 8 bytes."""
    keys = np.empty(len(images), np.uint64)
    for i, im in enumerate(images):
        h = hashlib.blake2b(np.asarray(im.shape, "<i8").tobytes(), digest_size=KEY_BYTES)
        h.update(np.ascontiguousarray(im, np.uint8).tobytes())
        keys[i] = int.from_bytes(h.digest(), "little")
    return keys


def fingerprint(keys) -> str:
    """Content fingerprint of an image set: order-free (sorted keys), 16 hex digits."""
    return hashlib.sha256(np.sort(np.asarray(keys, np.uint64)).astype("<u8").tobytes()).hexdigest()[:16]


def pack_keys(keys) -> str:
    """Sorted unique keys as base64 text, for manifests and checkpoint metadata."""
    import base64

    return base64.b64encode(np.unique(np.asarray(keys, np.uint64)).astype("<u8").tobytes()).decode("ascii")


def unpack_keys(text: str, where: str) -> np.ndarray:
    import base64
    import binascii

    try:
        raw = base64.b64decode(text.encode("ascii"), validate=True)
    except (binascii.Error, ValueError, AttributeError) as e:
        raise BenchError(f"{where}: image keys are not base64 ({e})") from None
    if len(raw) % KEY_BYTES:
        raise BenchError(f"{where}: image keys hold {len(raw)} bytes, not a multiple of {KEY_BYTES}")
    return np.frombuffer(raw, "<u8").astype(np.uint64)


def _mixed(keys: np.ndarray, seed: int) -> np.ndarray:
    """splitmix64 of key ^ seed: a seeded shuffle order that depends on each image alone."""
    with np.errstate(over="ignore"):
        z = keys ^ np.uint64((int(seed) * 0x9E3779B97F4A7C15) % 2 ** 64)
        z = (z ^ (z >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
        z = (z ^ (z >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
        return z ^ (z >> np.uint64(31))


def split_indices(labels, keys, split: dict = SPLIT_DEFAULT) -> dict:
    """Positions of the 'train', 'calib', 'eval' images, sorted. Each class is ordered by its images'
    seeded content hashes, the classes interleaved by rank so any cut is stratified, and the whole
    set cut by rounded cumulative counts (10,000 -> exactly 8,000 / 1,000 / 1,000). Depends on the
    images, labels and seed alone: a reordered, copied or re-encoded set splits the same."""
    keys = np.asarray(keys, np.uint64)
    n = len(keys)
    prio = _mixed(keys, split["seed"])
    groups = [np.arange(n)] if labels is None else [np.flatnonzero(labels == c) for c in np.unique(labels)]
    order = np.concatenate([g[np.lexsort((keys[g], prio[g]))] for g in groups]) if n else np.arange(0)
    ranks = np.concatenate([np.arange(len(g)) / max(len(g), 1) for g in groups]) if n else np.zeros(0)
    order = order[np.argsort(ranks, kind="stable")]
    train, calib = int(round(n * split["train"])), int(round(n * split["calib"]))
    want = {"train": train, "calib": calib, "eval": n - train - calib}
    out, start = {}, 0
    for s in ("train", "calib", "eval"):
        out[s] = np.sort(order[start:start + want[s]])
        start += want[s]
    return out


def reserved_keys(manifest: dict) -> np.ndarray:
    """Keys of the images the model was trained on and the artifact was calibrated on."""
    images = manifest.get("images") or {}
    return unpack_keys(images.get("reserved", ""), "manifest.json images.reserved")


SELECTIONS = ("held-out", "all")


def select(data: Data, selection: str, manifest: dict, limit: int | None, keys=None) -> tuple[Data, dict]:
    """held-out: every image of the data that training and calibration did not use (by content).
    all: every image, training and calibration images included (said so in the result).
    keys: the data's image_keys when the caller has them already (one hashing pass per data set)."""
    if selection not in SELECTIONS:
        raise BenchError(f"unknown image selection {selection!r}; accepted: {', '.join(SELECTIONS)}")
    keys = image_keys(data.images) if keys is None else keys
    seen = np.isin(keys, reserved_keys(manifest))
    kept = np.flatnonzero(~seen) if selection == "held-out" else np.arange(len(keys))
    if not len(kept):
        raise BenchError(f"every image of {data.spec!r} was used in training or calibration "
                         f"({len(keys)} images); give other images, or --images all")
    kept = kept[:limit]
    return _subset(data, kept), {
        "spec": data.spec, "data_fingerprint": fingerprint(keys), "selection": selection,
        "fingerprint": fingerprint(keys[kept]), "n": len(kept),
        "reserved_in_data": int(seen.sum()), "reserved_included": int(seen[kept].sum())}


def _subset(data: Data, idx) -> Data:
    # An array, or a lazy ImageFiles (the device script's or the host's), takes the index array as it
    # is (nothing decoded); a list of images of different sizes is picked one by one.
    images = [data.images[i] for i in idx] if isinstance(data.images, (list, tuple)) else data.images[idx]
    return data._replace(images=images, labels=None if data.labels is None else data.labels[idx])


# ---- preprocessing: mixer_edge/data/preprocess.py, step for step ---------------------------------

RESIZE_METHODS = {"bilinear": 2, "nearest": 0, "bicubic": 3}  # name -> PIL.Image resampling code
LUMA = np.array([0.299, 0.587, 0.114], dtype=np.float32)     # ITU-R 601, as PIL's convert("L")


def preprocess(images, spec: dict) -> np.ndarray:
    """Raw uint8 (N, H, W[, C]) or a list of (H, W[, C]) -> (N, C, H, W) float32, per the manifest.
    Channel conversion, PIL resize, / 255, (x - mean) / std: the steps of Preprocess.__call__."""
    size, channels = tuple(spec["size"]), int(spec["channels"])
    method = spec.get("resize", "bilinear")
    if channels not in (1, 3) or method not in RESIZE_METHODS:
        raise BenchError(f"manifest preprocess {spec} is not supported: channels 1 or 3, "
                         f"resize {', '.join(RESIZE_METHODS)}")
    if isinstance(images, np.ndarray) and images.ndim in (3, 4) and tuple(images.shape[1:3]) == size:
        batch = _to_channels(images if images.ndim == 4 else images[..., None], channels).astype(np.float32)
    elif len(images):
        batch = np.stack([_one(img, size, channels, method) for img in images])
    else:
        batch = np.zeros((0, *size, channels), np.float32)
    mean, std = np.asarray(spec["mean"], np.float32), np.asarray(spec["std"], np.float32)
    x = (batch / np.float32(255.0) - mean) / std
    return np.ascontiguousarray(x.transpose(0, 3, 1, 2), dtype=np.float32)  # (N, C, H, W)


def fit_image(img, spec: dict) -> np.ndarray:
    """One raw image at the manifest's channels and size, still uint8 (H, W, C): preprocessing's
    first steps (training augments here, then normalizes as inference does)."""
    return _fitted(img, tuple(spec["size"]), int(spec["channels"]), spec.get("resize", "bilinear"))


def _one(img, size, channels: int, method: str) -> np.ndarray:
    return _fitted(img, size, channels, method).astype(np.float32)


def _fitted(img, size, channels: int, method: str) -> np.ndarray:
    img = np.asarray(img)
    if img.dtype != np.uint8:
        raise BenchError(f"raw images must be uint8, got dtype {img.dtype}")
    if img.ndim == 2:
        img = img[..., None]
    if img.ndim != 3:
        raise BenchError(f"an image must be (H, W) or (H, W, C), got shape {img.shape}")
    img = _to_channels(img[None], channels)[0]
    if img.shape[:2] != size:
        img = _resize(img, size, method)
    return img


def _to_channels(batch: np.ndarray, channels: int) -> np.ndarray:
    have = batch.shape[-1]
    if have == channels:
        return batch
    if have == 1 and channels == 3:
        return np.repeat(batch, 3, axis=-1)
    if have == 3 and channels == 1:
        luma = batch.astype(np.float32) @ LUMA
        return np.clip(np.rint(luma), 0, 255).astype(np.uint8)[..., None]
    raise BenchError(f"images with {have} channels cannot be converted to the model's {channels}; "
                     f"accepted: 1 (grayscale) or 3 (RGB)")


def _resize(img: np.ndarray, size, method: str) -> np.ndarray:
    Image = _pil()

    h, w = size
    if img.shape[-1] == 1:
        return np.asarray(Image.fromarray(img[..., 0]).resize((w, h), RESIZE_METHODS[method]))[..., None]
    return np.asarray(Image.fromarray(img).resize((w, h), RESIZE_METHODS[method]))


# ---- timing -------------------------------------------------------------------------------------

class Timing(NamedTuple):
    samples_ms: list      # one per timed call
    first_ms: float       # the very first call, before warm-up (includes lazy initialisation)
    after_first: object = None  # what the after_first hook returned (read right after the first call)


def time_calls(fn: Callable[[], object], warmup: int, iters: int | None = None, duration: float | None = None,
               clock: Callable[[], float] = time.perf_counter, min_calls: int = 1, min_seconds: float = 0.0,
               after_first: Callable[[], object] | None = None) -> Timing:
    """Call fn once (timed as the first inference; then after_first(), untimed), `warmup` more
    times untimed, then timed calls until there are `iters` of them, or `duration` seconds of them,
    and in either case at least `min_calls` calls and `min_seconds` seconds: a median needs enough
    calls, and a fast model's few calls would all fall in one burst of a shared machine's noise.
    Ctrl-C inside fn propagates: nothing is returned, so nothing is written."""
    if (iters is None) == (duration is None):
        raise ValueError("give exactly one of iters or duration")
    if warmup < 0 or (iters is not None and iters < 1) or (duration is not None and duration <= 0) \
            or min_calls < 1 or min_seconds < 0:
        raise ValueError(f"need warmup >= 0, iters >= 1 or duration > 0, min_calls >= 1, min_seconds >= 0; "
                         f"got {warmup}, {iters}, {duration}, {min_calls}, {min_seconds}")
    calls, seconds = max(iters or 1, min_calls), max(duration or 0.0, min_seconds)
    t0 = clock()
    fn()
    first_ms = (clock() - t0) * 1e3
    noted = None if after_first is None else after_first()
    for _ in range(warmup):
        fn()
    samples = []
    start = clock()
    while True:
        t0 = clock()
        fn()
        t1 = clock()
        samples.append((t1 - t0) * 1e3)
        if len(samples) >= calls and t1 - start >= seconds:
            return Timing(samples, first_ms, noted)


CI_LEVEL = 0.95


def median_ci(samples, level: float = CI_LEVEL) -> tuple:
    """Distribution-free confidence interval of the median: (x(k), x(n+1-k), coverage), the order
    statistics (1-based, sorted) with the largest k whose coverage 1 - 2 P(B <= k-1),
    B ~ Binomial(n, 1/2), is at least `level`. No resampling, so nothing random: n = 10 gives
    (x(2), x(9), 0.9785), n = 100 gives (x(40), x(61), 0.9648). Under 6 samples no interval reaches
    95%: (min, max) with the coverage it has."""
    xs = sorted(float(s) for s in samples)
    n = len(xs)
    if n == 0:
        raise ValueError("no samples")
    alpha = (1 - level) / 2
    log_p = -n * math.log(2)        # log P(B = 0), in logs: 0.5 ** n underflows past n = 1074
    cdf, k = math.exp(log_p), 1     # cdf = P(B <= k - 1)
    while k < (n + 1) // 2:
        log_p += math.log((n - k + 1) / k)          # P(B = k) from P(B = k - 1)
        if cdf + math.exp(log_p) > alpha:
            break
        cdf, k = cdf + math.exp(log_p), k + 1
    return xs[k - 1], xs[n - k], 1 - 2 * cdf


def latency_stats(samples_ms) -> dict:
    """min, mean, p10, p50, p90, p99, max, std (population) and count of latency samples in ms,
    and the median's confidence interval (median_ci) with its coverage. Percentiles interpolate
    linearly between order statistics (numpy's default method)."""
    xs = sorted(float(s) for s in samples_ms)
    n = len(xs)
    if n == 0:
        raise ValueError("no latency samples")

    def pct(p: float) -> float:
        rank = p / 100 * (n - 1)
        lo = math.floor(rank)
        hi = min(lo + 1, n - 1)
        return xs[lo] + (xs[hi] - xs[lo]) * (rank - lo)

    mean = math.fsum(xs) / n
    std = math.sqrt(math.fsum((x - mean) ** 2 for x in xs) / n)
    lo, hi, coverage = median_ci(xs)
    return {"min": xs[0], "mean": mean, "p10": pct(10), "p50": pct(50), "p90": pct(90), "p99": pct(99),
            "max": xs[-1], "std": std, "count": n, "p50_ci": [lo, hi], "p50_ci_coverage": coverage}


def throughput_stats(batch: int, samples_ms) -> dict:
    """Images per second at one batch size: batch / median call time, with the median's interval
    and the p10-p90 of per-call latency carried over (the slower call gives the lower rate)."""
    s = latency_stats(samples_ms)

    def rate(ms: float):
        return batch * 1e3 / ms if ms > 0 else None

    return {"batch": batch, "images_per_s": rate(s["p50"]),
            "images_per_s_ci": [rate(s["p50_ci"][1]), rate(s["p50_ci"][0])],
            "images_per_s_p10_p90": [rate(s["p90"]), rate(s["p10"])],
            "calls": s["count"], "seconds": math.fsum(samples_ms) / 1e3, "call_ms": s}


@dataclass(frozen=True)
class Settings:
    warmup: int = 10
    iters: int | None = 100
    duration: float | None = None   # seconds per measurement, instead of iters
    batch_sizes: tuple = (1, 8, 32)
    eval_batch: int = 64            # batch used to compute accuracy (dynamic-batch artifacts)
    min_calls: int = 20             # every measurement (latency, each batch size) takes at least these
    min_seconds: float = 0.5        # ... and at least this long: see time_calls

    def __post_init__(self):
        if (self.iters is None) == (self.duration is None):
            raise BenchError("give --iters N or --duration S, not both")
        if self.warmup < 0 or (self.iters is not None and self.iters < 1) or \
                (self.duration is not None and self.duration <= 0):
            raise BenchError(f"need --warmup >= 0, --iters >= 1, --duration > 0; got warmup {self.warmup}, "
                             f"iters {self.iters}, duration {self.duration}")
        if self.min_calls < 1 or self.min_seconds < 0:
            raise BenchError(f"need --min-calls >= 1 and --min-time >= 0; got {self.min_calls}, {self.min_seconds}")
        if not self.batch_sizes or min(self.batch_sizes) < 1:
            raise BenchError(f"--batch-sizes must be positive integers, got {list(self.batch_sizes)}")


def parse_batch_sizes(text: str) -> tuple:
    try:
        sizes = tuple(int(s) for s in text.split(",") if s.strip())
    except ValueError:
        raise BenchError(f"--batch-sizes takes comma-separated integers like 1,8,32, got {text!r}") from None
    if not sizes or min(sizes) < 1:
        raise BenchError(f"--batch-sizes takes positive integers like 1,8,32, got {text!r}")
    return sizes


def _tile(x, n: int) -> np.ndarray:
    """n images: the first n, repeated when there are fewer. x: an array or Batches (sliced only)."""
    head = np.asarray(x[0:min(n, len(x))])
    return np.ascontiguousarray(head[np.arange(n) % len(head)])


def measure_speed(run, x, settings: Settings, fixed_batch: int | None = None,
                  clock=time.perf_counter, memory: "MemoryMark | None" = None) -> dict:
    """First inference, latency at batch 1 (or the fixed batch), throughput per batch size; with
    a memory mark, the model's resident memory read right after the first inference. x: model
    inputs, held or Batches (only the first images are used)."""
    if len(x) == 0:
        raise BenchError("no images to benchmark with")
    lat_batch = fixed_batch or 1
    one = _tile(x, lat_batch)
    floor = dict(min_calls=settings.min_calls, min_seconds=settings.min_seconds)
    timing = time_calls(lambda: run(one), settings.warmup, settings.iters, settings.duration, clock, **floor,
                        after_first=None if memory is None else (lambda: model_rss_mb(memory)))
    throughput = []
    for b in ([fixed_batch] if fixed_batch else settings.batch_sizes):
        xb = _tile(x, b)
        # About as many images per batch size as the latency loop ran, and the same floors.
        iters = None if settings.iters is None else -(-settings.iters // b)
        t = timing if b == lat_batch else time_calls(lambda: run(xb), max(1, -(-settings.warmup // b)),
                                                     iters, settings.duration, clock, **floor)
        throughput.append(throughput_stats(b, t.samples_ms))
    return {"first_inference_ms": timing.first_ms, "latency_batch": lat_batch,
            "latency_ms": latency_stats(timing.samples_ms), "throughput": throughput,
            "batch_dynamic": fixed_batch is None, "model_rss_mb": timing.after_first}


# ---- accuracy -----------------------------------------------------------------------------------

def predict(run, x, batch: int, fixed_batch: int | None = None) -> np.ndarray:
    """Logits for all of x (model inputs, held or Batches); a fixed-batch model gets its batch, the
    last one padded."""
    b = fixed_batch or batch
    out = []
    for i in range(0, len(x), b):
        chunk = x[i:i + b]
        if fixed_batch and len(chunk) < b:
            out.append(np.asarray(run(_tile(np.concatenate([chunk, x[:b]]), b)))[:len(chunk)])
        else:
            out.append(np.asarray(run(chunk)))
    return np.concatenate(out).astype(np.float32)


def topk_accuracy(logits: np.ndarray, labels: np.ndarray, ks=(1, 5)) -> dict:
    """As mixer_edge.train.evaluate.topk_accuracy: label among the k largest logits (k capped at K)."""
    order = np.argsort(-logits, axis=1, kind="stable")
    hits = order == np.asarray(labels)[:, None]
    return {f"top{k}": float(hits[:, :min(k, logits.shape[1])].any(axis=1).mean()) if len(labels) else 0.0
            for k in ks}


def accuracy(logits: np.ndarray, labels) -> dict | None:
    return None if labels is None else {**topk_accuracy(logits, labels), "n": int(len(labels))}


def agreement(reference: np.ndarray, logits: np.ndarray, name: str) -> dict:
    """Top-1 agreement and mean per-image logit cosine against reference logits (N, K)."""
    if reference.shape != logits.shape:
        raise BenchError(f"reference {name} gives logits {reference.shape}, the artifact {logits.shape}")
    ref, out = reference.astype(np.float64), logits.astype(np.float64)
    cos = (ref * out).sum(1) / np.maximum(np.linalg.norm(ref, axis=1) * np.linalg.norm(out, axis=1), 1e-30)
    return {"top1_agreement": float((ref.argmax(1) == out.argmax(1)).mean()), "cosine": float(cos.mean()),
            "max_abs_diff": float(np.abs(out - ref).max()) if ref.size else 0.0, "reference": name}


# ---- memory, device, versions -------------------------------------------------------------------

def _proc_status_mb(key: str) -> float | None:
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith(key + ":"):
                return int(line.split()[1]) / 1024  # kB
    except (OSError, ValueError, IndexError):
        pass
    return None


def reset_peak_rss() -> bool:
    """Linux: reset the high-water mark to the current RSS (clear_refs 5), so a peak read later
    belongs to what ran since. False where that is not possible."""
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
        return True
    except OSError:
        return False


def current_rss_mb() -> float | None:
    return _proc_status_mb("VmRSS")


def peak_rss_mb(since_reset: bool = False) -> float | None:
    """Peak resident memory of this process in MiB: ru_maxrss (Linux KiB, macOS bytes), or
    /proc/self/status VmHWM after reset_peak_rss()."""
    if since_reset:
        return _proc_status_mb("VmHWM")
    try:
        import resource
    except ImportError:  # Windows
        return None
    r = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return r / 2 ** 20 if sys.platform == "darwin" else r / 1024


@dataclass(frozen=True)
class MemoryMark:
    """Resident memory just before a model is loaded; scoped: the high-water mark was reset there."""
    before_mb: float | None
    scoped: bool


def mark_memory() -> MemoryMark:
    """Garbage collected and glibc's free heap handed back first: memory an earlier model freed
    would otherwise be reused by this one without showing in the resident figure."""
    import gc

    gc.collect()
    _trim_heap()
    scoped = reset_peak_rss()
    return MemoryMark(current_rss_mb(), scoped)


def _trim_heap() -> None:
    try:
        import ctypes

        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):  # not glibc (macOS, musl, Windows): nothing to hand back
        pass


def model_rss_mb(mark: MemoryMark) -> float | None:
    """The model's memory: resident memory added since the mark (its high-water mark where it
    could be reset, else the current RSS), read after load and the first inference. The process
    total (a 0.7 MB model in a 650 MB process with torch) says little about the model."""
    now = peak_rss_mb(since_reset=True) if mark.scoped else current_rss_mb()
    return None if now is None or mark.before_mb is None else max(now - mark.before_mb, 0.0)


def process_memory(mark: MemoryMark) -> dict:
    """The whole process's peak RSS, with what it covers, beside the model's own figure."""
    return {"process_peak_rss_mb": peak_rss_mb(since_reset=mark.scoped), "rss_before_load_mb": mark.before_mb,
            "process_peak_rss_scope": "process total, peak since load" if mark.scoped
            else "process total, peak over the process's life"}


RUNTIME_LIBRARY = {"onnx": "onnxruntime", "openvino": "openvino", "tensorrt": "tensorrt"}


def import_runtime(target: str) -> None:
    """Import the target's runtime library before the memory mark: the first model of a runtime
    in a process would otherwise be charged with the library. Core ML is left out: off macOS it
    does not run, and coremltools is slow and noisy to import. A failure is the load's to report."""
    import importlib

    if target in RUNTIME_LIBRARY:
        try:
            importlib.import_module(RUNTIME_LIBRARY[target])
        except ImportError:
            pass


ISA_FLAGS = ("sse4_2", "avx", "avx2", "fma", "f16c", "avx512f", "avx512bw", "avx512vl", "avx512_vnni",
             "avx_vnni", "avx512_bf16", "avx512_fp16", "amx_tile", "amx_bf16", "amx_int8", "amx_fp16",
             "neon", "asimd", "asimdhp", "asimddp", "fphp", "bf16", "i8mm", "sve", "sve2", "sme")


def _cpuinfo() -> dict:
    """Keys of the first processor block of /proc/cpuinfo plus the flags / Features line."""
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return {}
    info = {}
    for line in text.splitlines():
        key, sep, value = line.partition(":")
        if sep:
            info.setdefault(key.strip(), value.strip())
    return info


def _sysctl(name: str) -> str | None:
    try:
        return subprocess.run(["sysctl", "-n", name], capture_output=True, text=True, timeout=5).stdout.strip() or None
    except (OSError, subprocess.SubprocessError):
        return None


def isa_flags(info: dict | None = None) -> list:
    info = _cpuinfo() if info is None else info
    have = set((info.get("flags") or info.get("Features") or "").split())
    if "asimd" in have:
        have.add("neon")  # Linux on AArch64 calls NEON asimd
    if sys.platform == "darwin":
        if platform.machine() == "arm64":
            have.add("neon")
        for flag, key in (("bf16", "hw.optional.arm.FEAT_BF16"), ("i8mm", "hw.optional.arm.FEAT_I8MM"),
                          ("asimddp", "hw.optional.arm.FEAT_DotProd"), ("avx2", "hw.optional.avx2_0"),
                          ("avx512f", "hw.optional.avx512f")):
            if _sysctl(key) == "1":
                have.add(flag)
    return [f for f in ISA_FLAGS if f in have]


def cpu_model(info: dict | None = None) -> str:
    info = _cpuinfo() if info is None else info
    for key in ("model name", "Model", "Hardware", "cpu model"):
        if info.get(key):
            return info[key]
    board = Path("/proc/device-tree/model")
    if board.is_file():
        return board.read_text(errors="replace").strip("\x00 \n")
    if sys.platform == "darwin":
        return _sysctl("machdep.cpu.brand_string") or platform.processor() or "unknown"
    return platform.processor() or platform.machine() or "unknown"


def _gpus() -> list | None:
    if not shutil.which("nvidia-smi"):
        return None
    try:
        out = subprocess.run(["nvidia-smi", "--query-gpu=name,driver_version,memory.total", "--format=csv,noheader"],
                             capture_output=True, text=True, timeout=10).stdout
    except (OSError, subprocess.SubprocessError):
        return None
    return [line.strip() for line in out.splitlines() if line.strip()] or None


def device_info(name: str | None = None) -> dict:
    info = _cpuinfo()
    return {"name": name or platform.node() or "unknown", "hostname": platform.node(), "cpu": cpu_model(info),
            "cores_logical": os.cpu_count(), "cores_usable": _usable_cpus(), "isa": isa_flags(info),
            "machine": platform.machine(), "os": platform.platform(), "gpus": _gpus()}


def base_versions() -> dict:
    v = {"python": platform.python_version(), "numpy": np.__version__, "edge_bench": SCRIPT_VERSION}
    if "PIL" in sys.modules:
        v["pillow"] = getattr(sys.modules["PIL"], "__version__", "?")
    return v


# ---- document shapes: what a manifest and a result hold, checked before anything reads them ---------
# A shape is a check(value, where) -> problems, {key: shape} ("key?": may be absent), [shape] (a
# list of any length) or (shape, ...) (a list of exactly that many). check_document collects every
# problem, then raises one BenchError listing them: what arrived and what is accepted, at each place.

JSON_KINDS = {dict: "an object", list: "a list", str: "a string", bool: "a boolean", int: "an integer",
              float: "a number"}
MAX_SHOWN = 6      # problems listed in the one line; the rest are counted
MAX_SIDE = 4096    # the largest image side or fixed batch a manifest may ask for


def _shown(value) -> str:
    if value is None:
        return "null"
    text = repr(value)
    return f"{JSON_KINDS.get(type(value), type(value).__name__)} {text if len(text) <= 40 else text[:37] + '...'}"


def _leaf(test, expected: str):
    """A shape that holds where test(value) is true; `expected` says what is accepted."""
    def check(value, where: str) -> list:
        try:
            ok = bool(test(value))
        except (TypeError, ValueError, OverflowError):
            ok = False
        return [] if ok else [f"{where} is {_shown(value)}, expected {expected}"]
    return check


def _number(v) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)


def _ints(lo: int, hi: int):
    return _leaf(lambda v: _number(v) and isinstance(v, int) and lo <= v <= hi, f"an integer {lo}..{hi}")


def _one_of(*values):
    return _leaf(lambda v: isinstance(v, (str, int)) and not isinstance(v, bool) and v in values,
                 "one of " + ", ".join(map(str, values)))


def _maybe(shape):
    """shape, or null."""
    return lambda v, where: [] if v is None else shape_problems(v, shape, where)


def _when(test, then, otherwise):
    """An object whose keys depend on one of its own: then where test(value), else otherwise."""
    return lambda v, where: shape_problems(v, then if isinstance(v, dict) and test(v) else otherwise, where)


def _each(shape):
    """An object of any keys, every value of shape (a table such as layer -> milliseconds)."""
    def check(v, where: str) -> list:
        if not isinstance(v, dict):
            return [f"{where} is {_shown(v)}, expected an object"]
        return [p for k, x in v.items() for p in shape_problems(x, shape, f"{where}.{k}")]
    return check


def _expected(shape) -> str:
    if isinstance(shape, dict):
        return "an object with " + ", ".join(k for k in shape if not k.endswith("?"))
    if isinstance(shape, tuple):
        return f"a list of {len(shape)}"
    return "a list of objects with " + _expected(shape[0])[15:] if isinstance(shape[0], dict) else "a list"


def shape_problems(value, shape, where: str = "the document") -> list:
    """Every place where value does not have shape, as "PLACE is WHAT, expected WHAT" lines."""
    if callable(shape):
        return shape(value, where)
    if isinstance(shape, dict) and isinstance(value, dict):
        out = []
        for key, sub in shape.items():
            name = key.rstrip("?")
            at = name if where == "the document" else f"{where}.{name}"
            if name in value:
                out += shape_problems(value[name], sub, at)
            elif not key.endswith("?"):
                out.append(f"{at} is missing")
        return out
    if isinstance(shape, dict) or not isinstance(value, list) or \
            (isinstance(shape, tuple) and len(value) != len(shape)):
        return [f"{where} is {_shown(value)}, expected {_expected(shape)}"]
    subs = shape if isinstance(shape, tuple) else shape * len(value)
    return [p for i, (v, s) in enumerate(zip(value, subs)) for p in shape_problems(v, s, f"{where}[{i}]")]


def check_document(doc, path, shape, relations=None) -> None:
    """Raise one BenchError listing every problem of doc's shape (then of relations(doc), what its
    parts must agree on), or return."""
    problems = shape_problems(doc, shape)
    if not problems and relations is not None:
        problems = relations(doc)
    if problems:
        more = f"; and {len(problems) - MAX_SHOWN} more" if len(problems) > MAX_SHOWN else ""
        raise BenchError(f"{path}: " + "; ".join(problems[:MAX_SHOWN]) + more)


TEXT = _leaf(lambda v: isinstance(v, str), "a string")
NAME = _leaf(lambda v: isinstance(v, str) and v != "", "a non-empty string")
OBJECT = _leaf(lambda v: isinstance(v, dict), "an object")
BOOL = _leaf(lambda v: isinstance(v, bool), "true or false")
NUMBER = _leaf(_number, "a finite number")
NON_NEGATIVE = _leaf(lambda v: _number(v) and v >= 0, "a number >= 0")
FRACTION = _leaf(lambda v: _number(v) and 0 <= v <= 1, "a number 0..1")
SHA256 = _leaf(lambda v: isinstance(v, str) and re.fullmatch(r"[0-9a-f]{64}", v), "a sha256 (64 hex digits)")
DIM = _leaf(lambda v: isinstance(v, str) or (_number(v) and isinstance(v, int) and 1 <= v <= MAX_SIDE),
            f"an axis name or a size 1..{MAX_SIDE}")

MANIFEST_SHAPE = {
    "target": NAME, "precision": _one_of(*GOLDEN_FLOOR_DB),
    "files": [{"path": TEXT, "sha256": SHA256, "bytes?": _ints(0, 2 ** 53)}],   # confined() checks each path
    "preprocess": {"size": (_ints(1, MAX_SIDE), _ints(1, MAX_SIDE)), "channels": _one_of(1, 3),
                   "mean": [NUMBER], "std": [_leaf(lambda v: _number(v) and v != 0, "a non-zero number")],
                   "resize?": _one_of(*RESIZE_METHODS)},
    "classes": [TEXT], "classes_named?": BOOL,
    "input?": {"shape": [DIM], "name?": TEXT}, "output?": {"shape": [DIM]},
    "golden?": _maybe({"file": NAME, "threshold_sqnr_db": NUMBER}),
    "model?": _maybe({"data?": _maybe(TEXT), "split?": _maybe(OBJECT)}),
    "export?": _maybe({"spec?": {"float_layers?": _maybe([TEXT]), "coreml_input?": _maybe(TEXT)},
                       "mixed_precision?": _maybe({"latency?": _maybe(OBJECT)}), "engine?": _maybe(OBJECT),
                       "coreml?": _maybe({"specification_version?": _maybe(_ints(0, 2 ** 31))}),
                       "file?": NAME, "onnx_kind?": _maybe(TEXT)}),
    "validation?": {"passed?": _maybe(BOOL), **{f"{k}?": _maybe(TEXT) for k in ("checked_by", "runner", "skipped")}},
    "calibration?": _maybe(OBJECT), "images?": _maybe(OBJECT), "versions?": OBJECT,
}


def manifest_problems(m: dict) -> list:
    """What the parts of a manifest must agree on: channels, sizes, class counts."""
    pre, out = m["preprocess"], []
    counts = " or ".join(map(str, sorted({1, pre["channels"]})))
    for key in ("mean", "std"):
        if len(pre[key]) not in (1, pre["channels"]):
            out.append(f"preprocess.{key} has {len(pre[key])} values, expected {counts} (one for all or one a channel)")
    if not m["classes"]:
        out.append("classes is empty, expected the class names in output order")
    shape = (m.get("input") or {}).get("shape")
    if shape is not None and shape[1:] != [pre["channels"], *pre["size"]]:
        out.append(f"input.shape {shape} does not match preprocess channels {pre['channels']} and size {pre['size']}")
    shape = (m.get("output") or {}).get("shape")
    if shape and shape[-1] != len(m["classes"]):
        out.append(f"output.shape {shape} has {shape[-1]} classes but classes lists {len(m['classes'])} names")
    return out


LATENCY_COST = {"cost_ms": NUMBER, "all_int8_ms": NUMBER, "mixed_ms": NUMBER, "cost_ratio": NUMBER,
                "per_layer_ms": _each(NUMBER)}
RESULT_SHAPE = {
    "device": {"name": NAME, "cpu?": TEXT, "os?": TEXT, "isa?": _maybe([TEXT]),
               "cores_usable?": _maybe(_ints(0, 2 ** 31))},
    "versions?": OBJECT,
    "results": [{
        "name": TEXT, "target": TEXT, "precision": TEXT, "status": TEXT, "reason?": _maybe(TEXT),
        "size_bytes?": _maybe(NON_NEGATIVE),
        "accuracy?": _maybe({"top1?": _maybe(FRACTION), "top5?": _maybe(FRACTION)}),
        "agreement?": _maybe({"top1_agreement?": _maybe(FRACTION), "cosine?": _maybe(NUMBER)}),
        "latency_ms?": _maybe({**{f"{p}?": _maybe(NON_NEGATIVE) for p in ("p10", "p50", "p90", "p99")},
                               "p50_ci?": _maybe((NON_NEGATIVE, NON_NEGATIVE))}),
        "throughput?": _maybe([{"batch": _ints(1, 2 ** 31), "images_per_s": _maybe(NON_NEGATIVE),
                                "images_per_s_ci?": _maybe((_maybe(NON_NEGATIVE), _maybe(NON_NEGATIVE)))}]),
        "model_rss_mb?": _maybe(NUMBER),
        "validation?": _maybe({"status": TEXT, "checked_by": _maybe(TEXT)}),
        "runtime?": _maybe({"applied_precision?": _maybe(TEXT), "precision_hint?": _maybe(TEXT)}),
        "quantization?": _maybe({"float_layers?": _maybe([TEXT]), "max_drop?": _maybe(NUMBER),
                                 "float_layers_latency?": _maybe(_when(lambda s: "cost_ms" in s, LATENCY_COST,
                                                                       {"skipped?": TEXT}))}),
        "device_check?": _maybe(_when(lambda c: c.get("status") == "skipped", {"status": TEXT},
                                      {"status": _one_of("passed", "failed", "skipped"), "sqnr_db": NUMBER,
                                       "threshold_sqnr_db": NUMBER})),
    }],
}


def read_result(path) -> dict:
    """A result document of this script or `mixer-edge bench`: its kind, schema and shape checked."""
    doc = read_json(path, "result file")
    if not isinstance(doc, dict) or doc.get("kind") != KIND:
        raise BenchError(f"{path} is not a mixer-edge bench result (kind "
                         f"{doc.get('kind') if isinstance(doc, dict) else None!r}, expected {KIND!r})")
    if doc.get("schema") != SCHEMA:
        raise BenchError(f"{path} has bench result schema {doc.get('schema')!r}; this mixer-edge reads schema "
                         f"{SCHEMA} (re-run the benchmark with this version)")
    check_document(doc, path, RESULT_SHAPE)
    return doc


# ---- results ------------------------------------------------------------------------------------

RESULT_KEYS = ("artifact", "name", "target", "precision", "sha256", "status", "reason", "runtime", "load_s",
               "first_inference_ms", "latency_batch", "latency_ms", "throughput", "batch_dynamic", "size_bytes",
               "model_rss_mb", "process_peak_rss_mb", "rss_before_load_mb", "process_peak_rss_scope", "accuracy",
               "agreement", "data", "quantization", "validation", "device_check")


def quantization_summary(manifest: dict) -> dict | None:
    """An INT8 artifact's recipe in brief: method, smoothing, the layers kept in float and, when the
    export measured it, their latency cost (`mixer-edge export --max-drop`)."""
    export = manifest.get("export") or {}
    if manifest.get("precision") != "int8" or not isinstance(export, dict):
        return None
    spec, mixed = export.get("spec") or {}, export.get("mixed_precision") or {}
    return {"calib_method": spec.get("calib_method"), "smooth": spec.get("smooth"),
            "float_layers": list(spec.get("float_layers") or []), "max_drop": spec.get("max_drop"),
            "float_layers_latency": mixed.get("latency")}


def validation_summary(manifest: dict) -> dict | None:
    """The export's check against PyTorch FP32 as the manifest records it, never rounded up: status
    passed / failed / skipped and what ran it: the artifact's own runtime, a stand-in (Core ML W8A8
    off macOS: the quantized PyTorch model) or nothing. None: the manifest has no check at all."""
    v = manifest.get("validation")
    if not isinstance(v, dict):
        return None
    status = "skipped" if v.get("passed") is None else "passed" if v["passed"] else "failed"
    by = v.get("checked_by") or (None if status == "skipped" else "not recorded")  # older manifests
    return {"status": status, "checked_by": by, "runner": v.get("runner"), "reason": v.get("skipped")}


def validation_text(v: dict | None, target: str) -> str:
    """One table cell: the export's check and, unless the artifact's own runtime ran it, by what."""
    if v is None:
        return "checkpoint" if target.startswith("pytorch") else "not recorded"
    status = {"failed": "FAILED", "skipped": "skipped: unchecked"}.get(v["status"], v["status"])
    return status + {"stand-in": " (stand-in)", "not recorded": " (checker not recorded)"}.get(v["checked_by"], "")


def result_entry(**fields) -> dict:
    """One result with every key of the schema present (None where it did not apply or run)."""
    unknown = set(fields) - set(RESULT_KEYS)
    if unknown:
        raise ValueError(f"not result keys: {sorted(unknown)}")
    return {k: fields.get(k) for k in RESULT_KEYS}


def document(results: list, device: dict, versions: dict, settings: Settings, tool: str, data: str) -> dict:
    return {"schema": SCHEMA, "kind": KIND, "tool": tool,
            "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), "data": data,
            "settings": {**asdict(settings), "batch_sizes": list(settings.batch_sizes)},
            "device": device, "versions": versions, "results": results}


def atomic_write_bytes(path, data: bytes) -> None:
    """Temp file in the same folder, then os.replace: a reader never sees half a file, and an
    interrupted write leaves nothing behind. The file gets the umask's usual permissions."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)  # mkstemp creates 0600
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def atomic_write_json(path, obj) -> None:
    atomic_write_bytes(path, (json.dumps(obj, indent=2) + "\n").encode())


def _f(value, fmt: str) -> str:
    return "-" if value is None else format(value, fmt)


def interval_text(value, ci, fmt: str) -> str:
    """'0.129 [0.127, 0.131]': a figure and its 95% interval; the figure alone where none was
    recorded (results of older versions)."""
    if value is None:
        return "-"
    if not ci or None in ci:
        return format(value, fmt)
    return f"{value:{fmt}} [{ci[0]:{fmt}}, {ci[1]:{fmt}}]"


def spread_text(low, high, fmt: str) -> str:
    return "-" if low is None or high is None else f"{low:{fmt}}-{high:{fmt}}"


def best_throughput(entries) -> dict | None:
    return max(entries or (), key=lambda t: t["images_per_s"] or 0, default=None)


def throughput_text(t: dict | None) -> str:
    return "-" if t is None else f"{interval_text(t['images_per_s'], t.get('images_per_s_ci'), '.0f')} ({t['batch']})"


def format_table(doc: dict) -> str:
    """The results as a fixed-width text table for a terminal. Model MB is the memory loading the
    model and its first inference added; the process peak is everything (torch included)."""
    head = ("artifact", "target", "prec", "validation", "size MB", "load s", "first ms", "p50 ms [95% CI]",
            "p10-p90 ms", "img/s [95% CI] (b)", "top-1", "agree", "cosine", "model MB", "process peak RSS MB")
    rows = []
    for r in doc["results"]:
        who = (r["name"], r["target"], r["precision"], validation_text(r.get("validation"), r["target"]))
        if r["status"] != "ok":
            rows.append((*who, f"not run: {r['reason']}"))
            continue
        acc, agr, lat = r["accuracy"] or {}, r["agreement"] or {}, r["latency_ms"]
        rows.append((*who, _f(r["size_bytes"] and r["size_bytes"] / 1e6, ".2f"),
                     _f(r["load_s"], ".2f"), _f(r["first_inference_ms"], ".1f"),
                     interval_text(lat["p50"], lat.get("p50_ci"), ".3f"), spread_text(lat.get("p10"), lat["p90"], ".3f"),
                     throughput_text(best_throughput(r["throughput"])),
                     _f(acc.get("top1"), ".4f"), _f(agr.get("top1_agreement"), ".4f"), _f(agr.get("cosine"), ".5f"),
                     _f(r["model_rss_mb"], ".1f"), _f(r["process_peak_rss_mb"], ".0f")))
    # A not-run row's reason runs past the columns and must not widen them; its first cells count.
    widths = [max(len(str(row[i])) for row in [head, *rows] if i < len(row) - (len(row) < len(head)))
              for i in range(len(head))]
    lines = ["  ".join(str(c).ljust(w) for c, w in zip(head, widths))]
    for row in rows:
        if len(row) < len(head):  # a not-run row: its reason runs on past the columns
            lines.append("  ".join(str(c).ljust(w) for c, w in zip(row[:-1], widths)) + "  " + row[-1])
        else:
            lines.append("  ".join(str(c).ljust(w) for c, w in zip(row, widths)))
    d = doc["device"]
    lines.append(f"device: {d['name']}: {d['cpu']}, {d['cores_usable']} cores, {' '.join(d['isa']) or 'no ISA flags'}; "
                 f"{d['os']}")
    return "\n".join(lines)


# ---- one artifact, end to end -------------------------------------------------------------------

def bench_artifact(folder, data: Data, settings: Settings, options: Options, selection: str = "held-out",
                   limit: int | None = None, reference: str | None = None,
                   manifest: dict | None = None) -> tuple[dict, dict]:
    """Benchmark one artifact folder on raw data; returns (result entry, runtime versions).
    manifest: the folder's manifest, already read and verified by read_manifest."""
    folder = Path(folder)
    manifest = read_manifest(folder) if manifest is None else manifest
    data, about = select(data, selection, manifest, limit)
    labels, labels_how = model_labels(manifest, data)
    fixed = batch_axis(manifest)
    base = dict(artifact=str(folder), name=folder.resolve().name, target=manifest["target"], precision=manifest["precision"],
                sha256=file_hashes(manifest), size_bytes=artifact_size(folder, manifest),
                data={**about, "labels": labels_how},
                quantization=quantization_summary(manifest), validation=validation_summary(manifest))
    x = model_inputs(data.images, lambda images: preprocess(images, manifest["preprocess"]))
    ref_logits = None
    if reference is not None:  # logits of the reference artifact first: its memory is not ours
        ref_manifest = read_manifest(reference)
        if ref_manifest["preprocess"] != manifest["preprocess"]:
            raise BenchError(f"reference {reference} preprocesses differently from {folder}")
        try:
            ref = load_backend(Path(reference), ref_manifest, Options())
        except NotRunnable as why:
            raise BenchError(f"reference {reference} cannot run here: {why}") from None
        ref_logits = predict(ref.run, x, settings.eval_batch, batch_axis(ref_manifest))
        del ref
    import_runtime(manifest["target"])
    mark = mark_memory()
    t0 = time.perf_counter()
    try:
        backend = load_backend(folder, manifest, options)
    except NotRunnable as why:
        return result_entry(**base, status="not-run", reason=str(why)), {}
    load_s = time.perf_counter() - t0
    check = device_check(folder, manifest, backend.run, fixed)   # before timing: what is timed must be right
    speed = measure_speed(backend.run, x, settings, fixed, memory=mark)
    logits = predict(backend.run, x, settings.eval_batch, fixed)
    entry = result_entry(
        **base, status="ok", runtime={**backend.config, "what": backend.what}, load_s=load_s, **speed,
        **process_memory(mark), accuracy=accuracy(logits, labels),
        agreement=None if ref_logits is None else agreement(ref_logits, logits, str(reference)),
        device_check=check)
    return entry, backend.versions


# ---- command line -------------------------------------------------------------------------------

def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="edge_bench.py", description=__doc__.split("\n\n")[0])
    p.add_argument("artifact", help="artifact folder (with manifest.json)")
    p.add_argument("--data", default=None, help=f"evaluation data to benchmark on: {DATA_HELP}")
    p.add_argument("--predict", nargs="+", default=None, metavar="IMAGE_OR_FOLDER",
                   help="instead of benchmarking: print each image's top classes (with --top-k, --json)")
    p.add_argument("--top-k", type=int, default=5, help="classes shown per image with --predict (default 5)")
    add_measurement_arguments(p)
    return p


def add_measurement_arguments(p: argparse.ArgumentParser) -> None:
    """The measurement options this script and `mixer-edge bench` share, defined once."""
    how = p.add_mutually_exclusive_group()
    how.add_argument("--iters", type=int, default=None, help="timed calls at batch 1 after warm-up (default 100)")
    how.add_argument("--duration", type=float, default=None,
                     help="time calls for this many seconds instead of a fixed count (also per batch size)")
    p.add_argument("--warmup", type=int, default=10, help="untimed calls after the first, timed one (default 10)")
    p.add_argument("--min-calls", type=int, default=Settings.min_calls,
                   help=f"every measurement (latency, each batch size) takes at least this many timed calls "
                        f"(default {Settings.min_calls})")
    p.add_argument("--min-time", type=float, default=Settings.min_seconds,
                   help=f"... and at least this many seconds, so a fast model's calls do not all fall in one "
                        f"burst of noise (default {Settings.min_seconds:g}; 0: off)")
    p.add_argument("--batch-sizes", default="1,8,32",
                   help="throughput batch sizes, comma-separated, when the batch axis is dynamic (default 1,8,32)")
    p.add_argument("--threads", type=int, default=None,
                   help="runtime threads (ONNX Runtime intra-op, OpenVINO INFERENCE_NUM_THREADS, torch); "
                        "default: the runtime's own")
    p.add_argument("--precision-hint", choices=PRECISION_HINTS, default=None,
                   help="OpenVINO INFERENCE_PRECISION_HINT (default f32)")
    p.add_argument("--provider", default=None,
                   help="ONNX Runtime execution provider (default CPUExecutionProvider) or OpenVINO device "
                        "(default CPU)")
    p.add_argument("--limit", type=int, default=None, help="evaluate on the first N images only")
    p.add_argument("--images", default="held-out", choices=SELECTIONS,
                   help="held-out (default): only the images of --data that the model was not trained and the "
                        "artifact not calibrated on, recognised by content; all: every image, those included")
    p.add_argument("--reference", default=None,
                   help="FP32 artifact (or, with mixer-edge bench, checkpoint) for top-1 agreement and logit cosine")
    p.add_argument("--device-name", default=None, help="name of this device in reports (default: host name)")
    p.add_argument("--json", default=None, help="write the versioned result JSON here (atomically)")


def settings_from_args(args: argparse.Namespace) -> Settings:
    """Settings from add_measurement_arguments' options: 100 timed calls unless --iters or --duration."""
    iters = args.iters if args.iters is not None or args.duration is not None else 100
    return Settings(warmup=args.warmup, iters=iters, duration=args.duration,
                    batch_sizes=parse_batch_sizes(args.batch_sizes), min_calls=args.min_calls,
                    min_seconds=args.min_time)


def run(argv=None) -> int:
    args = build_parser().parse_args(argv)
    if args.predict:
        return run_predict(args)
    if not args.data:
        raise BenchError("give --data SPEC to benchmark, or --predict IMAGE... to classify images")
    settings = settings_from_args(args)
    if args.limit is not None and args.limit < 1:
        raise BenchError(f"--limit must be at least 1, got {args.limit}")
    manifest = read_manifest(args.artifact)  # a tampered artifact fails before the data is read
    data = read_data(args.data)
    options = Options(threads=args.threads, precision_hint=args.precision_hint, provider=args.provider)
    entry, versions = bench_artifact(args.artifact, data, settings, options, args.images, args.limit,
                                     args.reference, manifest)
    doc = document([entry], device_info(args.device_name), {**base_versions(), **versions}, settings,
                   "edge_bench.py", args.data)
    print(format_table(doc))
    if args.json:
        atomic_write_json(args.json, doc)
    if entry["status"] != "ok":
        print(f"error: not run: {entry['reason']}", file=sys.stderr)
        return EXIT_NOT_RUN
    return check_exit(entry)


def run_predict(args) -> int:
    model = load(args.artifact, threads=args.threads, precision_hint=args.precision_hint, provider=args.provider)
    files = image_files(args.predict)
    doc = predictions_document(files, model.predict(files, args.top_k), str(args.artifact))
    print(format_predictions(doc))
    if args.json:
        atomic_write_json(args.json, doc)
    return EXIT_OK


def check_exit(entry: dict) -> int:
    """EXIT_DEVICE_CHECK, with the reason on stderr, when the golden check failed; else EXIT_OK."""
    check = entry.get("device_check") or {}
    if check.get("status") == "failed":
        print(f"error: device check failed for {entry['name']}: {check['reason']}", file=sys.stderr)
        return EXIT_DEVICE_CHECK
    return EXIT_OK


def error_boundary(call, errors, interrupted: str) -> int:
    """The one place a mixer-edge program turns exceptions into exit codes (pypa/build style):
    errors is a sequence of (exception type, exit code, prefix), first match wins; each becomes one
    'prefix: message' line on stderr; Ctrl-C becomes EXIT_INTERRUPTED with 'error: interrupted...'.
    The host CLI and the device scripts all end here."""
    try:
        return call()
    except KeyboardInterrupt:
        print(f"error: {interrupted}", file=sys.stderr)
        return EXIT_INTERRUPTED
    except Exception as e:
        for kind, code, prefix in errors:
            if isinstance(e, kind):
                print(f"{prefix}: {e}", file=sys.stderr)
                return code
        raise


# The last row: a file the system would not read or write (permissions, a full disk) is the user's to fix.
ERRORS = ((BenchError, EXIT_BAD_INPUT, "error"), (NotRunnable, EXIT_NOT_RUN, "error: cannot run here"),
          (DeviceCheckFailed, EXIT_DEVICE_CHECK, "error: device check failed"), (OSError, EXIT_BAD_INPUT, "error"))


def main(argv=None) -> int:
    return error_boundary(lambda: run(argv), ERRORS, "interrupted; no result written")


if __name__ == "__main__":
    sys.exit(main())
