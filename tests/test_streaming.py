"""Streaming image folders: a folder too large to decode into memory is read one image at a time
(runtime/streaming.ImageFiles), and every result is the one the same folder decoded in memory gives.

References are independent of the streaming code: the folder decoded eagerly (the pre-existing
path), scikit-learn's digits array the PNGs were written from, and predictions on one whole array.
"""
from __future__ import annotations

import os
import subprocess
import sys

import numpy as np
import pytest
from PIL import Image
from safetensors.torch import load_file

from mixer_edge import load_data
from mixer_edge.data.dataset import SplitSpec, split_indices, take_split
from mixer_edge.errors import BadInput
from mixer_edge.runtime import images as rt_images
from mixer_edge.runtime import streaming
from mixer_edge.runtime.artifact import read_manifest
from mixer_edge.runtime.backends import Options, load_backend
from mixer_edge.runtime.batching import run_batched, tile
from mixer_edge.runtime.bench import bench_artifact
from mixer_edge.runtime.identity import select
from mixer_edge.runtime.images import read_image
from mixer_edge.runtime.readers import Data, read_data
from mixer_edge.runtime.streaming import Batches, ImageFiles, model_inputs


def write_digits(root, n=None):
    """scikit-learn's 8x8 digits as grayscale PNGs, one sub-folder per class (the first n of them)."""
    from sklearn.datasets import load_digits

    d = load_digits()
    images = np.rint(d.images * (255.0 / 16.0)).astype(np.uint8)   # (N, 8, 8): the digits source's pixels
    n = len(images) if n is None else n
    for i in range(n):
        folder = root / str(d.target[i])
        folder.mkdir(parents=True, exist_ok=True)
        Image.fromarray(images[i]).save(folder / f"{i:04d}.png")
    return root


@pytest.fixture(scope="module")
def folder60(tmp_path_factory):
    return write_digits(tmp_path_factory.mktemp("digits60"), 60)


def read_both(spec, monkeypatch):
    """(eager, streamed) ImageSets of one spec: the threshold decides, nothing else differs."""
    eager = load_data(spec)
    with monkeypatch.context() as m:
        m.setattr(streaming, "STREAM_ABOVE_MB", 0)
        streamed = load_data(spec)
    assert isinstance(eager.images, np.ndarray) and isinstance(streamed.images, ImageFiles)
    return eager, streamed


@pytest.fixture
def count_decodes(monkeypatch):
    """A list that grows by one path per image the runtime decoder decodes."""
    seen = []
    real = read_image

    def counted(path):
        seen.append(path)
        return real(path)

    monkeypatch.setattr(rt_images, "read_image", counted)
    return seen


# ---- one folder, read eagerly or lazily: the same images ----------------------------------------

@pytest.mark.parametrize("kind", ["imagefolder", "folder"])
def test_lazy_and_eager_give_identical_pixels_keys_fingerprint_splits(folder60, tmp_path, monkeypatch, kind):
    root = folder60 if kind == "imagefolder" else tmp_path
    if kind == "folder":   # the same 60 PNGs, loose (unlabeled)
        for p in sorted(folder60.rglob("*.png")):
            (tmp_path / f"{p.parent.name}-{p.name}").write_bytes(p.read_bytes())
    eager, streamed = read_both(f"{kind}:{root}", monkeypatch)
    assert len(streamed) == len(eager) == 60
    for i in range(60):   # exact: one decoder, the same files
        assert np.array_equal(streamed.images[i], eager.images[i])
    assert np.array_equal(streamed.keys, eager.keys)
    assert streamed.fingerprint == eager.fingerprint
    # Independent reference: the digits source the PNGs were written from (order-free fingerprint).
    assert streamed.fingerprint == load_data("digits").subset(np.arange(60)).fingerprint
    assert streamed.classes == eager.classes
    assert (streamed.labels is None) == (kind == "folder")
    for seed in (0, 7):
        a, b = split_indices(eager, SplitSpec(seed=seed)), split_indices(streamed, SplitSpec(seed=seed))
        assert all(np.array_equal(a[s], b[s]) for s in ("train", "calib", "eval"))
        e, s = take_split(eager, "eval", SplitSpec(seed=seed)), take_split(streamed, "eval", SplitSpec(seed=seed))
        assert isinstance(s.images, ImageFiles) and s.describe() == e.describe()
        assert np.array_equal(np.stack(list(s.images)), e.images)


def test_streaming_is_chosen_by_the_estimated_decoded_size(folder60, monkeypatch):
    """60 images of 8 x 8 x 1 bytes: 3,840 bytes decoded. At exactly that threshold they stay in
    memory, a byte below it they stream; the environment variable overrides the constant."""
    spec = f"imagefolder:{folder60}"
    assert isinstance(load_data(spec).images, np.ndarray)                 # default: 256 MiB
    monkeypatch.setattr(streaming, "STREAM_ABOVE_MB", 3840 / 2 ** 20)
    assert isinstance(load_data(spec).images, np.ndarray)
    monkeypatch.setattr(streaming, "STREAM_ABOVE_MB", 3839 / 2 ** 20)
    assert isinstance(load_data(spec).images, ImageFiles)
    monkeypatch.setattr(streaming, "STREAM_ABOVE_MB", 256)
    monkeypatch.setenv(streaming.STREAM_ENV, "0")
    assert isinstance(load_data(spec).images, ImageFiles)
    monkeypatch.setenv(streaming.STREAM_ENV, "lots")
    with pytest.raises(BadInput, match="MIXER_EDGE_STREAM_ABOVE_MB='lots' is not a size; accepted: megabytes"):
        load_data(spec)


def test_image_files_index_like_an_array(folder60, monkeypatch):
    eager, streamed = read_both(f"imagefolder:{folder60}", monkeypatch)
    x = streamed.images
    idx = np.array([5, 0, 59, 5])
    assert isinstance(x[idx], ImageFiles) and isinstance(x[2:9], ImageFiles)
    assert np.array_equal(np.stack(list(x[idx])), eager.images[idx])
    assert np.array_equal(np.stack(list(x[2:9])), eager.images[2:9])
    assert np.array_equal(np.stack(list(x[eager.labels == 3])), eager.images[eager.labels == 3])
    assert np.array_equal(x[np.int64(-1)], eager.images[-1])
    assert len(x[np.array([], np.int64)]) == 0
    with pytest.raises(BadInput, match="indexed by an int, a slice or a 1-d index array, got"):
        x[np.zeros((2, 2), np.int64)]
    part = streamed.without(eager.keys[:10])
    assert isinstance(part.images, ImageFiles) and part.fingerprint == eager.without(eager.keys[:10]).fingerprint


# ---- nothing decodes more than it is asked for ---------------------------------------------------

def test_streaming_decodes_only_the_images_asked_for(folder60, monkeypatch, count_decodes):
    """Loading decodes one image (the size estimate); keys one pass; splits, subsets, describe and
    len none; an index one; calibration its drawn images; a preprocessed batch its batch."""
    from mixer_edge.calibration.sets import draw_calibration
    from mixer_edge.data.preprocess import Preprocess
    from mixer_edge.runtime.streaming import Batches

    monkeypatch.setattr(streaming, "STREAM_ABOVE_MB", 0)
    data = load_data(f"imagefolder:{folder60}")
    assert len(count_decodes) == 1
    data.keys
    assert len(count_decodes) == 61 and sorted(count_decodes[1:]) == sorted(data.images.paths)
    ev = take_split(data, "eval")
    ev.describe(), data.without(ev.keys), len(ev), data.subset(np.arange(30))
    assert len(count_decodes) == 61
    data.images[3]
    assert count_decodes[-1] == data.images.paths[3] and len(count_decodes) == 62
    pre = Preprocess.default(8, 1)
    calib = draw_calibration(data, pre, size=4, seed=0)
    assert len(count_decodes) == 66 and len(calib) == 4
    assert Batches(data.images, pre)[10:17].shape == (7, 1, 8, 8)
    assert len(count_decodes) == 73
    # The device runtime's held-out selection (the bench harness) keeps a streamed set lazy too.
    part, _ = select(Data(data.images, data.labels, data.classes, data.spec), "all", {}, 20, keys=data.keys)
    assert isinstance(part.images, ImageFiles) and len(part.images) == 20 and len(count_decodes) == 73


def test_calibration_from_a_streamed_folder_equals_the_eager_draw(folder60, monkeypatch):
    from mixer_edge.calibration.sets import draw_calibration
    from mixer_edge.data.preprocess import Preprocess

    eager, streamed = read_both(f"imagefolder:{folder60}", monkeypatch)
    pre = Preprocess.default(8, 1)
    a, b = (draw_calibration(d, pre, size=12, seed=3) for d in (eager, streamed))
    assert np.array_equal(a.x, b.x) and np.array_equal(a.keys, b.keys) and a.sha256 == b.sha256


# ---- training and evaluation on a streamed folder ------------------------------------------------

def _train(folder, out, workers=0):
    from mixer_edge.train import TrainConfig, train

    return train(TrainConfig(data=f"imagefolder:{folder}", out=str(out), model="T/2", epochs=1, batch_size=16,
                             lr=3e-3, warmup_epochs=0.5, workers=workers))


@pytest.fixture(scope="module")
def trained_eager(folder60, tmp_path_factory):
    out = tmp_path_factory.mktemp("eager")
    _train(folder60, out)
    return out


def test_training_on_a_streamed_folder_gives_the_eager_weights(folder60, trained_eager, tmp_path, monkeypatch):
    """Same seed, same pixels, same order: the weights agree to 1e-6 absolute per element (measured:
    exactly equal), with the images decoded in this process and in 2 DataLoader workers."""
    monkeypatch.setattr(streaming, "STREAM_ABOVE_MB", 0)
    assert isinstance(load_data(f"imagefolder:{folder60}").images, ImageFiles)
    a = load_file(str(trained_eager / "model.safetensors"))
    for workers in (0, 2):
        result = _train(folder60, tmp_path / f"w{workers}", workers)
        b = load_file(str(tmp_path / f"w{workers}" / "model.safetensors"))
        assert a.keys() == b.keys()
        assert max(float((a[k] - b[k]).abs().max()) for k in a) <= 1e-6
        assert result.metrics["train_n"] == 48 and result.metrics["eval_n"] == 6


def test_evaluation_in_batches_equals_the_whole_array(folder60, trained_eager, monkeypatch):
    """Logits of 7-image batches decoded from files against one 60-image array: within 1e-5
    (only the batch size, and so the summation blocking, differs); top-1 / top-5 identical."""
    from mixer_edge import load_checkpoint
    from mixer_edge.runtime.streaming import Batches
    from mixer_edge.train.evaluate import evaluate, predict_logits, topk_accuracy

    ck = load_checkpoint(trained_eager)
    eager, streamed = read_both(f"imagefolder:{folder60}", monkeypatch)
    whole = predict_logits(ck.model, ck.preprocess(eager.images), batch_size=1000)   # (60, 10)
    batched = predict_logits(ck.model, Batches(streamed.images, ck.preprocess), batch_size=7)
    np.testing.assert_allclose(batched, whole, rtol=1e-5, atol=1e-5)
    result = evaluate(ck, streamed, batch_size=7)
    assert {k: result[k] for k in ("top1", "top5")} == topk_accuracy(whole, eager.labels)
    assert result["n"] == 60


def test_export_validation_of_a_streamed_folder(folder60, trained_eager, monkeypatch, count_decodes, tmp_path):
    """prepare_validation with --eval-data a streamed folder: the preprocessed images an eager read
    gives, exactly, but made a batch at a time instead of held (above the threshold); the folder
    decoded once for keys, then only the validation images; an export validated on them reports
    the very figures the held images give."""
    from mixer_edge import load_checkpoint
    from mixer_edge.export.plan import ExportPlan, prepare_validation
    from mixer_edge.export.build import export_one
    from mixer_edge.export.base import ExportSpec
    from mixer_edge.runtime.streaming import Batches

    ck = load_checkpoint(trained_eager)
    plan = ExportPlan(targets=("onnx",), precisions=("fp32",), out_dir=".", eval_data=f"imagefolder:{folder60}")
    eager = prepare_validation(ck, plan, None, load_data)
    assert isinstance(eager.x, np.ndarray)                  # 60 digits: far below 256 MB, held
    count_decodes.clear()
    monkeypatch.setattr(streaming, "STREAM_ABOVE_MB", 0)
    streamed = prepare_validation(ck, plan, None, load_data)
    assert isinstance(streamed.x, Batches)                  # above the threshold: never one array
    # the folder's size estimate, the keys, the input's size estimate, the validation images (reference)
    assert len(count_decodes) == 1 + 60 + 1 + len(streamed.x)
    assert np.array_equal(streamed.x[0:len(streamed.x)], eager.x) and np.array_equal(streamed.reference, eager.reference)
    assert streamed.about == eager.about and isinstance(streamed.raw, ImageFiles)
    checks = [export_one(ck, "onnx", ExportSpec(precision="fp32"), None, tmp_path / name, validation=v).validation
              for name, v in (("held", eager), ("made", streamed))]
    keys = ("passed", "cosine", "sqnr_db", "top1_agreement", "max_abs_diff", "mean_abs_diff", "samples", "top1")
    assert checks[0]["passed"] and checks[0]["samples"] == len(eager.x) > 0   # the 60 less those trained on
    assert {k: checks[0][k] for k in keys} == {k: checks[1][k] for k in keys}


# ---- torchrun: two processes streaming match one ------------------------------------------------

def test_benchmarks_of_a_streamed_folder_equal_the_held_ones(folder60, trained_eager, monkeypatch, tmp_path):
    """The device script (bench_artifact on its own reader) and `mixer-edge bench` (the harness) on a
    folder above the threshold: the folder stays files, the model input is made a batch at a time,
    and the results' accuracy and image selection are the held run's exactly; the artifact's logits
    on the two inputs are equal to the bit (the same pixels through the same runtime)."""
    from mixer_edge import load_checkpoint
    from mixer_edge.bench import harness
    from mixer_edge.bench.harness import BenchConfig, benchmark
    from mixer_edge.export.base import ExportSpec
    from mixer_edge.export.build import export_one
    from mixer_edge.export.plan import ExportPlan, prepare_validation
    from mixer_edge.runtime import bench as device_bench
    from mixer_edge.runtime.timing import Settings

    ck, spec = load_checkpoint(trained_eager), f"imagefolder:{folder60}"
    plan = ExportPlan(targets=("onnx",), precisions=("fp32",), out_dir=".", eval_data=spec)
    export_one(ck, "onnx", ExportSpec(precision="fp32"), None, tmp_path, validation=prepare_validation(ck, plan, None, load_data))
    art = tmp_path / "onnx-fp32"
    settings = Settings(warmup=0, iters=2, batch_sizes=(1, 4), min_calls=1, min_seconds=0)
    inputs = []
    real = model_inputs
    for module in (device_bench, harness):   # the device script's benchmark, then the host's
        monkeypatch.setattr(module, "model_inputs", lambda images, prepare: inputs.append(real(images, prepare)) or inputs[-1])

    def bench_both():
        device, _ = bench_artifact(art, read_data(spec), settings, Options(), "all")
        host = benchmark([str(art)], BenchConfig(data=spec, settings=settings, images="all"))["results"][0]
        return [{k: entry[k] for k in ("status", "accuracy", "data")} for entry in (device, host)]

    held = bench_both()
    assert [type(x) for x in inputs] == [np.ndarray, np.ndarray] and held[0]["accuracy"]["n"] == 60
    monkeypatch.setattr(streaming, "STREAM_ABOVE_MB", 0)
    assert isinstance(read_data(spec).images, ImageFiles)   # the device script's reader streams too
    assert bench_both() == held
    assert [type(x) for x in inputs[2:]] == [Batches, Batches]
    backend = load_backend(art, read_manifest(art), Options())
    logits = [run_batched(backend.run, x, 7) for x in (inputs[0], inputs[2])]
    assert logits[0].shape == (60, 10) and np.array_equal(logits[0], logits[1])
    assert np.array_equal(tile(inputs[2], 70), tile(inputs[0], 70))   # the timed batches


def test_two_process_gloo_streaming_matches_single_process(tmp_path, monkeypatch):
    """test_train's two-process parity test on the 1,797 digits written as PNGs and streamed
    (MIXER_EDGE_STREAM_ABOVE_MB=0 reaches the torchrun children through the environment). Same
    tolerance: relative L2 error of the weights below 1e-3, at most one eval image flips."""
    from mixer_edge import load_checkpoint

    folder = write_digits(tmp_path / "digits")
    monkeypatch.setenv(streaming.STREAM_ENV, "0")   # what the children see: this folder streams
    assert isinstance(load_data(f"imagefolder:{folder}").images, ImageFiles)
    env = {**os.environ, "MIXER_EDGE_PROGRESS": "0", "OMP_NUM_THREADS": "1", streaming.STREAM_ENV: "0"}
    args = ["--data", f"imagefolder:{folder}", "--model", "T/2", "--epochs", "2", "--batch-size", "64",
            "--lr", "3e-3", "--warmup-epochs", "0.5", "--drop-path", "0", "--precision", "fp32"]   # as test_train's
    for name, extra in (("one", []), ("two", ["--nproc", "2"])):
        done = subprocess.run([sys.executable, "-m", "mixer_edge.cli", "train", *args, *extra,
                               "--out", str(tmp_path / name)], env=env, capture_output=True, text=True, timeout=300)
        assert done.returncode == 0, done.stderr[-2000:]
    one, two = load_checkpoint(tmp_path / "one"), load_checkpoint(tmp_path / "two")
    assert two.meta["metrics"]["processes"] == 2 and two.meta["metrics"]["eval_n"] == 179
    assert one.meta["images"]["data"]["fingerprint"] == load_data("digits").fingerprint   # the same images
    # ... and the same split: the keys each process hashed half of (distributed.share_keys)
    assert two.meta["images"] == one.meta["images"]
    w1, w2 = load_file(str(tmp_path / "one" / "model.safetensors")), load_file(str(tmp_path / "two" / "model.safetensors"))
    err = sum(float(((w1[k] - w2[k]) ** 2).sum()) for k in w1) ** 0.5
    ref = sum(float((w1[k] ** 2).sum()) for k in w1) ** 0.5
    assert err / ref < 1e-3
    assert abs(one.meta["metrics"]["eval_top1"] - two.meta["metrics"]["eval_top1"]) <= 1 / 179


def test_two_processes_meeting_a_bad_file_say_so_once(tmp_path):
    """A corrupt PNG in a streamed folder under --nproc 2: the process whose share holds it fails
    while hashing, every process raises it (share_keys gathers the error), and the user sees one
    error line naming the file, exit code 2, no traceback, nothing written, well before any timeout."""
    folder = write_digits(tmp_path / "digits", 200)
    bad = sorted(folder.rglob("*.png"))[5]   # hashed by the second process: each takes every other image
    bad.write_bytes(b"not a png")
    env = {**os.environ, "MIXER_EDGE_PROGRESS": "0", "OMP_NUM_THREADS": "1", streaming.STREAM_ENV: "0"}
    done = subprocess.run([sys.executable, "-m", "mixer_edge.cli", "train", "--data", f"imagefolder:{folder}",
                           "--model", "T/2", "--epochs", "1", "--nproc", "2", "--out", str(tmp_path / "out")],
                          env=env, capture_output=True, text=True, timeout=120)
    errors = [line for line in done.stderr.splitlines() if line.startswith("error:")]
    assert done.returncode == 2 and errors == [f"error: cannot read image {bad}: cannot identify image file '{bad}'; "
                                               f"--skip-bad leaves such files out"]
    assert "Traceback" not in done.stderr and not (tmp_path / "out").exists()
