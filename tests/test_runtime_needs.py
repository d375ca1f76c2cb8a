"""runtime/needs.py and the backends' NEEDS tables: what a device needs to run an artifact, one
table per backend, printed by the README's device sections and quoted by the scripts when
something is missing."""
from __future__ import annotations

import re
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

from conftest import block_imports
from mixer_edge.runtime.backends import NEEDS, Options
from mixer_edge.runtime.backends import coreml as coreml_backend
from mixer_edge.runtime.backends import cuda
from mixer_edge.runtime.backends import tensorrt as trt_backend
from mixer_edge.runtime.errors import EXIT_NOT_RUN, NotRunnable
from mixer_edge.runtime.images import read_image
from mixer_edge.runtime.needs import PILLOW, Need, install_hint, pil, require

ROOT = Path(__file__).resolve().parents[1]
SECTIONS = {"tensorrt": ("### On a Jetson (TensorRT)", "### On an x86-64 GPU host (TensorRT)"),
            "coreml": ("### On a Mac (Core ML)",)}


def readme_section(*headings: str) -> str:
    """The README's text under each heading, to the next heading, joined."""
    text = (ROOT / "README.md").read_text()
    starts = [text.index(h) for h in headings]
    return "".join(text[s:text.index("\n##", s + len(h))] for s, h in zip(starts, headings))


def test_install_hint_and_require_by_hand(monkeypatch):
    needs = (Need("x", "apt install x", "on a board"), Need("x", "pip install x", "elsewhere"), Need("y", "b", "c"))
    assert install_hint(needs, "x") == "apt install x (on a board); or pip install x (elsewhere)"
    assert install_hint(needs, "z") == "pip install z"   # not in the table: plain pip
    assert require("json", "anything") is sys.modules["json"]
    monkeypatch.setitem(sys.modules, "x", None)
    with pytest.raises(NotRunnable, match=re.escape("needs x for x artifacts (") + r".*" +
                       re.escape("); apt install x (on a board); or pip install x (elsewhere)")):
        require("x", "x artifacts", needs)


def test_needs_table_is_every_backend_with_a_table():
    assert set(NEEDS) == {"tensorrt", "coreml"} and NEEDS["coreml"] is coreml_backend.NEEDS


@pytest.mark.parametrize("target", list(NEEDS))
def test_readme_device_section_prints_every_install_line(target):
    section = readme_section(*SECTIONS[target])
    for need in NEEDS[target]:
        assert f"`{need.install}`" in section, need
    if target == "tensorrt":   # cuda-python for every CUDA major the message may name
        assert all(f"`{line}`" in section for line in cuda.CUDA_PYTHON.values())


def test_jetson_takes_tensorrt_from_jetpack_and_cuda_python_of_its_cuda_major():
    lines = {n.install for n in NEEDS["tensorrt"]}
    assert "sudo apt-get install python3-libnvinfer" in lines
    assert 'pip install "cuda-python>=12.6,<12.7"' in lines   # JetPack 6 is CUDA 12.6: its minor, not 12.9's
    pip_trt = [n for n in NEEDS["tensorrt"] if n.module == "tensorrt" and n.install.startswith("pip")]
    assert pip_trt and all(n.note.startswith("on an x86-64 Linux machine") for n in pip_trt)
    # by the driver's CUDA major: plain `tensorrt` is the CUDA 13 build, which needs driver r580
    assert [n.install for n in pip_trt] == ['pip install "tensorrt-cu12>=10,<12"', 'pip install "tensorrt-cu13>=10,<12"']


def test_tensorrt_extra_never_pulls_a_pip_tensorrt_onto_a_jetson():
    from packaging.requirements import Requirement

    extra = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["optional-dependencies"]["tensorrt"]
    trt = [Requirement(r) for r in extra if Requirement(r).name == "tensorrt-cu12"]   # driver r535+, not r580+
    assert len(trt) == 1 and trt[0].marker is not None
    assert not trt[0].marker.evaluate({"platform_machine": "aarch64", "sys_platform": "linux"})   # Jetson
    assert trt[0].marker.evaluate({"platform_machine": "x86_64", "sys_platform": "linux"})
    assert str(trt[0].specifier) == "<12,>=10"   # TensorRT 10.x / 11.x, as the engine builder builds


def test_missing_tensorrt_quotes_the_table(monkeypatch):
    monkeypatch.setitem(sys.modules, "tensorrt", None)
    with pytest.raises(NotRunnable) as e:
        trt_backend.import_tensorrt()
    assert install_hint(NEEDS["tensorrt"], "tensorrt") in str(e.value)
    assert "sudo apt-get install python3-libnvinfer (on a Jetson" in str(e.value)


@pytest.mark.parametrize("jetson, version, wanted, not_wanted", [
    (True, "12.6", ['pip install "cuda-python>=12.6,<12.7"', "pycuda", "JetPack 6 wheel"], []),
    (False, "12.6", ['pip install "cuda-python>=12,<13"', "pycuda"], ["12.7", "JetPack"]),   # an x86 host's 12.6
    (False, "12.8", ['pip install "cuda-python>=12,<13"', "torch"], ["JetPack"]),
    (True, None, [*cuda.CUDA_PYTHON.values(), cuda.JETPACK_6], [])])
def test_missing_gpu_buffers_name_cuda_python_of_the_cuda_major(monkeypatch, jetson, version, wanted, not_wanted):
    def absent():
        raise ImportError("not here")

    monkeypatch.setattr(cuda, "BUFFER_LIBRARIES", (("cuda-python", absent), ("torch", absent)))
    monkeypatch.setattr(cuda, "cuda_version", lambda: {"version": version, "source": "test"})
    monkeypatch.setattr(cuda, "is_jetson", lambda: jetson)
    with pytest.raises(NotRunnable) as e:
        cuda.gpu_buffers()
    assert all(line in str(e.value) for line in wanted), str(e.value)
    assert not any(word in str(e.value) for word in not_wanted), str(e.value)
    assert "cuda-python: not here; torch: not here" in str(e.value)


def test_core_ml_messages_quote_the_table(monkeypatch, tmp_path):
    manifest = {"export": {"coreml": {"specification_version": 8}}}
    monkeypatch.setattr(coreml_backend.platform, "system", lambda: "Linux")
    with pytest.raises(NotRunnable, match="needs macOS") as e:
        coreml_backend.load(tmp_path, manifest, Options())
    assert 'pip install "coremltools>=8,<10"' in str(e.value)
    monkeypatch.setattr(coreml_backend.platform, "system", lambda: "Darwin")
    monkeypatch.setattr(coreml_backend.platform, "mac_ver", lambda: ("13.6.1", ("", "", ""), "arm64"))
    with pytest.raises(NotRunnable, match=r"specification version 8\) needs macOS 14 or newer; this is macOS 13"):
        coreml_backend.load(tmp_path, manifest, Options())
    monkeypatch.setattr(coreml_backend.platform, "mac_ver", lambda: ("14.5", ("", "", ""), "arm64"))
    monkeypatch.setitem(sys.modules, "coremltools", None)
    with pytest.raises(NotRunnable) as e:
        coreml_backend.load(tmp_path, manifest, Options())
    assert str(e.value).startswith("needs coremltools for coreml artifacts") and install_hint(
        NEEDS["coreml"], "coremltools") in str(e.value)


def test_missing_pillow_says_how_to_install_it(monkeypatch, tmp_path):
    monkeypatch.setitem(sys.modules, "PIL", None)
    with pytest.raises(NotRunnable, match=re.escape('needs Pillow') + r".*" + re.escape(PILLOW)):
        pil()
    with pytest.raises(NotRunnable, match=re.escape('needs Pillow') + r".*" + re.escape(PILLOW)):
        read_image(tmp_path / "any.png")


def test_trt_build_script_without_tensorrt_quotes_the_table(ck, val, tmp_path):
    """The device script, run as on a Jetson without JetPack's bindings: exit 3 and the apt line."""
    from mixer_edge.export.base import ExportSpec
    from mixer_edge.export.build import export_one

    pytest.importorskip("onnxruntime")
    o = export_one(ck, "tensorrt", ExportSpec("fp32"), None, tmp_path, validation=val)
    env = block_imports(tmp_path, "tensorrt", "torch", "mixer_edge")
    r = subprocess.run([sys.executable, "trt_build.py", "."], cwd=o.dest, env=env, capture_output=True,
                       text=True, timeout=120)
    assert r.returncode == EXIT_NOT_RUN, r.stderr
    assert "sudo apt-get install python3-libnvinfer" in r.stderr and "tensorrt is not installed here" in r.stderr
