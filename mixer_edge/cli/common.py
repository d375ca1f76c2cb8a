"""What several command modules share: the data-spec help, warnings, comma lists."""
from __future__ import annotations

import sys


def _data_help() -> str:
    from ..data.sources import describe_sources  # the source registry is the one list of specs

    specs = [text.split("  ", 1) for _, text in describe_sources()]  # "mnist:DIR  MNIST-style ..."
    return "data spec: " + "; ".join(f"{spec} ({what.strip().rstrip('.')})" for spec, what in specs)


def output_file(path, option: str):
    """A file path to write at the end of a command, checked before the work starts: a folder, or a
    path below a file, is refused now rather than after a long run (parents are created later)."""
    from pathlib import Path

    from ..errors import BadInput

    if path is None:
        return None
    p = Path(path)
    if p.is_dir():
        raise BadInput(f"{option} {path} is a folder; give a file path, e.g. {p / 'result.json'}")
    blocked = next((q for q in p.parents if q.exists() and not q.is_dir()), None)
    if blocked is not None:
        raise BadInput(f"{option} {path}: {blocked} is a file, not a folder")
    return path


def output_folder(path, option: str):
    """A folder to write into: refused when it exists as a file (or sits below one)."""
    from pathlib import Path

    from ..errors import BadInput

    p = Path(path)
    blocked = next((q for q in (p, *p.parents) if q.exists() and not q.is_dir()), None)
    if blocked is not None:
        raise BadInput(f"{option} {path}: {blocked} is a file; give a folder")
    return path


def _warn(lines) -> None:
    for line in lines:
        print(f"warning: {line}", file=sys.stderr)


def _listed(values, default) -> tuple[str, ...]:
    items = [v.strip() for arg in (values or [default]) for v in arg.split(",") if v.strip()]
    return tuple(dict.fromkeys(items))
