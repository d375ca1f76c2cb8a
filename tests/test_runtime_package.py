"""The device runtime as a package (mixer_edge/runtime): what it may import, the launchers every
artifact carries, the copy in an artifact byte for byte the package's own files, and that copy
running where neither torch nor mixer-edge is installed, as a script and as `import edge_bench`."""
from __future__ import annotations

import ast
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from conftest import block_imports
from mixer_edge.export.artifact import LAUNCHERS, RUNTIME_DIR, RUNTIME_PACKAGE, runtime_files

ROOT = Path(__file__).resolve().parents[1]
MODULES = sorted(RUNTIME_DIR.rglob("*.py"))
ALLOWED = set(sys.stdlib_module_names) | {"numpy", "PIL", "onnxruntime", "openvino", "tensorrt", "coremltools",
                                          "cuda", "pycuda", "torch",   # GPU buffers, each tried in turn
                                          "sklearn"}                   # only for `--data digits`, imported there
LAUNCHER_PACKAGE = "mixer_edge_runtime"   # what a launcher imports in an artifact folder


def _imports(path: Path):
    tree = ast.parse(path.read_text())
    for n in ast.walk(tree):
        if isinstance(n, ast.Import):
            yield from ((a.name, 0) for a in n.names)
        elif isinstance(n, ast.ImportFrom):
            yield n.module or "", n.level


@pytest.mark.parametrize("path", MODULES, ids=lambda p: str(p.relative_to(RUNTIME_DIR)))
def test_runtime_imports_only_the_standard_library_numpy_pillow_and_runtimes(path):
    absolute = {m.split(".")[0] for m, level in _imports(path) if level == 0}
    if path.name in LAUNCHERS:
        absolute.discard(LAUNCHER_PACKAGE)
    assert absolute <= ALLOWED, absolute - ALLOWED
    assert "mixer_edge" not in absolute   # inside the package everything is relative: it is copied as it is
    lazy = {n.args[0].value for n in ast.walk(ast.parse(path.read_text()))
            if isinstance(n, ast.Call) and getattr(n.func, "id", None) in ("require", "import_module")
            and n.args and isinstance(n.args[0], ast.Constant)}
    assert lazy <= ALLOWED, lazy - ALLOWED


def _is_sys_modules(node) -> bool:
    return isinstance(node, ast.Attribute) and node.attr == "modules" and getattr(node.value, "id", None) == "sys"


def test_no_module_patches_sys_modules():
    """Reading sys.modules is fine; writing to it (as edge_bench.py once did so that trt_build.py
    found the same module) is not: the launchers import one package, once."""
    for path in MODULES:
        for n in ast.walk(ast.parse(path.read_text())):
            stored = isinstance(n, (ast.Assign, ast.AugAssign, ast.Delete)) and any(
                isinstance(t, ast.Subscript) and _is_sys_modules(t.value)
                for t in (n.targets if hasattr(n, "targets") else [n.target]))
            called = isinstance(n, ast.Call) and isinstance(n.func, ast.Attribute) and _is_sys_modules(n.func.value) \
                and n.func.attr in ("setdefault", "update", "pop", "__setitem__")
            assert not (stored or called), f"{path}:{n.lineno}"


def test_every_runtime_module_has_its_test_file():
    """tests/test_runtime_<module>.py for each module (backends/* share test_runtime_backends.py)."""
    missing = []
    for rel in runtime_files():
        name = "backends" if rel.startswith("backends/") else Path(rel).stem
        if name == "__init__":
            continue
        if not (ROOT / "tests" / f"test_runtime_{name}.py").is_file():
            missing.append(rel)
    assert not missing, missing


def test_the_artifact_carries_the_package_byte_for_byte(digits_onnx_artifact):
    shipped = sorted(p.relative_to(digits_onnx_artifact) for p in digits_onnx_artifact.rglob("*.py"))
    listed = {f["path"] for f in json.loads((digits_onnx_artifact / "manifest.json").read_text())["files"]}
    assert [str(p) for p in shipped] == sorted(["edge_bench.py", *(f"{RUNTIME_PACKAGE}/{f}" for f in runtime_files())])
    for rel in shipped:
        source = RUNTIME_DIR / (rel.name if rel.parent == Path(".") else rel.relative_to(RUNTIME_PACKAGE))
        assert (digits_onnx_artifact / rel).read_bytes() == source.read_bytes(), rel
        assert str(rel) in listed   # hashed in the manifest like the model
    assert RUNTIME_PACKAGE == LAUNCHER_PACKAGE


def test_the_launcher_runs_and_imports_without_torch_or_mixer_edge(digits_onnx_artifact, tmp_path):
    pytest.importorskip("onnxruntime")
    from mixer_edge import load_data
    from mixer_edge.runtime.predict import load
    from PIL import Image

    images = load_data("digits").images[:4]
    for i, im in enumerate(images):
        Image.fromarray(im[..., 0]).save(tmp_path / f"{i}.png")
    env = block_imports(tmp_path, "torch", "mixer_edge")
    app = (f"import sys, json; sys.path.insert(0, {str(digits_onnx_artifact)!r}); import edge_bench; "
           f"m = edge_bench.load({str(digits_onnx_artifact)!r}); "
           f"print(json.dumps(m.predict([{', '.join(repr(str(tmp_path / f'{i}.png')) for i in range(4))}], top_k=2))); "
           "assert not {'torch', 'mixer_edge'} & set(sys.modules)")
    r = subprocess.run([sys.executable, "-c", app], env=env, cwd=tmp_path, capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    host = load(digits_onnx_artifact).predict(list(images), top_k=2)
    assert json.loads(r.stdout) == host
    r = subprocess.run([sys.executable, str(digits_onnx_artifact / "edge_bench.py"), str(digits_onnx_artifact),
                        "--predict", str(tmp_path / "0.png")], env=env, capture_output=True, text=True, timeout=120)
    assert r.returncode == 0 and r.stdout.startswith(str(tmp_path / "0.png") + ": "), r.stderr
    assert np.isclose(float(r.stdout.split()[2].rstrip(",")), host[0][0]["score"], atol=5e-4)   # to 3 places


def test_on_the_host_the_launcher_is_the_package_api():
    from mixer_edge.runtime import edge_bench, trt_build
    from mixer_edge.runtime.engine_cli import main as engine_main
    from mixer_edge.runtime.predict import Predictor, load

    assert edge_bench.load is load and edge_bench.Predictor is Predictor and trt_build.main is engine_main
