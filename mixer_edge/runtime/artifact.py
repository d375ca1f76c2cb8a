"""An artifact folder as the runtime reads it: manifest.json with its schema and shape checked,
every listed file present with its sha256, file paths confined to the folder; plus the file
helpers every writer uses (sha256, atomic writes: a reader never sees half a file)."""
from __future__ import annotations

import hashlib
import json
import os
import tempfile
from pathlib import Path

from .claims import check_claims
from .errors import BadInput
from .schema import MANIFEST_SHAPE, check_document, manifest_problems

MANIFEST = "manifest.json"
ARTIFACT_SCHEMA = 1             # of manifest.json


def sha256_file(path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def read_json(path, what: str):
    """The JSON document in a file; each way of not being one (absent, a folder, unreadable, not
    UTF-8, not JSON, nested too deep, a number too long) is one BadInput naming the file."""
    path = Path(path)
    if not path.is_file():
        raise BadInput(f"{what} {'is a folder, not a file' if path.is_dir() else 'not found'}: {path}")
    try:
        doc = json.loads(path.read_bytes())
        json.dumps(doc, ensure_ascii=False).encode()   # JSON may spell unpaired surrogates (\ud800); text may not
    except OSError as e:
        raise BadInput(f"cannot read {what} {path}: {e.strerror or e}") from None
    except (ValueError, RecursionError) as e:
        raise BadInput(f"{what} {path} is not valid JSON: {e}") from None
    return doc


def require_writable(folder, what: str) -> None:
    """Refuse before any work where `what` cannot be written (a read-only mount, another user's
    copy): one line now instead of an OSError after the build or the benchmark."""
    folder = Path(folder)
    while not folder.exists() and folder != folder.parent:   # a folder yet to be made: its parent decides
        folder = folder.parent
    if not os.access(folder, os.W_OK):
        raise BadInput(f"{folder} is not writable ({what}): copy the artifact to a folder you own, or mount it "
                       f"writable")


def atomic_write_bytes(path, data: bytes) -> None:
    """Temp file in the same folder, then os.replace: a reader never sees half a file, and an
    interrupted write leaves nothing behind. The file gets the umask's usual permissions."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)  # mkstemp creates 0600
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def atomic_write_json(path, obj) -> None:
    atomic_write_bytes(path, (json.dumps(obj, indent=2) + "\n").encode())


# ---- reading an artifact ------------------------------------------------------------------------

def read_manifest(folder, verify: bool = True, rebuilt: tuple = ()) -> dict:
    """ARTIFACT/manifest.json, its schema checked, every listed file present with its sha256, and
    what it claims about its files re-derived from them, the rest against binding.json (claims.py)
    (verify=False: the manifest alone, for the exporter's own staging folder; rebuilt: files about
    to be made again, such as an engine, whose old copy may be missing or corrupt)."""
    folder = Path(folder)
    path = folder / MANIFEST
    if not path.is_file():
        why = f"no {MANIFEST}" if folder.is_dir() else "not a folder" if folder.exists() else "not found"
        raise BadInput(f"{folder} is not a mixer-edge artifact ({why})")
    manifest = read_json(path, "artifact manifest")
    if not isinstance(manifest, dict) or manifest.get("schema") != ARTIFACT_SCHEMA:
        found = manifest.get("schema") if isinstance(manifest, dict) else None
        raise BadInput(f"{path} has artifact schema {found!r}; this script reads schema {ARTIFACT_SCHEMA}")
    check_document(manifest, path, MANIFEST_SHAPE, manifest_problems)
    if verify:
        verify_files(folder, manifest, rebuilt)
        check_claims(folder, manifest)   # an edited precision, shape, class count or threshold: refused here
    return manifest


def confined(folder: Path, name) -> Path:
    """folder/name, refused unless name is a relative path that stays inside folder (no absolute
    path, no '..' out of it, no link leading out): a manifest names files, it cannot point elsewhere."""
    if not isinstance(name, str) or not name or "\x00" in name or Path(name).is_absolute():
        raise BadInput(f"manifest file path {name!r} is not a relative path inside the artifact folder")
    root = Path(folder).resolve()
    path = (root / name).resolve()
    if path != root and root not in path.parents:
        raise BadInput(f"manifest file path {name!r} leads outside the artifact folder {folder}")
    return Path(folder) / name


def verify_files(folder: Path, manifest: dict, rebuilt: tuple = ()) -> None:
    for entry in manifest["files"]:
        if entry["path"] in rebuilt:
            continue
        f = confined(folder, entry["path"])
        if not f.is_file():
            raise BadInput(f"artifact {folder} is incomplete: {entry['path']} is missing")
        if sha256_file(f) != entry["sha256"]:
            raise BadInput(f"artifact {folder}: {entry['path']} does not match its sha256 in "
                           f"{MANIFEST} (modified or corrupt)")


def file_hashes(manifest: dict) -> dict:
    return {e["path"]: e["sha256"] for e in manifest["files"]}


def artifact_size(folder: Path, manifest: dict) -> int:
    return sum((Path(folder) / e["path"]).stat().st_size for e in manifest["files"])


def model_file(folder: Path, manifest: dict, suffix: str) -> Path:
    """The artifact's model file: model<suffix> when listed, else the only listed *<suffix>."""
    names = [e["path"] for e in manifest["files"] if e["path"].endswith(suffix)]
    if f"model{suffix}" in names:
        return Path(folder) / f"model{suffix}"
    if len(names) == 1:
        return Path(folder) / names[0]
    raise BadInput(f"artifact {folder}: expected one {suffix} file in {MANIFEST}, found {names or 'none'}")


def listed(folder, manifest: dict, name) -> Path:
    """folder/name for a file the manifest lists (so read_manifest checked its sha256): the runtime
    opens no file the manifest does not vouch for."""
    if name not in {e["path"] for e in manifest["files"]}:
        raise BadInput(f"artifact {folder}: {name!r} is not among the files {MANIFEST} lists and hashes")
    return confined(folder, name)


def batch_axis(manifest: dict) -> int | None:
    """None when the batch axis is dynamic (a name such as "batch"), else the fixed batch size."""
    shape = manifest.get("input", {}).get("shape") or ["batch"]
    return shape[0] if isinstance(shape[0], int) else None
