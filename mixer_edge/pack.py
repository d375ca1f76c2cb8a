"""`mixer-edge pack`: an artifact made ready to copy to its device, as one .tar.gz: the artifact
folder as it is (its files checked against the manifest first), a seeded, class-stratified sample
of held-out images (chosen by content key from the images of --data that the model was not trained
on and the artifact not calibrated on, so never a training or calibration image), bundle.json
(runtime/bundle.py: where they are, their sha256), a device README with the exact commands, and
SHA256SUMS over every file. Unpacked on the device, `python3 edge_bench.py .` (or `python3
trt_build.py .`) benchmarks the bundled images and writes result-<device>.json."""
from __future__ import annotations

import io
import json
import shutil
import tarfile
import tempfile
import time
from pathlib import Path

import numpy as np

from .bench.harness import load_images
from .errors import BadInput
from .export.artifact import RUNTIME_PACKAGE, load_artifact
from .export.registry import get_target
from .runtime.artifact import atomic_write_bytes, sha256_file
from .runtime.bundle import BUNDLE, BUNDLE_DIR, DEFAULT_IMAGES, KIND, README, SUMS, data_sha256, default_result
from .runtime.identity import fingerprint, held_out, stratified_order, subset
from .runtime.needs import install_hint
from .runtime.readers import Data
from .runtime.signing import INSTALL, SIGNATURE


def pack(artifact, data_spec: str, out, images: int = DEFAULT_IMAGES, seed: int = 0) -> dict:
    """Write the bundle to `out` (atomically: a .tar.gz appears whole or not at all); returns what
    it holds: {"out", "artifact", "images", "data", "fingerprint", "files"}."""
    out = Path(out)
    if not out.name.endswith(".tar.gz"):
        raise BadInput(f"--out {out} must end in .tar.gz (the bundle is a gzipped tar)")
    if images < 1:
        raise BadInput(f"--images must be at least 1, got {images}")
    art = load_artifact(artifact)   # every file present with its sha256: a tampered artifact is not packed
    if f"{RUNTIME_PACKAGE}/bundle.py" not in {f["path"] for f in art.manifest["files"]}:
        raise BadInput(f"{artifact} was exported before mixer-edge pack existed: its device scripts cannot find "
                       f"bundled images; export it again with this mixer-edge, then pack it")
    sample, about = held_out_sample(art.manifest, load_images(data_spec), images, seed)
    with tempfile.TemporaryDirectory(prefix="mixer-edge-pack-") as tmp:
        root = Path(tmp) / Path(artifact).resolve().name
        # a packed artifact packed again: its old bundle, README, sums and results are not carried over
        shutil.copytree(art.path, root, ignore=shutil.ignore_patterns("__pycache__", BUNDLE_DIR, BUNDLE, README, SUMS,
                                                                      "result-*.json"))
        data_file = _write_images(root / BUNDLE_DIR, sample)
        bundle = {"kind": KIND, "schema": 1, "data": str(data_file.relative_to(root)),
                  "sha256": data_sha256(data_file), "images": len(sample.images), "source": data_spec,
                  "selection": about, "seed": seed, "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}
        (root / BUNDLE).write_text(json.dumps(bundle, indent=2) + "\n")
        signed = (root / SIGNATURE).is_file()   # copied with the rest: the signature travels with the artifact
        (root / README).write_text(device_readme(art.manifest, bundle, root.name, signed))
        sums = _sums(root)
        (root / SUMS).write_text(sums)
        atomic_write_bytes(out, _tar_gz(root))
    return {"out": str(out), "artifact": root.name, "images": bundle["images"], "data": bundle["data"],
            "fingerprint": about["fingerprint"], "files": len(sums.splitlines()) + 1}


def held_out_sample(manifest: dict, data, n: int, seed: int = 0) -> tuple:
    """(Data, about): n images of `data` (an ImageSet) the model was not trained on and the artifact
    not calibrated on (identity.held_out, by content), class-stratified and seeded."""
    held = held_out(data.keys, manifest, data.spec)
    labels = None if data.labels is None else data.labels[held]
    chosen = np.sort(held[stratified_order(labels, data.keys[held], seed)[:n]])
    sample = subset(Data(data.images, data.labels, data.classes or None, data.spec), chosen)
    return sample, {"spec": data.spec, "selection": "held-out", "n": len(chosen), "of": len(held),
                    "fingerprint": fingerprint(data.keys[chosen]),
                    "rule": "held out by content key from training and calibration; class-stratified, seeded"}


def _write_images(folder: Path, sample) -> Path:
    """images.npz (uint8 'images', 'labels', 'classes': numpy reads it, no Pillow) when every image
    has one size; else one PNG folder per class (Pillow reads it on the device)."""
    folder.mkdir(parents=True)
    images = sample.images if isinstance(sample.images, np.ndarray) else list(sample.images)
    if isinstance(images, np.ndarray) or len({np.asarray(im).shape for im in images}) == 1:
        arrays = {"images": np.stack([np.asarray(im) for im in images])}
        if sample.labels is not None:
            arrays["labels"] = sample.labels.astype(np.int64)
        if sample.classes:
            arrays["classes"] = np.array([str(c) for c in sample.classes])
        np.savez_compressed(folder / "images.npz", **arrays)
        return folder / "images.npz"
    from PIL import Image

    for i, im in enumerate(images):
        cls = str(sample.classes[sample.labels[i]]) if sample.labels is not None else "unlabeled"
        (folder / "images" / cls).mkdir(parents=True, exist_ok=True)
        im = np.asarray(im)
        Image.fromarray(im[..., 0] if im.shape[-1] == 1 else im).save(folder / "images" / cls / f"{i:05d}.png")
    return folder / "images"


def _sums(root: Path) -> str:
    """SHA256SUMS in sha256sum's format (`sha256sum -c SHA256SUMS` checks the copy on the device)."""
    return "".join(f"{sha256_file(f)}  {f.relative_to(root).as_posix()}\n" for f in sorted(p for p in root.rglob("*") if p.is_file()))


def _tar_gz(root: Path) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tar:
        tar.add(root, arcname=root.name)
    return buf.getvalue()


# Per target: how to fix clocks before measuring, and what the device runs (the README's runbooks,
# "On a device"). A target not listed needs neither. Text, then code lines, per kind of device.
CLOCKS = {
    "tensorrt": (("On a Jetson, the power mode and locked clocks (else the GPU idles down between calls):",
                  ("sudo nvpmodel -q            # NV Power Mode: MAXN, and its id",
                   "sudo nvpmodel -m 0          # the module's maximum mode (/etc/nvpmodel.conf lists them)",
                   "sudo jetson_clocks --store && sudo jetson_clocks     # --restore undoes it")),
                 ("On an x86 GPU host, MAX from `nvidia-smi --query-gpu=clocks.max.sm --format=csv` "
                  "(`sudo nvidia-smi -rgc` undoes it):", ("sudo nvidia-smi -lgc MAX,MAX",))),
    "onnx": (("On Linux (the result records the CPU governor):", ("sudo cpupower frequency-set -g performance",)),),
    "openvino": (("On Linux (the result records the CPU governor):",
                  ("sudo cpupower frequency-set -g performance",)),),
}
RUN = {
    "tensorrt": ("python3 trt_build.py .      # build the engine for this GPU, check it, benchmark",
                 "Later: `python3 trt_build.py . --no-build` benchmarks the engine built before, `python3 "
                 "edge_bench.py . --predict IMAGE...` classifies images. The build adds the engine to "
                 "`manifest.json`, so `SHA256SUMS` no longer matches that one file; the scripts check every file "
                 "against the manifest on each run."),
    "coreml": ("python3 edge_bench.py .",
               "`--compute-units CPU_AND_NE` asks for the Neural Engine (`ALL`, the default; `CPU_AND_GPU`; "
               "`CPU_ONLY`); to compare them, give each run its own file: `--compute-units CPU_AND_NE --json "
               "result-ne.json`. `python3 edge_bench.py . --predict IMAGE...` classifies images."),
}
DEFAULT_RUN = ("python3 edge_bench.py .", "`python3 edge_bench.py . --predict IMAGE...` classifies images.")


def code(*lines: str) -> str:
    """A fenced code block inside a numbered list item."""
    return "   ```\n" + "".join(f"   {line}\n" for line in lines) + "   ```\n"


def install_steps(target: str) -> str:
    """The install commands for the target's devices, one group per kind of device (runtime
    NEEDS, Need.where), from the same table the scripts quote when something is missing."""
    backend = get_target(target).backend
    needs = backend.NEEDS
    if not needs:   # ONNX Runtime, OpenVINO: one wheel from PyPI, on any device
        return code("python3 -m venv ~/mixer-edge-device && . ~/mixer-edge-device/bin/activate",
                    install_hint(needs, backend.LIBRARY or target), 'pip install "numpy>=1.24" "Pillow>=9"')
    kinds = list(dict.fromkeys(n.where for n in needs if n.where))
    out = []
    for kind in kinds or [""]:
        venv = ("python3 -m venv ~/coreml && . ~/coreml/bin/activate",) if target == "coreml" else ()
        lines = [*venv, *(n.install for n in needs if n.where in ("", kind))]
        out.append((f"   On {kind}:\n\n" if kind else "") + code(*lines))
    return "\n".join(out)


def device_readme(manifest: dict, bundle: dict, name: str, signed: bool = False) -> str:
    """The device's instructions, with the exact commands for this artifact's target (and, for an
    artifact signed at export, how to verify its signature there)."""
    target = manifest["target"]
    run, later = RUN.get(target, DEFAULT_RUN)
    mac = target == "coreml"
    check, other = (f"shasum -a 256 -c {SUMS}", f"sha256sum -c {SUMS}")[::1 if mac else -1]
    result = default_result("DEVICE")
    steps = [f"Check the copy; every line ends in OK (on {'Linux' if mac else 'a Mac'}: `{other}`):\n\n" + code(check),
             "Install what this target needs on the device (nothing else: no torch, no mixer-edge):\n\n" +
             install_steps(target)]
    if signed:
        steps.append(f"This artifact is signed (`{SIGNATURE}`, OpenSSF model signing). To have the scripts refuse it "
                     f"unless its signature verifies, copy the signer's public key over (never the private key), "
                     f"install model-signing and add `--verify-key` to every command below:\n\n"
                     + code(INSTALL, f"{run.split('#')[0].strip()} --verify-key signer.pub.pem"))
    if target in CLOCKS:
        steps.append("Before measuring, fix the clocks (the result records them, and warns where they were not "
                     "locked).\n\n" + "\n".join(f"   {text}\n\n" + code(*lines) for text, lines in CLOCKS[target]))
    steps.append(f"""Run it, from this folder (it must be writable: the result is written here):

{code(run)}
   It checks every file's sha256, runs the golden check (the images recorded at export must give the
   logits validated then), benchmarks the {bundle['images']} bundled images and writes `{result}` (your
   device's name in place of DEVICE; `--device-name NAME` sets it). It prints the results table, the
   line `device check passed: ...` and the conditions it measured under, with a `warning:` line where
   clocks were not locked or the machine was busy. `--data SPEC` benchmarks other images instead;
   `--help` lists every option. {later}
""")
    steps.append(f"""Copy `{result.replace('DEVICE', '*')}` back to the machine with mixer-edge and merge it with others:

{code("mixer-edge report result-*.json host.json --out report/")}
   (`host.json`: `mixer-edge bench CHECKPOINT ARTIFACT --data SPEC --json host.json` on that machine; the
   checkpoint's PyTorch row is that machine's speed-up baseline.)
""")
    body = "\n".join(f"{i}. {text}" for i, text in enumerate(steps, 1))
    return f"""# {name}: a mixer-edge {target} {manifest['precision']} artifact, packed for its device

Inside: the artifact (model files, `manifest.json`, the device runtime `mixer_edge_runtime/` and its
launcher{'s' if target == 'tensorrt' else ''}), {bundle['images']} images held out from the model's training and calibration
(`{bundle['data']}`, described in `{BUNDLE}`), and `{SUMS}`.

{body}"""
