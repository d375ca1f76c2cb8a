"""A target defined here, in the test, and registered at run time: a stand-in runtime (numpy
running the Mixer from its own model file, model.npz) plugs into export, validation, the golden
check, `mixer-edge bench` and `mixer-edge predict` without any file of the package knowing it.
What makes it a target is its class: export, runtime backend, model file, launchers (base.Target).

The numpy Mixer is written here from the paper's block (not from mixer_edge's code), so validation
passing means it computes what PyTorch computes, to the FP32 tolerance (max |logit diff| <= 1e-4)."""
from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest
from PIL import Image

from mixer_edge.cli import main
from mixer_edge.export import registry
from mixer_edge.export.base import Capabilities, Exported, LoadedRunner, Status, runtime_runner
from mixer_edge.export.build import export_one
from mixer_edge.export.base import ExportSpec
from mixer_edge.runtime.artifact import listed
from mixer_edge.runtime.backends import Backend
from mixer_edge.runtime.errors import EXIT_NOT_RUN

special = pytest.importorskip("scipy.special")   # erf, for the exact GELU (scikit-learn brings scipy)


def layer_norm(x, w, b, eps):
    mu = x.mean(-1, keepdims=True)
    return (x - mu) / np.sqrt(((x - mu) ** 2).mean(-1, keepdims=True) + eps) * w + b


def mlp(x, p, name):
    h = x @ p[f"{name}.fc1.weight"].T + p[f"{name}.fc1.bias"]
    h = 0.5 * h * (1 + special.erf(h / np.sqrt(2)))                       # GELU, exact
    return h @ p[f"{name}.fc2.weight"].T + p[f"{name}.fc2.bias"]


def numpy_mixer(p: dict, cfg: dict, x: np.ndarray) -> np.ndarray:
    """x (B, C_in, H, W) -> logits (B, K): patches, N blocks of token then channel mixing, mean, head."""
    s = cfg["patch_size"]
    b, c_in, h, w = x.shape
    patches = x.reshape(b, c_in, h // s, s, w // s, s).transpose(0, 2, 4, 1, 3, 5).reshape(b, -1, c_in * s * s)
    t = patches @ p["stem.proj.weight"].reshape(len(p["stem.proj.weight"]), -1).T + p["stem.proj.bias"]   # (B, N, C)
    for i in range(cfg["num_layers"]):
        pre = f"blocks.{i}"
        y = layer_norm(t, p[f"{pre}.norm1.weight"], p[f"{pre}.norm1.bias"], cfg["ln_eps"]).transpose(0, 2, 1)
        t = t + mlp(y, p, f"{pre}.mlp_tokens").transpose(0, 2, 1)        # mix over patches
        t = t + mlp(layer_norm(t, p[f"{pre}.norm2.weight"], p[f"{pre}.norm2.bias"], cfg["ln_eps"]), p,
                    f"{pre}.mlp_channels")                                # mix over channels
    t = layer_norm(t, p["norm.weight"], p["norm.bias"], cfg["ln_eps"]).mean(1)
    return (t @ p["head.weight"].T + p["head.bias"]).astype(np.float32)


class ToyBackend:
    """The stand-in runtime: numpy on model.npz (float64 arithmetic, float32 logits)."""
    LIBRARY = None
    NEEDS = ()

    @staticmethod
    def load(folder, manifest, options) -> Backend:
        with np.load(listed(folder, manifest, "model.npz"), allow_pickle=False) as z:
            params = {k: z[k].astype(np.float64) for k in z.files}
        cfg = manifest["model"]["config"]
        return Backend(lambda x: numpy_mixer(params, cfg, np.asarray(x, np.float64)), {"threads": 1},
                       "numpy toy runtime", {"numpy": np.__version__})


class ToyTarget:
    name = "toy"
    capabilities = Capabilities(frozenset({"fp32"}), ("numpy",), "dev", "numpy (a test's stand-in runtime)")
    backend = ToyBackend
    model_file = "model.npz"
    simulation = "onnxruntime"
    launchers = ("edge_bench.py",)

    def status(self) -> Status:
        return Status(True, True)

    def export(self, checkpoint, spec, calib, out_dir) -> Exported:
        state = {k: v.detach().cpu().numpy() for k, v in checkpoint.model.state_dict().items()}
        np.savez(out_dir / self.model_file, **state)
        return Exported(files=(self.model_file,), details={"file": self.model_file, "runtime": "numpy"})

    def load_runner(self, artifact, threads: int | None = None) -> LoadedRunner:
        return runtime_runner(self.backend, artifact, threads=threads)

    def validation_runner(self, artifact) -> LoadedRunner:
        return self.load_runner(artifact)


@pytest.fixture
def toy():
    registry.register("toy", ToyTarget)
    yield
    registry.unregister("toy")


def test_registration_is_checked(toy):
    with pytest.raises(Exception, match="target name 'toy' is taken"):
        registry.register("toy", ToyTarget)
    with pytest.raises(Exception, match="target name 'trt' is taken"):
        registry.register("trt", ToyTarget)


def test_toy_target_exports_validates_benchmarks_and_predicts(toy, ck, val, digits_checkpoint, tmp_path, capsys):
    o = export_one(ck, "toy", ExportSpec("fp32"), None, tmp_path, validation=val)
    assert o.passed, o.problems
    v = o.validation
    assert v["checked_by"] == "own runtime" and v["runner"] == "numpy toy runtime" and v["max_abs_diff"] <= 1e-4
    m = o.artifact.manifest
    assert m["target"] == "toy" and m["golden"]["threshold_sqnr_db"] == 60.0
    assert {"model.npz", "edge_bench.py", "golden.npz"} <= {f["path"] for f in m["files"]}

    # the command line knows it too: export, then bench it beside PyTorch, then predict with it
    out = tmp_path / "cli"
    assert main(["export", str(digits_checkpoint), "--target", "toy", "--eval-data", "digits", "--out", str(out)]) == 0
    result = tmp_path / "bench.json"
    assert main(["bench", str(digits_checkpoint), str(out / "toy-fp32"), "--data", "digits", "--iters", "3",
                 "--warmup", "0", "--batch-sizes", "1", "--min-calls", "3", "--min-time", "0",
                 "--json", str(result)]) == 0
    eager, toy_row = json.loads(result.read_text())["results"]
    assert toy_row["status"] == "ok" and toy_row["device_check"]["status"] == "passed"
    assert toy_row["agreement"]["top1_agreement"] == 1.0 and toy_row["accuracy"] == eager["accuracy"]
    Image.fromarray(np.zeros((8, 8), np.uint8)).save(tmp_path / "blank.png")
    capsys.readouterr()
    assert main(["predict", str(out / "toy-fp32"), str(tmp_path / "blank.png"), "--top-k", "1"]) == 0
    assert capsys.readouterr().out.startswith(str(tmp_path / "blank.png") + ": ")

    # the device script knows only its own runtimes, and says so
    r = subprocess.run([sys.executable, str(out / "toy-fp32" / "edge_bench.py"), str(out / "toy-fp32"),
                        "--data", "digits", "--iters", "1"], capture_output=True, text=True, timeout=120)
    assert r.returncode == EXIT_NOT_RUN and "no runner for target 'toy'" in r.stderr
