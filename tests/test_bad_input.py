"""Issue 10: every user-facing mistake, for every command, gives its documented exit code, exactly
one `error:` line (warnings allowed), no traceback, and nothing half-written.

One matrix: a row is a command line with placeholders ({CKPT}, {ART}, {FILE}, ...), the exit code
it must give, and optionally a stage patched to simulate Ctrl-C or a failing check. Placeholders
name inputs made on demand in the case's own tmp_path (bad images, mutated manifests, ...)."""
from __future__ import annotations

import json
import os
import re
import shutil
import struct
import subprocess
import sys
import zlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest

from mixer_edge.cli import main
from mixer_edge.export.build import export_one
from mixer_edge.runtime.artifact import MANIFEST, read_manifest
from mixer_edge.runtime.cli import main as device_main
from mixer_edge.runtime.errors import BadInput

FAST = ["--iters", "2", "--warmup", "0", "--batch-sizes", "1"]
ROOT = hasattr(os, "geteuid") and os.geteuid() == 0


# ---- the shared inputs: one checkpoint, its artifacts, a bench result, a calibration set -------------

@pytest.fixture(scope="module")
def made(digits_checkpoint, digits_onnx_artifact, digits_bench_result, digits_calib_file, ck, val,
         tmp_path_factory) -> dict:
    """Real files: {CKPT}, {ART} (ONNX FP32), {TRT} (TensorRT FP32, no engine: its runtime is not
    here), {RESULT} (a bench result of {ART}), {CALIB} (calib make's .npz + .json)."""
    from mixer_edge.export.base import ExportSpec

    trt = export_one(ck, "tensorrt", ExportSpec("fp32"), None, tmp_path_factory.mktemp("made"),
                         validation=val).artifact.path
    return {"CKPT": digits_checkpoint, "ART": digits_onnx_artifact, "TRT": trt, "RESULT": digits_bench_result,
            "CALIB": digits_calib_file}


# ---- inputs made on demand, by placeholder name --------------------------------------------------------

def _png(path: Path, mode: str = "L", size=(8, 8)) -> Path:
    from PIL import Image

    rng = np.random.default_rng(0)
    img = Image.fromarray(rng.integers(0, 255, (*size[::-1], 3), dtype=np.uint8)).convert("RGB")
    if mode == "I;16":
        img = Image.fromarray(rng.integers(0, 65535, size[::-1], dtype=np.uint16))
    elif mode == "P":
        img = img.convert("P", palette=Image.Palette.ADAPTIVE)
    else:
        img = img.convert(mode)
    path.parent.mkdir(parents=True, exist_ok=True)
    img.save(path)
    return path


def _bomb(path: Path) -> Path:
    """A PNG whose header claims 30000 x 30000 pixels: Pillow's decompression-bomb limit refuses it
    on open, before decoding anything."""
    raw = bytearray(_png(path).read_bytes())
    struct.pack_into(">II", raw, 16, 30000, 30000)          # IHDR width, height
    struct.pack_into(">I", raw, 29, zlib.crc32(raw[12:29]))  # IHDR CRC
    path.write_bytes(bytes(raw))
    return path


def _image_folder(root: Path, classes=("a", "b"), per_class=2) -> Path:
    for c in classes:
        for i in range(per_class):
            _png(root / c / f"{i}.png")
    return root


def _mutated(made: dict, tmp: Path, edit) -> Path:
    """A copy of the ONNX artifact whose manifest.json was edited (files left as they are)."""
    folder = tmp / "mutated"
    shutil.copytree(made["ART"], folder)
    manifest = json.loads((folder / MANIFEST).read_text())
    edit(manifest)
    (folder / MANIFEST).write_text(json.dumps(manifest))
    return folder


def _result(made: dict, tmp: Path, edit) -> Path:
    doc = json.loads(made["RESULT"].read_text())
    edit(doc)
    path = tmp / "edited-result.json"
    path.write_text(json.dumps(doc))
    return path


def _calib_copy(made: dict, tmp: Path, arrays=None, sidecar=None) -> Path:
    path = tmp / "c.npz"
    shutil.copy(made["CALIB"], path)
    shutil.copy(made["CALIB"].with_suffix(".json"), path.with_suffix(".json"))
    if arrays is not None:
        np.savez(path, **arrays)
    if sidecar is not None:
        path.with_suffix(".json").write_text(sidecar)
    return path


def _readonly(tmp: Path) -> Path:
    if ROOT:
        pytest.skip("running as root: a read-only folder is writable")
    ro = tmp / "ro"
    ro.mkdir()
    ro.chmod(0o555)
    return ro


def _set(key, value):
    return lambda d: d.__setitem__(key, value)


def _drop(key):
    return lambda d: d.pop(key)


MAKERS = {
    "MISSING": lambda m, t: t / "nope",
    "OUT": lambda m, t: t / "out",
    "JSON": lambda m, t: t / "r.json",
    "FILE": lambda m, t: _write(t / "file", b"x"),
    "DIR": lambda m, t: (t / "dir").mkdir() or t / "dir",
    "NPZDIR": lambda m, t: (t / "dir.npz").mkdir() or t / "dir.npz",
    "RO": lambda m, t: _readonly(t),
    "PNG": lambda m, t: _png(t / "img" / "ok.png"),
    "CORRUPT": lambda m, t: _write(t / "bad.png", b"\x89PNG\r\n\x1a\nnot a png"),
    "BOMB": lambda m, t: _bomb(t / "bomb.png"),
    "CMYK": lambda m, t: _png(t / "cmyk.jpg", "CMYK"),
    "PALETTE": lambda m, t: _png(t / "p.png", "P"),
    "I16": lambda m, t: _png(t / "i16.png", "I;16"),
    "LA": lambda m, t: _png(t / "la.png", "LA"),
    "EMPTY": lambda m, t: (t / "empty").mkdir() or t / "empty",
    "FOLDER2": lambda m, t: _image_folder(t / "two"),
    "CORRUPT_FOLDER": lambda m, t: (_image_folder(t / "cf"), _write(t / "cf" / "a" / "x.png", b"junk"))[0],
    "BOMB_FOLDER": lambda m, t: (_image_folder(t / "bf"), _bomb(t / "bf" / "a" / "x.png"))[0],
    "ZERO": lambda m, t: _write(t / "zero.jpg", b""),
    # digit classes 0 and 1 (the model's names), each with one file that cannot be read
    "ZERO_FOLDER": lambda m, t: (_image_folder(t / "zf", ("0", "1")), _write(t / "zf" / "0" / "z.jpg", b""))[0],
    "LOOP_FOLDER": lambda m, t: (_image_folder(t / "lf", ("0", "1")), os.symlink("x.png", t / "lf" / "0" / "x.png"))[0],
    "ALLBAD_FOLDER": lambda m, t: (_write(t / "ab" / "0" / "z.jpg", b""), _write(t / "ab" / "1" / "y.png", b"x"))[0]
    .parent.parent,
    "DIGIT_FOLDER": lambda m, t: _image_folder(t / "df", ("0", "1")),
    "BADMAP": lambda m, t: _write(t / "map.txt", b"a = b\njust a name\n"),
    "WORDMAP": lambda m, t: _write(t / "words.json", b'{"0": "zero", "1": "one"}'),
    "RANDOM": lambda m, t: _write(t / "random.bin", os.urandom(256)),
    "RANDOM_NPZ": lambda m, t: _write(t / "random.npz", os.urandom(256)),
    "CUT_CKPT": lambda m, t: _cut(m["CKPT"] / "model.safetensors", t / "cut.safetensors"),
    "TAMPERED": lambda m, t: _tampered(m, t),
    # manifests
    "M_FILES_STR": lambda m, t: _mutated(m, t, _set("files", "x")),
    "M_PRE_INT": lambda m, t: _mutated(m, t, _set("preprocess", 3)),
    "M_CLASSES_OBJ": lambda m, t: _mutated(m, t, _set("classes", {})),
    "M_CLASSES_NONE": lambda m, t: _mutated(m, t, _drop("classes")),
    "M_INPUT_NULL": lambda m, t: _mutated(m, t, _set("input", None)),
    "M_FEWER_CLASSES": lambda m, t: _mutated(m, t, lambda d: (d.pop("output"), d["classes"].pop())),
    "M_LIST": lambda m, t: _mutated(m, t, lambda d: (d.clear(), d.update(schema=1))),
    "M_GOLDEN_OUT": lambda m, t: _mutated(m, t, lambda d: d["golden"].__setitem__("file", "/etc/passwd")),
    "M_TRAVERSAL": lambda m, t: _mutated(m, t, lambda d: d["files"][0].__setitem__("path", "../x")),
    "M_SCHEMA": lambda m, t: _mutated(m, t, _set("schema", 99)),
    "M_NOT_JSON": lambda m, t: _broken_manifest(m, t),
    # results
    "R_NO_DEVICE": lambda m, t: _result(m, t, _drop("device")),
    "R_TYPES": lambda m, t: _result(m, t, lambda d: d.update(device={"name": 3}, results="x")),
    "R_ROW_TYPES": lambda m, t: _result(m, t, lambda d: d["results"][0].update(latency_ms=[], accuracy="high")),
    "R_MANIFEST": lambda m, t: m["ART"] / MANIFEST,
    # calibration sets
    "C_SHAPE": lambda m, t: _calib_copy(m, t, arrays={"x": np.zeros((4, 3, 5, 5), np.float32)}),
    "C_STR_LABELS": lambda m, t: _calib_copy(m, t, arrays={"x": np.zeros((4, 1, 8, 8), np.float32),
                                                          "labels": np.array(["a", "b", "c", "d"])}),
    "C_SIDECAR": lambda m, t: _calib_copy(m, t, sidecar="{not json"),
    "C_SIDECAR_TYPES": lambda m, t: _calib_copy(m, t, sidecar='{"sha256": 5, "preprocess": "x", "seed": []}'),
}


# issue 20: manifests edited against their model file, signatures (keys made on first use in the case's folder)
MAKERS.update({
    "M_PRECISION": lambda m, t: _mutated(m, t, _set("precision", "fp16")),
    "M_SHAPES": lambda m, t: _mutated(m, t, lambda d: (d["preprocess"].__setitem__("size", [9, 9]),
                                                       d["input"].__setitem__("shape", ["batch", 1, 9, 9]))),
    "M_CLASS_COUNT": lambda m, t: _mutated(m, t, lambda d: (d["classes"].append("x"),
                                                            d["output"].__setitem__("shape", ["batch", 11]))),
    "M_THRESHOLD": lambda m, t: _mutated(m, t, lambda d: d["golden"].__setitem__("threshold_sqnr_db", 5.0)),
    "PUB": lambda m, t: _keys(t)["public"],
    "FORGED": lambda m, t: _forged(m, t),
    "R_EDITED_ARTIFACT": lambda m, t: _result(m, t, lambda d: d["results"][0].__setitem__(
        "artifact", str(_mutated(m, t, _set("precision", "fp16"))))),
    "R_ROW_PRECISION": lambda m, t: _result(m, t, lambda d: d["results"][0].__setitem__("precision", "int8")),
})


def _keys(tmp: Path) -> dict:
    from conftest import make_keys

    if not (tmp / "keys" / "key.pem").is_file():
        make_keys(tmp / "keys")
    return {"private": tmp / "keys" / "key.pem", "public": tmp / "keys" / "key.pub.pem"}


def _forged(made: dict, tmp: Path) -> Path:
    """A signed copy of the ONNX artifact, then altered and rehashed as a forger would: a runtime
    module changed, its sha256 in manifest.json and binding.json recomputed. Only the signature tells."""
    from conftest import reseal
    from mixer_edge.runtime.artifact import sha256_file
    from mixer_edge.runtime.signing import sign

    folder = tmp / "forged"
    shutil.copytree(made["ART"], folder)
    sign(folder, _keys(tmp)["private"])
    module = folder / "mixer_edge_runtime" / "labels.py"
    module.write_text(module.read_text() + "\n# altered\n")
    manifest = json.loads((folder / MANIFEST).read_text())
    for entry in manifest["files"]:
        if entry["path"] == "mixer_edge_runtime/labels.py":
            entry["sha256"], entry["bytes"] = sha256_file(module), module.stat().st_size
    (folder / MANIFEST).write_text(json.dumps(manifest))
    reseal(folder)
    return folder


def _write(path: Path, data: bytes) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    return path


def _cut(src: Path, dest: Path) -> Path:
    blob = src.read_bytes()
    dest.write_bytes(blob[: len(blob) // 2])
    return dest


def _tampered(made: dict, tmp: Path) -> Path:
    folder = tmp / "tampered"
    shutil.copytree(made["ART"], folder)
    with open(folder / "model.onnx", "ab") as f:
        f.write(b"\0")
    return folder


def _broken_manifest(made: dict, tmp: Path) -> Path:
    folder = tmp / "broken"
    shutil.copytree(made["ART"], folder)
    (folder / MANIFEST).write_bytes(b"\xff\xfe{{")
    return folder


# ---- the matrix ------------------------------------------------------------------------------------

@dataclass(frozen=True)
class Case:
    argv: tuple
    code: int
    via: str = "cli"                  # cli: mixer_edge.cli.main; edge: runtime/cli.main (edge_bench.py's); script: a
                                      # real process running the artifact's own edge_bench.py
    interrupt: str | None = None      # "module:attr" raising KeyboardInterrupt when called
    absent: tuple = ("out", "r.json")  # what must not exist afterwards (relative to tmp_path)
    says: str = ""                    # what the error line must say (refused for this reason, not another)


def C(*argv, code=2, **kw):
    return Case(tuple(argv), code, **kw)



CASES = {
    # train
    "train/data-missing": C("train", "--data", "mnist:{MISSING}", "--out", "{OUT}"),
    "train/data-folder-is-file": C("train", "--data", "imagefolder:{FILE}", "--out", "{OUT}"),
    "train/data-unknown": C("train", "--data", "{FILE}", "--out", "{OUT}"),
    "train/out-below-file": C("train", "--data", "digits", "--out", "{FILE}/m"),
    "train/out-readonly": C("train", "--data", "digits", "--out", "{RO}/m"),
    "train/epochs-0": C("train", "--data", "digits", "--epochs", "0", "--out", "{OUT}"),
    "train/batch-negative": C("train", "--data", "digits", "--batch-size", "-4", "--out", "{OUT}"),
    "train/unknown-variant": C("train", "--data", "digits", "--model", "Z/9", "--out", "{OUT}"),
    "train/class-count": C("train", "--data", "digits", "--num-classes", "3", "--out", "{OUT}"),
    "train/corrupt-image": C("train", "--data", "imagefolder:{CORRUPT_FOLDER}", "--out", "{OUT}"),
    "train/bomb-image": C("train", "--data", "imagefolder:{BOMB_FOLDER}", "--out", "{OUT}"),
    "train/zero-byte-jpg": C("train", "--data", "imagefolder:{ZERO_FOLDER}", "--out", "{OUT}"),
    "train/link-loop": C("train", "--data", "imagefolder:{LOOP_FOLDER}", "--out", "{OUT}"),
    "train/skip-bad-nothing-readable": C("train", "--data", "imagefolder:{ALLBAD_FOLDER}", "--skip-bad", "--out",
                                         "{OUT}"),
    "train/class-map-missing": C("train", "--data", "digits", "--class-map", "{MISSING}.json", "--out", "{OUT}"),
    "train/class-map-malformed": C("train", "--data", "imagefolder:{FOLDER2}", "--class-map", "{BADMAP}",
                                   "--out", "{OUT}"),
    "train/pretrained-random": C("train", "--data", "digits", "--pretrained", "{RANDOM}", "--out", "{OUT}"),
    "train/ctrl-c": C("train", "--data", "digits", "--model", "T/2", "--epochs", "2", "--batch-size", "512",
                      "--out", "{OUT}", code=130, interrupt="mixer_edge.train.loop:_save_resume",
                      absent=("out/model.safetensors", "out/model.json")),
    # eval
    "eval/ckpt-missing": C("eval", "{MISSING}", "--data", "digits"),
    "eval/ckpt-folder-empty": C("eval", "{EMPTY}", "--data", "digits"),
    "eval/ckpt-truncated": C("eval", "{CUT_CKPT}", "--data", "digits"),
    "eval/ckpt-random": C("eval", "{RANDOM}", "--data", "digits"),
    "eval/json-folder": C("eval", "{CKPT}", "--data", "digits", "--json", "{DIR}"),
    "eval/json-below-file": C("eval", "{CKPT}", "--data", "digits", "--json", "{FILE}/e.json"),
    "eval/json-readonly": C("eval", "{CKPT}", "--data", "digits", "--json", "{RO}/e.json"),
    "eval/class-count": C("eval", "{CKPT}", "--data", "imagefolder:{FOLDER2}"),
    "eval/zero-byte-jpg": C("eval", "{CKPT}", "--data", "imagefolder:{ZERO_FOLDER}", "--json", "{JSON}"),
    "eval/skip-bad": C("eval", "{CKPT}", "--data", "imagefolder:{ZERO_FOLDER}", "--skip-bad", code=0),
    "eval/link-loop": C("eval", "{CKPT}", "--data", "imagefolder:{LOOP_FOLDER}", "--json", "{JSON}"),
    "eval/bomb-image": C("eval", "{CKPT}", "--data", "imagefolder:{BOMB_FOLDER}"),
    "eval/class-map-malformed": C("eval", "{CKPT}", "--data", "imagefolder:{DIGIT_FOLDER}", "--class-map", "{BADMAP}"),
    "eval/class-map-other-names": C("eval", "{CKPT}", "--data", "imagefolder:{DIGIT_FOLDER}", "--class-map",
                                    "{WORDMAP}"),
    "eval/ctrl-c": C("eval", "{CKPT}", "--data", "digits", "--json", "{JSON}", code=130,
                     interrupt="mixer_edge.train.evaluate:evaluate"),
    # calib make
    "calib/ckpt-missing": C("calib", "make", "{MISSING}", "--data", "digits", "--out", "{OUT}/c.npz"),
    "calib/size-0": C("calib", "make", "{CKPT}", "--data", "digits", "--size", "0", "--out", "{OUT}/c.npz"),
    "calib/size-huge": C("calib", "make", "{CKPT}", "--data", "digits", "--size", "99999999", "--out", "{OUT}/c.npz"),
    "calib/out-not-npz": C("calib", "make", "{CKPT}", "--data", "digits", "--size", "10", "--out", "{OUT}/c.txt"),
    "calib/out-is-folder": C("calib", "make", "{CKPT}", "--data", "digits", "--size", "10", "--out", "{NPZDIR}"),
    "calib/out-below-file": C("calib", "make", "{CKPT}", "--data", "digits", "--size", "10", "--out", "{FILE}/c.npz"),
    "calib/out-readonly": C("calib", "make", "{CKPT}", "--data", "digits", "--size", "10", "--out", "{RO}/c.npz"),
    "calib/corrupt-image": C("calib", "make", "{CKPT}", "--data", "folder:{CORRUPT_FOLDER}/a", "--out", "{OUT}/c.npz"),
    "calib/zero-byte-jpg": C("calib", "make", "{CKPT}", "--data", "folder:{ZERO_FOLDER}", "--size", "2", "--out",
                             "{OUT}/c.npz"),
    "calib/class-map-missing": C("calib", "make", "{CKPT}", "--data", "digits", "--class-map", "{MISSING}.txt",
                                 "--out", "{OUT}/c.npz"),
    "calib/ctrl-c": C("calib", "make", "{CKPT}", "--data", "digits", "--size", "10", "--out", "{OUT}/c.npz", code=130,
                      interrupt="mixer_edge.calibration.sets:atomic_write_bytes"),
    # export
    "export/ckpt-missing": C("export", "{MISSING}", "--out", "{OUT}"),
    "export/ckpt-random": C("export", "{RANDOM}", "--out", "{OUT}"),
    "export/target-unknown": C("export", "{CKPT}", "--target", "nope", "--out", "{OUT}"),
    "export/precision-unknown": C("export", "{CKPT}", "--precision", "fp8", "--out", "{OUT}"),
    "export/int8-no-calib": C("export", "{CKPT}", "--int8", "--out", "{OUT}"),
    "export/int4-no-calib": C("export", "{CKPT}", "--int4", "--out", "{OUT}", says="calibration data"),
    "export/int4-block": C("export", "{CKPT}", "--int4", "--calib-data", "{CALIB}", "--int4-block", "48", "--out", "{OUT}",
                           says="power of two"),
    "export/int4-coreml-ios17": C("export", "{CKPT}", "--target", "coreml", "--int4", "--calib-data", "{CALIB}",
                                  "--out", "{OUT}", says="iOS18"),
    "export/int4-palette-onnx": C("export", "{CKPT}", "--target", "onnx", "--int4", "--int4-format", "palette",
                                  "--calib-data", "{CALIB}", "--out", "{OUT}", says="Core ML only"),
    "export/int4-format-unknown": C("export", "{CKPT}", "--int4", "--int4-format", "lut", "--calib-data", "{CALIB}",
                                    "--out", "{OUT}", says="palette"),
    "export/smooth-range": C("export", "{CKPT}", "--int8", "--calib-data", "{CALIB}", "--smooth", "2", "--out", "{OUT}"),
    "export/max-drop-negative": C("export", "{CKPT}", "--int8", "--calib-data", "{CALIB}", "--max-drop", "-1",
                                  "--out", "{OUT}"),
    "export/calib-size-0": C("export", "{CKPT}", "--int8", "--calib-data", "digits", "--calib-size", "0",
                             "--out", "{OUT}"),
    "export/out-is-file": C("export", "{CKPT}", "--out", "{FILE}"),
    "export/out-readonly": C("export", "{CKPT}", "--out", "{RO}/a"),
    "export/calib-missing": C("export", "{CKPT}", "--int8", "--calib-data", "{MISSING}.npz", "--out", "{OUT}"),
    "export/calib-random-npz": C("export", "{CKPT}", "--int8", "--calib-data", "{RANDOM_NPZ}", "--out", "{OUT}"),
    "export/calib-wrong-shape": C("export", "{CKPT}", "--int8", "--calib-data", "{C_SHAPE}", "--out", "{OUT}"),
    "export/calib-string-labels": pytest.param(
        C("export", "{CKPT}", "--int8", "--calib-data", "{C_STR_LABELS}", "--out", "{OUT}")),
    "export/calib-zero-byte-jpg": C("export", "{CKPT}", "--int8", "--calib-data", "folder:{ZERO_FOLDER}",
                                    "--calib-size", "2", "--out", "{OUT}"),
    "export/eval-link-loop": C("export", "{CKPT}", "--eval-data", "imagefolder:{LOOP_FOLDER}", "--out", "{OUT}"),
    "export/calib-sidecar-corrupt": pytest.param(
        C("export", "{CKPT}", "--int8", "--calib-data", "{C_SIDECAR}", "--out", "{OUT}")),
    "export/calib-sidecar-types": pytest.param(
        C("export", "{CKPT}", "--int8", "--calib-data", "{C_SIDECAR_TYPES}", "--out", "{OUT}")),
    "export/ctrl-c": C("export", "{CKPT}", "--out", "{OUT}", code=130,
                       interrupt="mixer_edge.export.golden:write"),
    # quant inspect
    "quant/ckpt-missing": C("quant", "inspect", "{MISSING}", "--calib-data", "digits"),
    "quant/calib-missing": C("quant", "inspect", "{CKPT}", "--calib-data", "mnist:{MISSING}"),
    "quant/calib-random-npz": C("quant", "inspect", "{CKPT}", "--calib-data", "{RANDOM_NPZ}"),
    "quant/smooth-range": C("quant", "inspect", "{CKPT}", "--calib-data", "{CALIB}", "--smooth", "-1"),
    "quant/out-is-file": C("quant", "inspect", "{CKPT}", "--calib-data", "{CALIB}", "--out", "{FILE}"),
    "quant/ctrl-c": C("quant", "inspect", "{CKPT}", "--calib-data", "{CALIB}", "--eval-size", "16", "--out", "{OUT}",
                      code=130, interrupt="mixer_edge.export.inspection:plot"),
    # predict
    "predict/model-missing": C("predict", "{MISSING}", "{PNG}"),
    "predict/model-is-file": C("predict", "{FILE}", "{PNG}"),
    "predict/image-missing": C("predict", "{ART}", "{MISSING}.png"),
    "predict/folder-no-images": C("predict", "{ART}", "{EMPTY}"),
    "predict/corrupt-image": C("predict", "{ART}", "{CORRUPT}"),
    "predict/bomb-image": C("predict", "{ART}", "{BOMB}"),
    "predict/zero-byte-jpg": C("predict", "{ART}", "{ZERO}"),
    "predict/ckpt-zero-byte-jpg": C("predict", "{CKPT}", "{ZERO}"),
    "predict/good-and-bad": C("predict", "{ART}", "{PNG}", "{CORRUPT}", "--json", "{JSON}", absent=()),
    "predict/skip-bad": C("predict", "{ART}", "{PNG}", "{CORRUPT}", "--skip-bad", code=0),
    "predict/skip-bad-nothing-readable": C("predict", "{ART}", "{ZERO}", "{CORRUPT}", "--skip-bad"),
    "predict/link-loop": C("predict", "{ART}", "{LOOP_FOLDER}"),
    "predict/folder-no-manifest": C("predict", "{DIGIT_FOLDER}", "{PNG}"),
    "predict/ckpt-bomb-image": C("predict", "{CKPT}", "{BOMB}"),
    "predict/modes": C("predict", "{ART}", "{CMYK}", "{PALETTE}", "{I16}", "{LA}", code=0),
    "predict/ckpt-modes": C("predict", "{CKPT}", "{CMYK}", "{PALETTE}", "{I16}", "{LA}", code=0),
    "predict/top-k-0": C("predict", "{ART}", "{PNG}", "--top-k", "0"),
    "predict/json-below-file": C("predict", "{ART}", "{PNG}", "--json", "{FILE}/p.json"),
    "predict/json-readonly": C("predict", "{ART}", "{PNG}", "--json", "{RO}/p.json"),
    "predict/tampered": C("predict", "{TAMPERED}", "{PNG}"),
    "predict/manifest-files-str": C("predict", "{M_FILES_STR}", "{PNG}"),
    "predict/manifest-preprocess-int": C("predict", "{M_PRE_INT}", "{PNG}"),
    "predict/manifest-classes-obj": C("predict", "{M_CLASSES_OBJ}", "{PNG}"),
    "predict/manifest-golden-outside": C("predict", "{M_GOLDEN_OUT}", "{PNG}"),
    "predict/manifest-fewer-classes": C("predict", "{M_FEWER_CLASSES}", "{PNG}"),
    "predict/manifest-not-json": C("predict", "{M_NOT_JSON}", "{PNG}"),
    "predict/runtime-missing": C("predict", "{TRT}", "{PNG}", code=3),   # the one table: as the device script
    "predict/ctrl-c": C("predict", "{ART}", "{PNG}", "--json", "{JSON}", code=130,
                        interrupt="mixer_edge.runtime.predict:ranked"),
    # bench
    "bench/item-missing": C("bench", "{MISSING}", "--data", "digits"),
    "bench/item-is-file": C("bench", "{FILE}", "--data", "digits"),
    "bench/data-missing": C("bench", "{ART}", "--data", "imagefolder:{MISSING}", *FAST),
    "bench/iters-0": C("bench", "{ART}", "--data", "digits", "--iters", "0"),
    "bench/duration-negative": C("bench", "{ART}", "--data", "digits", "--duration", "-1"),
    "bench/batch-sizes": C("bench", "{ART}", "--data", "digits", "--batch-sizes", "0,x"),
    "bench/limit-0": C("bench", "{ART}", "--data", "digits", "--limit", "0"),
    "bench/threads-0": C("bench", "{ART}", "--data", "digits", "--threads", "0"),
    "bench/json-readonly": C("bench", "{ART}", "--data", "digits", *FAST, "--json", "{RO}/r.json"),
    "bench/tampered": C("bench", "{TAMPERED}", "--data", "digits", *FAST),
    "bench/manifest-files-str": C("bench", "{M_FILES_STR}", "--data", "digits", *FAST),
    "bench/manifest-preprocess-int": C("bench", "{M_PRE_INT}", "--data", "digits", *FAST),
    "bench/manifest-classes-obj": C("bench", "{M_CLASSES_OBJ}", "--data", "digits", *FAST),
    "bench/manifest-no-classes": C("bench", "{M_CLASSES_NONE}", "--data", "digits", *FAST),
    "bench/manifest-input-null": C("bench", "{M_INPUT_NULL}", "--data", "digits", *FAST),
    "bench/manifest-schema": C("bench", "{M_SCHEMA}", "--data", "digits", *FAST),
    "bench/manifest-traversal": C("bench", "{M_TRAVERSAL}", "--data", "digits", *FAST),
    "bench/npz-random": C("bench", "{ART}", "--data", "{RANDOM_NPZ}", *FAST),
    "bench/corrupt-image": C("bench", "{ART}", "--data", "imagefolder:{CORRUPT_FOLDER}", *FAST),
    "bench/zero-byte-jpg": C("bench", "{ART}", "--data", "imagefolder:{ZERO_FOLDER}", *FAST, "--json", "{JSON}"),
    "bench/skip-bad": C("bench", "{ART}", "--data", "imagefolder:{ZERO_FOLDER}", "--skip-bad", *FAST, code=0),
    "bench/class-map-missing": C("bench", "{ART}", "--data", "digits", "--class-map", "{MISSING}.json", *FAST),
    "bench/provider-missing": C("bench", "{ART}", "--data", "digits", *FAST, "--provider", "CUDAExecutionProvider",
                                "--json", "{JSON}", code=3, absent=()),
    "bench/runtime-missing": C("bench", "{TRT}", "--data", "digits", *FAST, code=3, absent=()),
    "bench/ctrl-c": C("bench", "{ART}", "--data", "digits", *FAST, "--json", "{JSON}", code=130,
                      interrupt="mixer_edge.runtime.timing:time_calls"),
    # report
    "report/result-missing": C("report", "{MISSING}.json", "--out", "{OUT}"),
    "report/result-is-folder": C("report", "{DIR}", "--out", "{OUT}"),
    "report/result-random": C("report", "{RANDOM}", "--out", "{OUT}"),
    "report/result-foreign": C("report", "{R_MANIFEST}", "--out", "{OUT}"),
    "report/result-no-device": C("report", "{R_NO_DEVICE}", "--out", "{OUT}"),
    "report/result-types": C("report", "{R_TYPES}", "--out", "{OUT}"),
    "report/result-row-types": C("report", "{R_ROW_TYPES}", "--out", "{OUT}"),
    "report/budget-negative": C("report", "{RESULT}", "--budget", "-1", "--out", "{OUT}"),
    "report/out-below-file": C("report", "{RESULT}", "--out", "{FILE}/rep"),
    "report/out-readonly": C("report", "{RESULT}", "--out", "{RO}/rep"),
    "report/ctrl-c": C("report", "{RESULT}", "--out", "{OUT}", code=130,
                       interrupt="mixer_edge.bench.report:plot_throughput"),
    # trt build (no TensorRT here)
    "trt/artifact-missing": C("trt", "build", "{MISSING}"),
    "trt/not-tensorrt": C("trt", "build", "{ART}"),
    "trt/manifest-files-str": C("trt", "build", "{M_FILES_STR}"),
    "trt/no-tensorrt": C("trt", "build", "{TRT}"),
    # demo: the mistakes it refuses before any work
    "demo/epochs-0": C("demo", "--epochs", "0", "--out", "{OUT}"),
    "demo/out-is-file": C("demo", "--out", "{FILE}"),
    "demo/out-below-file": C("demo", "--out", "{FILE}/d"),
    # the device script, in this process and as a real one
    "device/artifact-missing": C("{MISSING}", "--data", "digits", via="edge"),
    "device/artifact-is-file": C("{FILE}", "--data", "digits", via="edge"),
    "device/no-data": C("{ART}", via="edge"),
    "device/data-missing": C("{ART}", "--data", "mnist:{MISSING}", via="edge"),
    "device/iters-0": C("{ART}", "--data", "digits", "--iters", "0", via="edge"),
    "device/limit-0": C("{ART}", "--data", "digits", "--limit", "0", via="edge"),
    "device/batch-sizes": C("{ART}", "--data", "digits", "--batch-sizes", "-1", via="edge"),
    "device/top-k-0": C("{ART}", "--predict", "{PNG}", "--top-k", "0", via="edge"),
    "device/predict-corrupt": C("{ART}", "--predict", "{CORRUPT}", via="edge"),
    "device/predict-bomb": C("{ART}", "--predict", "{BOMB}", via="edge"),
    "device/predict-zero-byte-jpg": C("{ART}", "--predict", "{PNG}", "{ZERO}", via="edge"),
    "device/predict-link-loop": C("{ART}", "--predict", "{LOOP_FOLDER}", via="edge"),
    "device/predict-runtime-missing": C("{TRT}", "--predict", "{PNG}", code=3, via="edge"),
    "device/predict-modes": C("{ART}", "--predict", "{CMYK}", "{PALETTE}", "{I16}", "{LA}", code=0, via="edge"),
    "device/json-below-file": C("{ART}", "--data", "digits", *FAST, "--json", "{FILE}/r.json", via="edge"),
    "device/json-readonly": C("{ART}", "--data", "digits", *FAST, "--json", "{RO}/r.json", via="edge"),
    "device/tampered": C("{TAMPERED}", "--data", "digits", *FAST, via="edge"),
    "device/manifest-files-str": C("{M_FILES_STR}", "--data", "digits", *FAST, via="edge"),
    "device/manifest-preprocess-int": C("{M_PRE_INT}", "--data", "digits", *FAST, via="edge"),
    "device/manifest-classes-obj": C("{M_CLASSES_OBJ}", "--data", "digits", *FAST, via="edge"),
    "device/manifest-input-null": C("{M_INPUT_NULL}", "--data", "digits", *FAST, via="edge"),
    "device/manifest-golden-outside": C("{M_GOLDEN_OUT}", "--data", "digits", *FAST, via="edge"),
    "device/manifest-not-object": C("{M_LIST}", "--data", "digits", *FAST, via="edge"),
    "device/provider-missing": C("{ART}", "--data", "digits", *FAST, "--provider", "CUDAExecutionProvider",
                                 "--json", "{JSON}", code=3, via="edge", absent=()),
    "device/runtime-missing": C("{TRT}", "--data", "digits", *FAST, code=3, via="edge"),
    "device/ctrl-c": C("{ART}", "--data", "digits", *FAST, "--json", "{JSON}", code=130, via="edge",
                       interrupt="mixer_edge.runtime.bench:measure_speed"),
    "script/manifest-preprocess-int": C("{M_PRE_INT}", "--data", "digits", *FAST, via="script"),
    "script/manifest-classes-obj": C("{M_CLASSES_OBJ}", "--data", "digits", *FAST, via="script"),
    "script/provider-missing": C("{ART}", "--data", "digits", *FAST, "--provider", "CUDAExecutionProvider",
                                 code=3, via="script"),
}


# issue 20: every reader refuses a manifest edited against its model file, and with --verify-key an
# artifact whose signature does not verify (altered and rehashed) or that is unsigned
EDITED = {"precision": "{M_PRECISION}", "shapes": "{M_SHAPES}", "class-count": "{M_CLASS_COUNT}",
          "threshold": "{M_THRESHOLD}"}
SIGNATURES = {"signature-bad": (("{FORGED}", "--verify-key", "{PUB}"), "its signature does not verify with"),
              "unsigned": (("{ART}", "--verify-key", "{PUB}"), "is unsigned (no artifact.sig)")}
NOT_ITS_FILE = "manifest.json does not match its files"
for _what, _art in EDITED.items():
    CASES[f"predict/manifest-{_what}-edited"] = C("predict", _art, "{PNG}", says=NOT_ITS_FILE)
    CASES[f"bench/manifest-{_what}-edited"] = C("bench", _art, "--data", "digits", *FAST, says=NOT_ITS_FILE)
    CASES[f"device/manifest-{_what}-edited"] = C(_art, "--data", "digits", *FAST, via="edge", says=NOT_ITS_FILE)
for _what, ((_art, *_key), _says) in SIGNATURES.items():
    CASES[f"predict/{_what}"] = C("predict", _art, "{PNG}", *_key, says=_says)
    CASES[f"bench/{_what}"] = C("bench", _art, "--data", "digits", *FAST, *_key, says=_says)
    CASES[f"device/{_what}"] = C(_art, "--data", "digits", *FAST, *_key, via="edge", says=_says)
    CASES[f"device/predict-{_what}"] = C(_art, "--predict", "{PNG}", *_key, via="edge", says=_says)
CASES.update({
    "script/manifest-precision-edited": C("{M_PRECISION}", "--data", "digits", *FAST, via="script",
                                          says="precision: manifest.json says 'fp16', model.onnx says 'fp32'"),
    "script/signature-bad": C("{FORGED}", "--data", "digits", *FAST, "--verify-key", "{PUB}", via="script",
                              says="files changed: binding.json, mixer_edge_runtime/labels.py"),
    "trt/manifest-precision-edited": C("trt", "build", "{M_PRECISION}", says=NOT_ITS_FILE),
    "trt/unsigned": C("trt", "build", "{TRT}", "--verify-key", "{PUB}", says="is unsigned"),
    "report/artifact-manifest-edited": C("report", "{R_EDITED_ARTIFACT}", "--out", "{OUT}", says=NOT_ITS_FILE),
    "report/row-precision-edited": C("report", "{R_ROW_PRECISION}", "--out", "{OUT}",
                                     says="says onnx int8, but the artifact it measured"),
})

# issue 20: the user's files are safe: an --out holding another run or other files is refused before any work
MAKERS.update({
    "RUN_COPY": lambda m, t: Path(shutil.copytree(m["CKPT"], t / "run")),
})
CASES.update({
    "train/out-holds-another-run": C("train", "--data", "digits", "--model", "T/4", "--out", "{RUN_COPY}",
                                     says="holds another training run (model.safetensors, model.json"),
    "train/out-holds-other-files": C("train", "--data", "digits", "--out", "{FOLDER2}",
                                     says="is not empty and holds no training run (a, b)"),
    "export/out-holds-images": C("export", "{CKPT}", "--target", "onnx", "--out", "{FOLDER2}",
                                 says="holds files that are not mixer-edge artifacts (a, b)"),
})


def _fill(argv, made: dict, tmp: Path) -> list[str]:
    """Placeholders -> paths; inputs are made on first use."""
    paths = {}

    def path(match):
        name = match[1]
        if name not in paths:
            paths[name] = made[name] if name in made else MAKERS[name](made, tmp)
        return str(paths[name])
    return [re.sub(r"\{(\w+)\}", path, a) for a in argv]


def _interrupt(monkeypatch, where: str) -> None:
    import importlib

    module, name = where.split(":")

    def interrupted(*a, **k):
        raise KeyboardInterrupt
    monkeypatch.setattr(importlib.import_module(module), name, interrupted)


def _run(case: Case, argv: list[str], capsys) -> tuple[int, str]:
    if case.via == "script":
        script = Path(argv[0]) / "edge_bench.py"   # the launcher the artifact carries, its runtime beside it
        done = subprocess.run([sys.executable, str(script), *argv], capture_output=True, text=True, timeout=120)
        return done.returncode, done.stderr
    try:
        code = (main if case.via == "cli" else device_main)(argv)
    except SystemExit as e:   # argparse's own usage errors
        code = e.code
    return code, capsys.readouterr().err


ERROR_LINE = re.compile(r"^(error: |[\w.\- ]+: error: )")   # ours, or argparse's "PROG: error: "


def assert_clean(code: int, err: str, want: int, tmp: Path, absent=()) -> None:
    """The exit code; one error line unless it succeeded; no traceback; nothing half-written."""
    errors = [line for line in err.splitlines() if ERROR_LINE.match(line)]
    assert "Traceback" not in err, err
    assert code == want, err
    assert len(errors) == (0 if want == 0 else 1), err
    leftovers = [p for p in tmp.rglob("*") if p.name.endswith(".tmp") or ".partial-" in p.name or ".old-" in p.name]
    assert not leftovers, leftovers
    kept = [p for p in absent if (tmp / p).exists() and not ((tmp / p).is_dir() and not any((tmp / p).iterdir()))]
    assert not kept, (kept, err)   # an empty folder is allowed: nothing was written into it


@pytest.mark.parametrize("case", list(CASES.values()), ids=list(CASES))
def test_mistake(case: Case, made, tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)   # a mistaken relative path lands here, not in the repository
    argv = _fill(case.argv, made, tmp_path)
    if case.interrupt:
        _interrupt(monkeypatch, case.interrupt)
    try:
        code, err = _run(case, argv, capsys)
    finally:
        for p in tmp_path.rglob("*"):   # let pytest clean up read-only folders
            if p.is_dir():
                p.chmod(0o755)
    assert_clean(code, err, case.code, tmp_path, case.absent if case.code else ())
    assert case.says in err, err


# ---- beyond the matrix: the one-line listing, simulated permissions, a plan that goes on ---------------

def test_manifest_problems_are_listed_in_one_line(made, tmp_path):
    folder = _mutated(made, tmp_path, lambda d: d.update(files="x", preprocess=3, classes={}))
    with pytest.raises(BadInput) as e:
        read_manifest(folder)
    text = str(e.value)
    assert "\n" not in text and "files" in text and "preprocess" in text and "classes" in text, text
    assert "expected" in text and "'x'" in text   # what arrived, what is accepted


def test_unwritable_output_is_refused_before_the_work(made, tmp_path, capsys, monkeypatch):
    """A folder this process may not write in (simulated: root may write anywhere) is refused
    before the benchmark runs, not after."""
    ro = tmp_path / "ro"
    ro.mkdir()
    real = os.access
    monkeypatch.setattr(os, "access", lambda p, mode, **k: False if Path(p) == ro else real(p, mode, **k))
    _interrupt(monkeypatch, "mixer_edge.bench.harness:benchmark")   # would say 130 had the work begun
    code = main(["bench", str(made["ART"]), "--data", "digits", "--json", str(ro / "r.json")])
    err = capsys.readouterr().err
    assert code == 2 and "cannot write" in err and str(ro) in err, err


def test_structural_check_failure_fails_one_artifact_and_the_plan_goes_on(made, tmp_path, capsys, monkeypatch):
    """A TensorRT ONNX that breaks the FP16 rules fails that artifact (exit 1, nothing kept of it);
    the ONNX artifact after it in the plan is still exported."""
    from mixer_edge.export import tensorrt

    monkeypatch.setattr(tensorrt, "check_fp16_model", lambda *a, **k: ["a rule is broken"])
    out = tmp_path / "out"
    code = main(["export", str(made["CKPT"]), "--target", "tensorrt,onnx", "--fp16", "--out", str(out)])
    captured = capsys.readouterr()
    assert_clean(code, captured.err, 1, tmp_path)
    assert "tensorrt-fp16" in captured.out and "a rule is broken" in captured.out
    assert sorted(p.name for p in out.iterdir()) == ["onnx-fp16"]


def test_ctrl_c_between_the_calibration_files_keeps_neither(made, tmp_path, capsys, monkeypatch):
    _interrupt(monkeypatch, "mixer_edge.calibration.sets:atomic_write_json")
    out = tmp_path / "c.npz"
    code = main(["calib", "make", str(made["CKPT"]), "--data", "digits", "--size", "10", "--out", str(out)])
    assert_clean(code, capsys.readouterr().err, 130, tmp_path, absent=("c.npz", "c.json"))
