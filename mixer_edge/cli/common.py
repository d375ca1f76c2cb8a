"""What several command modules share: the data-spec help, warnings, comma lists."""
from __future__ import annotations

import sys


def _data_help() -> str:
    from ..data.sources import describe_sources  # the source registry is the one list of specs

    specs = [text.split("  ", 1) for _, text in describe_sources()]  # "mnist:DIR  MNIST-style ..."
    return "data spec: " + "; ".join(f"{spec} ({what.strip().rstrip('.')})" for spec, what in specs)


def _warn(lines) -> None:
    for line in lines:
        print(f"warning: {line}", file=sys.stderr)


def _listed(values, default) -> tuple[str, ...]:
    items = [v.strip() for arg in (values or [default]) for v in arg.split(",") if v.strip()]
    return tuple(dict.fromkeys(items))
