"""--class-map FILE: the data's class names (image-folder names) -> the model's class names.

Class names already match in any case (a folder EIGHT is the class eight: runtime/labels.py); a
class map is for other names: `08_eight` -> `eight`, or two folders merged into one class.

    {"08_eight": "eight", "SEVEN-photos": "seven"}        a .json file: one object
    08_eight = eight                                      any other file: one FOLDER = CLASS a line;
    # phone photos                                        blank lines and # comments are skipped
    SEVEN-photos = seven

A folder the map does not name keeps its name; a name the data does not have is said in a
`warning:` line (a map shared by several data sets), never an error.
"""
from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import numpy as np

from ..errors import BadInput
from ..progress import say
from ..runtime.images import shown
from .dataset import ImageSet

def read_class_map(path) -> dict:
    """{folder name: class name} from a .json object or FOLDER = CLASS lines."""
    p = Path(path)
    if not p.is_file():
        raise BadInput(f"class map not found: {shown(p)}" + (" (a folder)" if p.is_dir() else ""))
    try:
        text = p.read_text(encoding="utf-8-sig")
    except (OSError, UnicodeDecodeError) as e:
        raise BadInput(f"cannot read class map {shown(p)}: {e}") from None
    pairs = _json_pairs(text, p) if p.suffix.lower() == ".json" else _text_pairs(text, p)
    mapping: dict = {}
    for folder, name in pairs:
        if mapping.get(folder, name) != name:
            raise BadInput(f"class map {shown(p)} maps {folder} twice: to {mapping[folder]} and to {name}")
        mapping[folder] = name
    if not mapping:
        raise BadInput(f"class map {shown(p)} maps no folder; expected FOLDER = CLASS lines or a .json object")
    return mapping


def _json_pairs(text: str, p: Path) -> list:
    try:
        obj = json.loads(text)
    except ValueError as e:
        raise BadInput(f"class map {shown(p)} is not JSON ({e}); a .json map is one object "
                       f"{{\"FOLDER\": \"CLASS\", ...}}") from None
    if not isinstance(obj, dict) or not all(isinstance(v, str) and v.strip() for v in obj.values()):
        raise BadInput(f"class map {shown(p)} must be a JSON object of folder name -> class name (strings), "
                       f"got {type(obj).__name__}")
    return [(k.strip(), v.strip()) for k, v in obj.items()]


def _text_pairs(text: str, p: Path) -> list:
    pairs = []
    for number, line in enumerate(text.splitlines(), 1):
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        folder, sep, name = (part.strip() for part in line.partition("="))
        if not (sep and folder and name):
            raise BadInput(f"class map {shown(p)} line {number}: expected FOLDER = CLASS, got {line!r} "
                           f"(a folder name with '=' in it: use a .json map)")
        pairs.append((folder, name))
    return pairs


def apply_class_map(data: ImageSet, mapping: dict, source: str) -> ImageSet:
    """data with its classes renamed by mapping (a folder name matched exactly, else in any case);
    classes mapped to one name merged, in the order of their first appearance. Unlabeled data is
    returned as it is."""
    if data.labels is None:
        return data
    folded = {k.casefold(): k for k in mapping}
    used = set()

    def renamed(c: str) -> str:
        key = c if c in mapping else folded.get(c.casefold())
        if key is None:
            return c
        used.add(key)
        return mapping[key]

    names = [renamed(c) for c in data.classes]
    unused = [k for k in mapping if k not in used]
    if unused:
        say(f"class map {shown(source)} names {len(unused)} class(es) that {shown(data.spec)} does not have: "
            + ", ".join(unused[:12]) + (" ..." if len(unused) > 12 else ""))
    classes = tuple(dict.fromkeys(names))
    index = np.array([classes.index(n) for n in names], np.int64)
    mapped = replace(data, labels=index[data.labels] if len(index) else data.labels, classes=classes)
    mapped.__dict__.update({k: v for k, v in data.__dict__.items() if k in ("keys", "sizes")})   # same images
    return mapped
