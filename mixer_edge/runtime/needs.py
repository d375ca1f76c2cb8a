"""What a device needs besides the standard library, and how to say so when it is missing.

Each backend module lists its own needs (backends/*.NEEDS); the README's "On a Jetson" and "On a
Mac" sections print every install line of those tables (a test checks), so messages and docs
cannot drift. Optional packages are imported here, when used, never at module import time.
"""
from __future__ import annotations

import importlib
from typing import NamedTuple

from .errors import NotRunnable


class Need(NamedTuple):
    module: str      # the import it provides
    install: str     # the command, exactly as the README prints it
    note: str        # where, which version, and why
    where: str = ""  # the kind of device it is for ("" for every device of its target): groups a device README


PILLOW = 'pip install "Pillow>=9"'


def install_hint(needs, module: str) -> str:
    """How to install `module`: the install lines of `needs` (a backend's NEEDS) that provide it,
    else plain pip."""
    lines = [f"{n.install} ({n.note})" for n in needs if n.module == module]
    return "; or ".join(lines) or f"pip install {module}"


def require(module: str, what: str, needs=()):
    """Import an optional package for `what` (e.g. "onnx artifacts"); NotRunnable with the
    install line when it is missing."""
    try:
        return importlib.import_module(module)
    except ImportError as e:
        raise NotRunnable(f"needs {module} for {what} ({e}); {install_hint(needs, module)}") from None


def pil():
    """PIL.Image, imported only where images are decoded or resized."""
    try:
        from PIL import Image
    except ImportError as e:
        raise NotRunnable(f"decoding or resizing images needs Pillow ({e}); {PILLOW}") from None
    return Image
