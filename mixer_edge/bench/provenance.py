"""A bench result's rows against the artifacts they measured, where those are on this machine:
`mixer-edge report` reads each row's artifact folder (the path the row records, from the current
folder) with the runtime's reader, which re-derives the manifest's claims from the model file and
checks binding.json (runtime/claims.py), and refuses a row that names another target or precision
than the artifact it measured.

Why only there: a result is a JSON of figures, and a row from a device whose artifact is not here
has nothing to be checked against; the tool that wrote it checked the manifest against the model
file before measuring (since this check exists). A row whose recorded file hashes differ from the
artifact now at its path measured an earlier export of it: not comparable, left as it is.
"""
from __future__ import annotations

from pathlib import Path

from ..errors import BadInput
from ..runtime.artifact import MANIFEST, file_hashes, read_manifest


def measured_here(row: dict) -> Path | None:
    """The artifact folder a row measured, when it is on this machine and is that very artifact (the
    row's file hashes are the manifest's); None otherwise (a checkpoint, another machine's path, a
    later export at the same path)."""
    folder = row.get("artifact")
    if not isinstance(folder, str) or str(row.get("target", "")).startswith("pytorch"):
        return None
    if not (Path(folder) / MANIFEST).is_file():
        return None
    recorded, now = row.get("sha256") or {}, file_hashes(read_manifest(folder, verify=False))
    same = [p for p in now if p in recorded]
    return Path(folder) if same and all(recorded[p] == now[p] for p in same) else None


def check_rows(doc: dict, path) -> None:
    """Refuse a result with a row whose target or precision is not its artifact's (the artifact read
    and checked against its model file: an edited manifest is refused there, in its own words)."""
    for row in doc.get("results") or []:
        folder = measured_here(row) if isinstance(row, dict) else None
        if folder is None:
            continue
        manifest = read_manifest(folder)
        said = (row.get("target"), row.get("precision"))
        if said != (manifest["target"], manifest["precision"]):
            raise BadInput(f"{path}: row {row.get('name')!r} says {said[0]} {said[1]}, but the artifact it measured, "
                           f"{folder}, is {manifest['target']} {manifest['precision']} (its manifest, checked against "
                           f"its model file): the result was made from an edited manifest; benchmark it again")
