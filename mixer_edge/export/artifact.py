"""Artifact directories: model files + manifest.json + the device runtime, built in a hidden temp
folder and moved into place in one rename, so an interrupted export never leaves a directory that
looks complete.

Runners and benchmarks read only the manifest; loading checks every file's sha256 (the runtime's
reader, runtime/artifact.py). Every artifact ships the runtime package byte-identical as
RUNTIME_PACKAGE/ beside its launchers (edge_bench.py, and trt_build.py for TensorRT), so a device
with only numpy and its runtime can check, run and benchmark it from the manifest alone.
"""
from __future__ import annotations

import os
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path

from .. import runtime
from ..errors import BadInput
from ..runtime.artifact import ARTIFACT_SCHEMA, MANIFEST, atomic_write_json, read_json, read_manifest, sha256_file
from ..runtime.claims import BINDING, binding_of

RUNTIME_DIR = Path(runtime.__file__).resolve().parent
RUNTIME_PACKAGE = "mixer_edge_runtime"   # the runtime package's name in an artifact folder
EDGE_BENCH, TRT_BUILD = "edge_bench.py", "trt_build.py"
LAUNCHERS = (EDGE_BENCH, TRT_BUILD)       # the runtime's launchers: at an artifact's top, not in its package


@dataclass(frozen=True)
class Artifact:
    path: Path
    manifest: dict

    @property
    def target(self) -> str:
        return self.manifest["target"]

    @property
    def precision(self) -> str:
        return self.manifest["precision"]

    def file(self, role_or_name: str) -> Path:
        return self.path / role_or_name

    @property
    def passed(self) -> bool | None:
        return self.manifest.get("validation", {}).get("passed")


def file_entries(folder: Path, names) -> list[dict]:
    entries = []
    for name in names:
        p = folder / name
        if p.is_dir():  # e.g. a Core ML .mlpackage: hash every file inside
            entries += [{"path": str(f.relative_to(folder)), "sha256": sha256_file(f), "bytes": f.stat().st_size}
                        for f in sorted(p.rglob("*")) if f.is_file()]
        else:
            entries.append({"path": name, "sha256": sha256_file(p), "bytes": p.stat().st_size})
    return entries


def write_manifest(folder: Path, manifest: dict) -> None:
    """manifest.json, and binding.json sealing it as written (read back: what a reader will see),
    so that an edit of the manifest after export is refused (runtime/claims.py)."""
    atomic_write_json(folder / MANIFEST, {"schema": ARTIFACT_SCHEMA, **manifest})
    atomic_write_json(folder / BINDING, binding_of(read_json(folder / MANIFEST, "artifact manifest")))


def load_artifact(path, *, verify: bool = True) -> Artifact:
    """Read an artifact directory with the device runtime's reader (schema, required keys and, with
    verify, every listed file present with its sha256)."""
    return Artifact(path=Path(path), manifest=read_manifest(path, verify=verify))


def runtime_files() -> list[str]:
    """The runtime package's modules, relative to it (backends/onnxruntime.py, ...), sorted; the
    launchers stay out: they sit at the artifact's top."""
    return sorted(str(p.relative_to(RUNTIME_DIR)) for p in RUNTIME_DIR.rglob("*.py")
                  if "__pycache__" not in p.parts and str(p.relative_to(RUNTIME_DIR)) not in LAUNCHERS)


def ship_runtime(folder: Path, launchers) -> tuple[str, ...]:
    """Copy the launchers and the runtime package, byte for byte, into an artifact folder; returns
    the paths written (relative to folder), for the manifest's hashed file list."""
    written = []
    for name in launchers:
        shutil.copyfile(RUNTIME_DIR / name, folder / name)
        written.append(name)
    for rel in runtime_files():
        dest = folder / RUNTIME_PACKAGE / rel
        dest.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(RUNTIME_DIR / rel, dest)
        written.append(f"{RUNTIME_PACKAGE}/{rel}")
    return tuple(written)


def check_destination(dest: Path, force: bool) -> None:
    """An existing artifact may be replaced; anything else that exists needs --force."""
    if dest.exists() and not force:
        is_artifact = dest.is_dir() and (dest / MANIFEST).is_file()
        empty = dest.is_dir() and not any(dest.iterdir())
        if not (is_artifact or empty):
            raise BadInput(f"output {dest} exists and is not a mixer-edge artifact; "
                           f"choose another --out or pass --force to replace it")


def check_output_folder(out: Path, force: bool, writes=()) -> None:
    """export --out holds artifacts only (one sub-folder each): an export into a folder of images
    once left an artifact among them, which broke `eval` on that folder. New or empty folders,
    earlier exports and their staging leftovers pass; the folders this export writes (`writes`) are
    check_destination's to judge; anything else needs --force."""
    if force or not out.is_dir():
        return
    foreign = sorted(p.name for p in out.iterdir()
                     if not (p.is_dir() and ((p / MANIFEST).is_file() or p.name in writes
                                             or ".partial-" in p.name or ".old-" in p.name)))
    if foreign:
        shown = ", ".join(foreign[:3]) + (f" and {len(foreign) - 3} more" if len(foreign) > 3 else "")
        raise BadInput(f"--out {out} holds files that are not mixer-edge artifacts ({shown}); give a new or empty "
                       f"folder, or one that holds only earlier exports, or --force to write there anyway")


def staging_dir(dest: Path) -> Path:
    """A hidden folder beside dest. mkdtemp makes it 0700; the artifact it becomes gets the umask's
    usual permissions (0755), so a copy into a container or to another user can be entered."""
    dest.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(dir=dest.parent, prefix=f".{dest.name}.partial-"))
    umask = os.umask(0)
    os.umask(umask)
    staging.chmod(0o777 & ~umask)
    return staging


def commit(staging: Path, dest: Path) -> None:
    """Move the finished staging folder into place, replacing what was there."""
    old = _set_aside(dest)
    os.replace(staging, dest)
    _remove(old)


def retire(dest: Path) -> bool:
    """Remove the artifact at dest after its re-export failed (True when there was one). It was made
    from another checkpoint or recipe; left in place it would look current. Removed, not moved aside:
    an artifact is rebuilt from its checkpoint, and a copy beside it would still look like one."""
    if not (dest / MANIFEST).is_file():
        return False
    _remove(_set_aside(dest))
    return True


def _set_aside(dest: Path) -> Path | None:
    """Rename what is at dest to a hidden sibling in one step, so dest is free at once."""
    if not (dest.exists() or dest.is_symlink()):
        return None
    old = dest.with_name(f".{dest.name}.old-{os.getpid()}")
    os.replace(dest, old)
    return old


def _remove(old: Path | None) -> None:
    if old is not None:
        shutil.rmtree(old, ignore_errors=True) if old.is_dir() else old.unlink()
