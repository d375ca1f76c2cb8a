"""Data identity by content (issue 10): the same images give the same split, the same held-out
images and the same fingerprint whatever path, copy, order or file form they arrive in; validation
and device accuracy never use a training or calibration image; top-1 only where the data's labels
are the model's classes.

The references here are independent of the code under test: raw pixel bytes compared as Python
sets, the digits' own labels, and PyTorch's own arg-max."""
from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
from PIL import Image

from mixer_edge.cli import main
from mixer_edge.runtime.backends import Options
from mixer_edge.runtime.bench import bench_artifact
from mixer_edge.runtime.identity import unpack_keys
from mixer_edge.runtime.readers import read_data
from mixer_edge.runtime.timing import Settings


def _pixels(images) -> set[bytes]:
    """Each image as its raw bytes with its shape: an identity no mixer-edge code computes."""
    return {bytes(str(im.shape), "ascii") + np.ascontiguousarray(im).tobytes() for im in images}


@pytest.fixture(scope="module")
def digit_folders(tmp_path_factory):
    """The 1,797 digits as PNG class folders, a copy of that folder, and the same images as .npz
    in reverse order."""
    from mixer_edge import load_data

    d = load_data("digits")
    root = tmp_path_factory.mktemp("identity")
    folder = root / "digits-png"
    for i, (im, y) in enumerate(zip(d.images, d.labels)):
        (folder / d.classes[y]).mkdir(parents=True, exist_ok=True)
        Image.fromarray(im[..., 0]).save(folder / d.classes[y] / f"{i:04d}.png")
    shutil.copytree(folder, root / "copied")
    rev = slice(None, None, -1)
    np.savez(root / "digits.npz", images=d.images[rev], labels=d.labels[rev], classes=np.array(d.classes))
    return root


def _sources(root, monkeypatch):
    from mixer_edge.bench.harness import load_images

    monkeypatch.chdir(root)
    return {"digits": load_images("digits"),
            "absolute folder": load_images(f"imagefolder:{root / 'digits-png'}"),
            "relative folder": load_images("imagefolder:digits-png"),
            "copied folder": load_images(f"imagefolder:{root / 'copied'}"),
            "reversed .npz": load_images(str(root / "digits.npz"))}


def test_split_and_fingerprint_follow_content_not_path(digit_folders, monkeypatch):
    from mixer_edge.data.dataset import SplitSpec, take_split

    sources = _sources(digit_folders, monkeypatch)
    want = {s: _pixels(take_split(sources["digits"], s, SplitSpec()).images) for s in ("train", "calib", "eval")}
    assert [len(v) for v in want.values()] == [1438, 180, 179]
    for name, data in sources.items():
        assert data.fingerprint == sources["digits"].fingerprint, name
        for s in ("train", "calib", "eval"):
            assert _pixels(take_split(data, s, SplitSpec()).images) == want[s], (name, s)
    other = take_split(sources["digits"], "eval", SplitSpec(seed=1))
    assert _pixels(other.images) != want["eval"]          # the seed still matters
    assert sources["digits"].subset(np.arange(1796)).fingerprint != sources["digits"].fingerprint


def test_eval_on_a_copied_folder_holds_out_the_training_images(digit_folders, digits_checkpoint, tmp_path):
    """The training spec was 'digits'; the copy is another path and form: held out all the same."""
    from mixer_edge import load_checkpoint, load_data
    from mixer_edge.data.dataset import take_split

    spec = f"imagefolder:{digit_folders / 'copied'}"
    assert main(["eval", str(digits_checkpoint), "--data", spec, "--json", str(tmp_path / "r.json")]) == 0
    result = json.loads((tmp_path / "r.json").read_text())
    assert result["n"] == 179 and result["images"]["excluded"] == 1797 - 179
    ck = load_checkpoint(digits_checkpoint)
    held = take_split(load_data("digits"), "eval")
    # top-1 recomputed by hand from PyTorch on the eval split, with the digits' own labels
    import torch
    with torch.no_grad():
        pred = ck.model(torch.from_numpy(ck.preprocess(held.images))).argmax(1).numpy()
    assert result["top1"] == pytest.approx(float((pred == held.labels).mean()), abs=1e-12)


def _export(ck_dir, out, *extra):
    assert main(["export", str(ck_dir), "--target", "onnx", *extra, "--out", str(out)]) == 0
    return out


def test_device_script_on_copies_reports_the_held_out_images(digit_folders, digits_checkpoint, tmp_path):
    """FP32 artifact validated on 'digits'; the device reads a copied folder and a reversed .npz:
    both evaluate exactly the 179 images validation used, named by one fingerprint."""
    out = _export(digits_checkpoint, tmp_path / "a", "--eval-data", "digits")
    folder = out / "onnx-fp32"
    m = json.loads((folder / "manifest.json").read_text())
    images = m["validation"]["images"]
    assert images["n"] == 179 and images["excluded"] == 1797 - 179 and images["labels"] == "by name"
    for spec in (f"imagefolder:{digit_folders / 'copied'}", str(digit_folders / "digits.npz")):
        data = read_data(spec)
        entry, _ = bench_artifact(folder, data, Settings(iters=3, warmup=1, batch_sizes=(1,)), Options())
        assert entry["data"]["n"] == 179 and entry["data"]["fingerprint"] == images["fingerprint"], spec
        assert entry["data"]["reserved_in_data"] == 1797 - 179 and entry["data"]["reserved_included"] == 0
        assert entry["accuracy"]["top1"] == pytest.approx(m["validation"]["top1"], abs=1e-12)
    everything, _ = bench_artifact(folder, read_data(spec), Settings(iters=3, warmup=1, batch_sizes=(1,)),
                                      Options(), selection="all")
    assert everything["data"]["n"] == 1797 and everything["data"]["reserved_included"] == 1797 - 179


def test_validation_without_eval_data_is_disjoint_from_calibration_and_training(digit_folders, digits_checkpoint):
    """Before: INT8 validated on its own calibration images. Now one source gives both, apart."""
    from mixer_edge import load_checkpoint, load_data
    from mixer_edge.data.dataset import take_split
    from mixer_edge.export.plan import ExportPlan, prepare_data

    ck = load_checkpoint(digits_checkpoint)
    plan = ExportPlan(targets=("onnx",), precisions=("int8",), out_dir="unused", calib_size=120,
                      calib_data=f"imagefolder:{digit_folders / 'copied'}")   # not the training spec string
    calib, val = prepare_data(ck, plan)
    train = take_split(load_data("digits"), "train")
    val_rows = {r.tobytes() for r in val.x}
    assert not val_rows & {r.tobytes() for r in calib.x}
    assert not val_rows & {r.tobytes() for r in ck.preprocess(train.images)}
    assert len(val.x) == 179 and "calibration set" not in val.source
    assert val.about["fingerprint"] and val.about["n"] == 179


def test_int8_manifest_reserves_the_calibration_images(digits_checkpoint, tmp_path):
    """The device must not score the calibration images either: they are in the manifest's keys."""
    out = _export(digits_checkpoint, tmp_path / "q", "--int8", "--calib-data", "digits", "--calib-size", "120",
                  "--eval-data", "digits")
    m = json.loads((out / "onnx-int8" / "manifest.json").read_text())
    reserved = unpack_keys(m["images"]["reserved"], "test")
    assert len(reserved) == 1438 + 180        # training images and the calib split they were drawn from
    assert m["images"]["calibrated_n"] == 120 and m["calibration"]["fingerprint"]
    assert m["validation"]["images"]["n"] == 179


# ---- labels: by name, or top-1 is absent with the reason (label_map itself: test_runtime_labels.py) -----

def _digit_folder(root, names, images, labels):
    for i, (im, y) in enumerate(zip(images, labels)):
        (root / names[y]).mkdir(parents=True, exist_ok=True)
        Image.fromarray(im[..., 0]).save(root / names[y] / f"{i}.png")
    return root


def test_eval_matches_folder_names_to_model_classes(digits_checkpoint, tmp_path, capsys):
    """Folders '3' and '7' only: labels 0/1 by position, 3/7 by name. By name is right."""
    from mixer_edge import load_checkpoint, load_data
    from mixer_edge.data.dataset import take_split

    held = take_split(load_data("digits"), "eval")
    keep = np.isin(held.labels, [3, 7])
    root = _digit_folder(tmp_path / "two", {3: "3", 7: "7"}, held.images[keep], held.labels[keep])
    assert main(["eval", str(digits_checkpoint), "--data", f"imagefolder:{root}", "--json",
                 str(tmp_path / "r.json")]) == 0
    result = json.loads((tmp_path / "r.json").read_text())
    ck = load_checkpoint(digits_checkpoint)
    import torch
    with torch.no_grad():
        pred = ck.model(torch.from_numpy(ck.preprocess(held.images[keep]))).argmax(1).numpy()
    # independent: folder order is '3' then '7', so compare with labels in that order
    order = np.argsort(held.labels[keep], kind="stable")
    assert result["top1"] == pytest.approx(float((pred[order] == held.labels[keep][order]).mean()), abs=1e-12)
    assert result["top1"] > 0.8 and result["labels"] == "by name"

    words = ["zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine"]
    root = _digit_folder(tmp_path / "words", words, held.images, held.labels)
    capsys.readouterr()
    assert main(["eval", str(digits_checkpoint), "--data", f"imagefolder:{root}"]) == 2
    err = [ln for ln in capsys.readouterr().err.strip().splitlines() if not ln.startswith("threads: ")]
    assert len(err) == 1 and "[eight, five, four, nine, one" in err[0] and "[0, 1, 2, 3" in err[0]


def test_foreign_classes_give_no_top1_but_agreement(digits_checkpoint, tmp_path):
    """A model whose outputs carry no names, validated on a labelled folder of another class count:
    no top-1 (with the reason), agreement and SQNR still measured."""
    from dataclasses import replace

    from mixer_edge import load_checkpoint
    from mixer_edge.export.plan import ExportPlan, prepare_data

    ck = load_checkpoint(digits_checkpoint)
    foreign = replace(ck, meta={**ck.meta, "classes_named": False, "images": {}})
    root = _image_folder_of(tmp_path / "few", ("a", "b", "c"))
    plan = ExportPlan(targets=("onnx",), precisions=("fp32",), out_dir="unused", eval_data=f"imagefolder:{root}")
    _, val = prepare_data(foreign, plan)
    assert val.labels is None and "3 classes" in val.about["labels"] and "carry no names" in val.about["labels"]


def _image_folder_of(root, classes):
    rng = np.random.default_rng(0)
    for c in classes:
        (root / c).mkdir(parents=True)
        for i in range(4):
            Image.fromarray(rng.integers(0, 255, (8, 8), dtype=np.uint8)).save(root / c / f"{i}.png")
    return root
