"""runtime/schema.py: the shape language (every problem found, each saying what arrived and what is
accepted, at its place), the manifest's and the result's shapes, and what a manifest's parts must
agree on."""
from __future__ import annotations

import math

import pytest

from mixer_edge.runtime.errors import BadInput
from mixer_edge.runtime.schema import (MANIFEST_SHAPE, MAX_SHOWN, NAME, NUMBER, PRECISIONS, RESULT_SHAPE, TEXT,
                                       check_document, each, ints, manifest_problems, maybe, one_of,
                                       shape_problems, when)

GOOD = {"target": "onnx", "precision": "fp32", "files": [{"path": "model.onnx", "sha256": "0" * 64}],
        "preprocess": {"size": [8, 8], "channels": 1, "mean": [0.5], "std": [0.5]}, "classes": ["a", "b"],
        "input": {"shape": ["batch", 1, 8, 8]}, "output": {"shape": ["batch", 2]}, "versions": {}}


def test_a_good_manifest_has_no_problem():
    assert shape_problems(GOOD, MANIFEST_SHAPE) == [] and manifest_problems(GOOD) == []
    check_document(GOOD, "m.json", MANIFEST_SHAPE, manifest_problems)


def test_problems_name_the_place_what_arrived_and_what_is_accepted():
    shape = {"a": ints(1, 3), "b?": [TEXT], "c": (NUMBER, NUMBER), "d": {"e": one_of("x", "y")}}
    doc = {"a": 7, "b": ["ok", 5], "c": [1.0], "d": {"e": "z"}}
    assert shape_problems(doc, shape) == [
        "a is an integer 7, expected an integer 1..3",
        "b[1] is an integer 5, expected a string",
        "c is a list [1.0], expected a list of 2",
        "d.e is a string 'z', expected one of x, y"]
    assert shape_problems({}, shape) == ["a is missing", "c is missing", "d is missing"]   # "b?" may be absent
    assert shape_problems([], shape) == ["the document is a list [], expected an object with a, c, d"]


def test_leaves_refuse_what_json_can_spell_but_a_reader_cannot_use():
    assert shape_problems(True, ints(0, 9)) and shape_problems(float("nan"), NUMBER)   # bool is not an int
    assert shape_problems(math.inf, NUMBER) and shape_problems("", NAME) and not shape_problems(None, maybe(NAME))
    assert shape_problems("x" * 100, ints(0, 1))[0].endswith("expected an integer 0..1")
    assert "..." in shape_problems("x" * 100, ints(0, 1))[0]   # long values are cut short in the message
    table = each(NUMBER)
    assert table({"a": 1.0, "b": "2"}, "t") == ["t.b is a string '2', expected a finite number"]
    pick = when(lambda v: v.get("kind") == "n", {"n": NUMBER}, {"s": TEXT})
    assert pick({"kind": "n", "n": 1}, "p") == [] and pick({"kind": "s"}, "p") == ["p.s is missing"]


def test_one_error_lists_every_problem_in_one_line():
    doc = {k: 3 for k in "abcdefghij"}
    with pytest.raises(BadInput) as e:
        check_document(doc, "doc.json", {k: TEXT for k in "abcdefghij"})
    text = str(e.value)
    assert text.startswith("doc.json: a is an integer 3, expected a string; ") and "\n" not in text
    assert text.endswith(f"; and {10 - MAX_SHOWN} more")


@pytest.mark.parametrize("edit, problem", [
    (lambda m: m["preprocess"].update(mean=[0.1, 0.2]), "preprocess.mean has 2 values, expected 1"),
    (lambda m: m.update(classes=[]), "classes is empty"),
    (lambda m: m.update(input={"shape": ["batch", 3, 8, 8]}), "input.shape ['batch', 3, 8, 8] does not match"),
    (lambda m: m.update(output={"shape": ["batch", 5]}), "output.shape ['batch', 5] has 5 classes but classes lists 2"),
])
def test_manifest_parts_must_agree(edit, problem):
    m = {**GOOD, "preprocess": dict(GOOD["preprocess"])}
    edit(m)
    assert shape_problems(m, MANIFEST_SHAPE) == [] and any(p.startswith(problem) for p in manifest_problems(m)), \
        manifest_problems(m)


def test_precision_and_result_shapes():
    assert PRECISIONS == ("fp32", "fp16", "int8", "int4")
    assert shape_problems({**GOOD, "precision": "fp8"}, MANIFEST_SHAPE) == [
        "precision is a string 'fp8', expected one of fp32, fp16, int8, int4"]
    result = {"device": {"name": "board"}, "results": [{"name": "a", "target": "onnx", "precision": "int8",
                                                        "status": "ok", "accuracy": {"top1": 1.5}}]}
    assert shape_problems(result, RESULT_SHAPE) == ["results[0].accuracy.top1 is a number 1.5, expected a number 0..1"]
