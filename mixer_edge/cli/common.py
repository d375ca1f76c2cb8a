"""What several command modules share: the data-spec help, warnings, comma lists."""
from __future__ import annotations

import sys


THREADS_HELP = ("threads to compute with (torch, ONNX Runtime, OpenVINO). Default: the CPUs this process may use "
                "(affinity mask and container quota) less the whole cores other processes are busy with when it "
                "starts, at least 1; OMP_NUM_THREADS when set. On a busy machine idle threads sleep rather than "
                "spin (OMP_WAIT_POLICY=PASSIVE unless set), so it is shared, not fought over. "
                "The choice is printed as 'threads: N (...)'")


def add_threads_argument(p) -> None:
    """--threads, and the mark main() looks for to choose and apply the count before the command runs."""
    p.add_argument("--threads", type=int, default=None, help=THREADS_HELP)
    p.set_defaults(choose_threads=True)


def apply_threads(requested: int | None) -> int:
    """Choose the thread count (runtime/threads.py), leave it in OMP_NUM_THREADS for the runtimes,
    and give it to torch, whose count is process-wide. Called once, before any work."""
    from ..runtime.threads import use_threads

    choice = use_threads(requested)   # before torch loads its OpenMP runtime: the wait policy is read once
    import torch

    torch.set_num_threads(choice.threads)
    return choice.threads


def _data_help() -> str:
    from ..data.sources import describe_sources  # the source registry is the one list of specs

    specs = [text.split("  ", 1) for _, text in describe_sources()]  # "mnist:DIR  MNIST-style ..."
    return "data spec: " + "; ".join(f"{spec} ({what.strip().rstrip('.')})" for spec, what in specs)


def output_file(path, option: str):
    """A file path to write at the end of a command, checked before the work starts: a folder, a
    path below a file or in a folder this process may not write in is refused now rather than after
    a long run (parents are created later)."""
    from pathlib import Path

    from ..errors import BadInput

    if path is None:
        return None
    p = Path(path)
    if p.is_dir():
        raise BadInput(f"{option} {path} is a folder; give a file path, e.g. {p / ('result' + (p.suffix or '.json'))}")
    _check_place(path, p.parents, option, "is a file, not a folder")
    return path


def output_folder(path, option: str):
    """A folder to write into: refused when it exists as a file (or sits below one) or may not be written in."""
    from pathlib import Path

    p = Path(path)
    _check_place(path, (p, *p.parents), option, "is a file; give a folder")
    return path


def _check_place(path, places, option: str, is_a_file: str) -> None:
    """The nearest of `places` that exists must be a folder this process may write in."""
    import os

    from ..errors import BadInput

    nearest = next((q for q in places if q.exists()), None)
    if nearest is not None and not nearest.is_dir():
        raise BadInput(f"{option} {path}: {nearest} {is_a_file}")
    if nearest is not None and not os.access(nearest, os.W_OK | os.X_OK):
        raise BadInput(f"{option} {path}: cannot write in {nearest} (permission denied)")


def _warn(lines) -> None:
    for line in lines:
        print(f"warning: {line}", file=sys.stderr)


def _listed(values, default) -> tuple[str, ...]:
    items = [v.strip() for arg in (values or [default]) for v in arg.split(",") if v.strip()]
    return tuple(dict.fromkeys(items))
