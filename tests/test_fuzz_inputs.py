"""Seeded fuzzing of the documents users hand over: a real artifact manifest.json, a real bench
result JSON and a real calibration sidecar (calib make's x.json beside x.npz). Each mutation
(a key deleted, a type changed, wrong nesting, a truncated file, random bytes, huge, negative and
odd numbers, odd Unicode, path traversal) must end in a success or a clean error: the documented
exit code with one `error:` line, or a MixerEdgeError from the library; never another exception.
All failures of a document kind are collected and reported together, with their seeds."""
from __future__ import annotations

import copy
import json
import random
import shutil
from pathlib import Path

import numpy as np
import pytest

from mixer_edge.cli import main
from mixer_edge.errors import MixerEdgeError
from mixer_edge.runtime.artifact import MANIFEST
from mixer_edge.runtime.cli import main as device_main
from mixer_edge.runtime.errors import EXIT_BAD_INPUT, EXIT_DEVICE_CHECK, EXIT_NOT_RUN, EXIT_OK

N_MANIFEST, N_RESULT, N_SIDECAR = 120, 60, 200
CLEAN_CODES = {EXIT_OK, EXIT_BAD_INPUT, EXIT_NOT_RUN, EXIT_DEVICE_CHECK}
FAST = ["--iters", "1", "--warmup", "0", "--batch-sizes", "1"]
HUGE_INT = "1" + "0" * 5000          # beyond Python's int-from-text limit: json.loads refuses it
ODD_VALUES = [None, True, False, 0, -1, 1.5, "", "x", [], {}, [1, 2], {"a": 1}, 1e308, -1e308, float("nan"),
              float("inf"), 10 ** 30, "\u202e\u0000\U0001F600", "\ud800"]
ODD_TEXT = ["", "ü", "\u202ertl", "\x00", "\U0001F600" * 50, "\ud800", "a" * 5000, "\\", "%s{0}"]
WAYS_OUT = ["../x", "/etc/passwd", "../../../../etc/passwd", "model.onnx/../../x", "./../model.onnx", "~/x",
            "C:\\x", "", "golden.npz\x00", "."]


# ---- mutations ----------------------------------------------------------------------------------------

def _nodes(doc, path=()):
    """(path, value) of every node of a JSON tree, the root first."""
    yield path, doc
    items = doc.items() if isinstance(doc, dict) else enumerate(doc) if isinstance(doc, list) else ()
    for key, value in items:
        yield from _nodes(value, (*path, key))


def _set(doc, path, value):
    if not path:
        return value
    parent = doc
    for key in path[:-1]:
        parent = parent[key]
    parent[path[-1]] = value
    return doc


def _pick(rng, doc, test=lambda p, v: True):
    """A random node passing test; every document fuzzed here has one of each kind asked for."""
    return rng.choice([(p, v) for p, v in _nodes(doc) if test(p, v)])


def _is_number(v) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool)


def _text(doc) -> bytes:
    return json.dumps(doc).encode()


KINDS = ("delete", "type", "nest", "truncate", "bytes", "huge", "negative", "unicode", "traversal", "deep")


def mutate(doc: dict, seed: int) -> tuple[str, bytes]:
    """One seeded mutation of doc: ("KIND: what was done", the bytes to write)."""
    rng = random.Random(seed)
    kind = rng.choice(KINDS)
    what, data = MUTATIONS[kind](rng, copy.deepcopy(doc))
    return f"{kind}: {what}", data


def _truncate(rng, doc):
    text = _text(doc)
    cut = rng.randrange(len(text))
    return f"at {cut}", text[:cut]


def _bytes(rng, doc):
    if rng.random() < 0.5:
        return "a whole file of them", rng.randbytes(rng.randrange(0, 300))
    text = _text(doc)
    at = rng.randrange(len(text))
    return f"inserted at {at}", text[:at] + rng.randbytes(rng.randrange(1, 64)) + text[at:]


def _deep(rng, doc):
    path, _ = _pick(rng, doc)
    depth = rng.choice([100, 1_000, 50_000])   # past the JSON parser's recursion limit at the last
    return f"{depth} lists deep at {path}", \
        _text(_set(doc, path, "@@DEEP@@")).replace(b'"@@DEEP@@"', b"[" * depth + b"]" * depth)


def _delete(rng, doc):
    path, _ = _pick(rng, doc, lambda p, v: bool(p) and isinstance(_parent(doc, p), dict))
    del _parent(doc, path)[path[-1]]
    return f"{path}", _text(doc)


def _type(rng, doc):
    path, old = _pick(rng, doc)
    value = rng.choice([v for v in ODD_VALUES if type(v) is not type(old)])
    return f"{value!r:.20} at {path}", _text(_set(doc, path, value))


def _nest(rng, doc):
    path, old = _pick(rng, doc)
    options = [[old], {"value": old}]
    if isinstance(old, (dict, list)) and old:   # and the reverse: a container replaced by its first item
        options.append(next(iter(old.values())) if isinstance(old, dict) else old[0])
    return f"at {path}", _text(_set(doc, path, rng.choice(options)))


def _huge(rng, doc):
    path, _ = _pick(rng, doc, lambda p, v: _is_number(v) and bool(p))
    if rng.random() < 0.3:   # written as text: json.dumps cannot write an int this long
        return f"{len(HUGE_INT)} digits at {path}", \
            _text(_set(doc, path, "@@HUGE@@")).replace(b'"@@HUGE@@"', HUGE_INT.encode())
    value = rng.choice([1e308, -1e308, 10 ** 30, 2 ** 64, float("inf"), float("nan"), 1e-320])
    return f"{value!r} at {path}", _text(_set(doc, path, value))


def _negative(rng, doc):
    path, old = _pick(rng, doc, lambda p, v: _is_number(v) and bool(p))
    return f"at {path}", _text(_set(doc, path, -abs(old) - rng.choice([0, 1, 0.5])))


def _unicode(rng, doc):
    path, _ = _pick(rng, doc, lambda p, v: isinstance(v, str))
    value = rng.choice(ODD_TEXT)
    return f"{value[:20]!r} at {path}", _text(_set(doc, path, value))


def _traversal(rng, doc):
    named = [p for p, v in _nodes(doc) if isinstance(v, str) and p and p[-1] in ("path", "file", "artifact")]
    path = rng.choice(named) if named else _pick(rng, doc, lambda p, v: isinstance(v, str))[0]
    value = rng.choice(WAYS_OUT)
    return f"{value!r} at {path}", _text(_set(doc, path, value))


MUTATIONS = {"delete": _delete, "type": _type, "nest": _nest, "truncate": _truncate, "bytes": _bytes,
             "huge": _huge, "negative": _negative, "unicode": _unicode, "traversal": _traversal, "deep": _deep}


def _parent(doc, path):
    for key in path[:-1]:
        doc = doc[key]
    return doc


# ---- running the consumers ------------------------------------------------------------------------

def _cli(capsys, call, argv) -> str | None:
    """None when the program ended cleanly; else what went wrong."""
    try:
        code = call(argv)
    except SystemExit as e:
        code = e.code
    except Exception as e:  # noqa: BLE001 - the point: nothing else may escape
        return f"{type(e).__name__}: {e}"
    err = capsys.readouterr().err
    errors = [line for line in err.splitlines() if line.startswith("error: ")]
    if code not in CLEAN_CODES or "Traceback" in err or len(errors) != (code != 0):
        return f"exit {code}, stderr {err[-300:]!r}"
    return None


def _fuzz(n: int, doc: dict, write, run) -> list[str]:
    failures = []
    for seed in range(n):
        what, data = mutate(doc, seed)
        write(data)
        problem = run(seed)
        if problem:
            failures.append(f"seed {seed} ({what}): {problem}")
    return failures


@pytest.fixture(scope="module")
def png(tmp_path_factory) -> Path:
    from PIL import Image

    path = tmp_path_factory.mktemp("fuzz-img") / "digit.png"
    Image.fromarray(np.random.default_rng(0).integers(0, 255, (8, 8), dtype=np.uint8)).save(path)
    return path


@pytest.fixture(scope="module")
def tiny_data(tmp_path_factory) -> Path:
    from mixer_edge.runtime.readers import read_digits

    d = read_digits()
    path = tmp_path_factory.mktemp("fuzz-data") / "eight.npz"
    np.savez(path, images=d.images[-8:], labels=d.labels[-8:])
    return path


def test_manifest_mutations(digits_onnx_artifact, png, tiny_data, tmp_path, capsys):
    folder = tmp_path / "onnx-fp32"
    shutil.copytree(digits_onnx_artifact, folder)
    original = json.loads((folder / MANIFEST).read_text())
    a, p, d = str(folder), str(png), str(tiny_data)
    consumers = [  # the device script, the host's predict and bench, as users run them
        (device_main, [a, "--predict", p]),
        (device_main, [a, "--data", d, *FAST, "--images", "all"]),
        (main, ["predict", a, p]),
        (main, ["bench", a, "--data", d, *FAST, "--images", "all"]),
    ]
    failures = _fuzz(N_MANIFEST, original, (folder / MANIFEST).write_bytes,
                     lambda seed: _cli(capsys, *consumers[seed % len(consumers)]))
    assert not failures, f"{len(failures)} of {N_MANIFEST}:\n" + "\n".join(failures)
    assert not list(tmp_path.rglob("*.tmp"))


def test_result_mutations(digits_bench_result, tmp_path, capsys):
    path, out = tmp_path / "result.json", tmp_path / "report"
    original = json.loads(digits_bench_result.read_text())
    failures = _fuzz(N_RESULT, original, path.write_bytes,
                     lambda seed: _cli(capsys, main, ["report", str(path), str(digits_bench_result), "--out", str(out)]))
    assert not failures, f"{len(failures)} of {N_RESULT}:\n" + "\n".join(failures)
    assert not list(tmp_path.rglob("*.tmp"))


def test_calibration_sidecar_mutations(digits_calib_file, ck, tmp_path):
    from mixer_edge.calibration.sets import load_calibration

    path = tmp_path / "calib.npz"
    shutil.copy(digits_calib_file, path)
    original = json.loads(digits_calib_file.with_suffix(".json").read_text())

    def load(seed):
        try:
            load_calibration(path, ck.preprocess)
        except MixerEdgeError:
            return None
        except Exception as e:  # noqa: BLE001 - the point: nothing else may escape
            return f"{type(e).__name__}: {str(e)[:200]}"
        return None

    failures = _fuzz(N_SIDECAR, original, path.with_suffix(".json").write_bytes, load)
    assert not failures, f"{len(failures)} of {N_SIDECAR}:\n" + "\n".join(failures)


def test_mutations_are_seeded_and_varied(digits_bench_result):
    doc = json.loads(digits_bench_result.read_text())
    assert [mutate(doc, s) for s in range(20)] == [mutate(doc, s) for s in range(20)]
    assert {mutate(doc, s)[0].split(":")[0] for s in range(200)} == set(KINDS)
