"""runtime/labels.py: the data's classes matched to the model's outputs, by name where both sides have
names, by index only where that cannot be wrong; every refusal says why top-1 is absent."""
from __future__ import annotations

import numpy as np

from mixer_edge.runtime.labels import label_map, model_labels
from mixer_edge.runtime.readers import Data


def test_label_map_by_name_and_refusals():
    digits = [str(i) for i in range(10)]
    mapping, how = label_map(digits, ["3", "7"])            # a folder with two of the ten classes
    assert how == "by name" and mapping.tolist() == [3, 7]
    mapping, how = label_map(["cat", "dog"], ["dog", "cat"])  # sorted folders, another model order
    assert mapping.tolist() == [1, 0]
    words = ["zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine"]
    mapping, why = label_map(digits, sorted(words))
    assert mapping is None and "[eight, five, four" in why and "[0, 1, 2" in why
    mapping, why = label_map([str(i) for i in range(1000)], digits, model_named=False)
    assert mapping is None and "1000 outputs carry no names" in why
    mapping, how = label_map([str(i) for i in range(10)], digits, model_named=False)
    assert mapping.tolist() == list(range(10)) and how.startswith("by index")
    mapping, why = label_map(digits, None, labels=np.array([0, 12]))
    assert mapping is None and "0..12" in why


def test_model_labels_maps_labels_or_says_why_not():
    manifest = {"classes": ["cat", "dog", "eel"]}
    data = Data(None, np.array([1, 0, 1]), ("dog", "eel"), "imagefolder:x")   # sorted folders: dog, eel
    labels, how = model_labels(manifest, data)
    assert labels.tolist() == [2, 1, 2] and how == "by name"
    assert model_labels(manifest, data._replace(labels=None)) == (None, "unlabeled data")
    labels, why = model_labels(manifest, data._replace(classes=("ant", "bee")))
    assert labels is None and why.startswith("the data's classes [ant, bee] are not the model's classes")
    labels, how = model_labels(manifest, data._replace(classes=None, labels=np.array([2, 0])))   # an .npz
    assert labels.tolist() == [2, 0] and how == "by index (the data has no class names)"


def test_class_names_match_in_any_case():
    """Issue 20: folders EIGHT and Seven are the model's classes eight and seven; a model that has
    both spellings of one name keeps the exact match only."""
    words = ["five", "eight", "seven"]
    mapping, how = label_map(words, ["EIGHT", "Seven", "five"])
    assert mapping.tolist() == [1, 2, 0] and how == "by name (in any case)"
    assert label_map(words, ["eight"])[1] == "by name"
    mapping, how = label_map(["a", "A"], ["A", "a"])
    assert mapping.tolist() == [1, 0]
    mapping, why = label_map(["a", "A"], ["a", "A", "á"])
    assert mapping is None and "not the model's classes" in why
    mapping, why = label_map(["a", "A", "b"], ["B", "a"])
    assert mapping.tolist() == [2, 0]
    assert label_map(["a", "A"], ["Ａ"])[0] is None     # case-folding, not look-alikes
