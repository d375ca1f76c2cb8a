"""Labels: the data's classes mapped to the model's outputs, by name where both sides have names."""
from __future__ import annotations

import numpy as np


def label_map(model_classes, data_classes, model_named: bool = True, labels=None):
    """(index array data label -> model output, how) or (None, why top-1 cannot be computed).
    Names decide where both sides have them, in any case (a folder EIGHT is the class eight): image-folder
    labels follow sorted folder names, which need not be the model's order. A model whose classes are
    bare indices (foreign weights without names) takes labels by index only when the class counts agree."""
    model_classes = [str(c) for c in model_classes]
    if data_classes is None:  # labels without names (.npz): they must be model indices
        if labels is not None and len(labels) and (labels.min() < 0 or labels.max() >= len(model_classes)):
            return None, (f"labels run {int(labels.min())}..{int(labels.max())} but the model has "
                          f"{len(model_classes)} outputs")
        return np.arange(len(model_classes)), "by index (the data has no class names)"
    data_classes = [str(c) for c in data_classes]
    if model_named:
        found = [_find(c, model_classes) for c in data_classes]
        if all(i is not None for i in found):
            exact = all(model_classes[i] == c for i, c in zip(found, data_classes))
            return np.array(found, np.int64), "by name" if exact else "by name (in any case)"
        return None, (f"the data's classes {_names(data_classes)} are not the model's classes "
                      f"{_names(model_classes)}")
    if len(data_classes) == len(model_classes):
        return np.arange(len(model_classes)), "by index (the model's classes carry no names)"
    return None, (f"the data has {len(data_classes)} classes {_names(data_classes)} but the model's "
                  f"{len(model_classes)} outputs carry no names to match them to")


def _find(name: str, model_classes: list):
    """The model output named `name`: spelled exactly so, else the one name equal to it in any case
    (a folder EIGHT for the class eight); None when there is none, or several (a and A)."""
    if name in model_classes:
        return model_classes.index(name)
    folded = [i for i, c in enumerate(model_classes) if c.casefold() == name.casefold()]
    return folded[0] if len(folded) == 1 else None


def _names(names, show: int = 12) -> str:
    return "[" + ", ".join(names[:show]) + (f", ... ({len(names)} in all)" if len(names) > show else "") + "]"


def model_labels(manifest: dict, data) -> tuple:
    """(labels as model outputs, or None, and a note): top-1 only where the labels are the model's.
    manifest: its "classes" and "classes_named"; data: labels and classes (readers.Data)."""
    if data.labels is None:
        return None, "unlabeled data"
    mapping, how = label_map(manifest["classes"], data.classes or None, manifest.get("classes_named", True),
                             data.labels)
    return (None, how) if mapping is None else (mapping[data.labels], how)
