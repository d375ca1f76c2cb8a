"""Signed artifacts: the OpenSSF model-signing format (the `model-signing` package), with an
elliptic-curve key pair, offline. `mixer-edge export --sign-key KEY.pem` signs each artifact in its
staging folder, before it is moved into place; `edge_bench.py` / `trt_build.py` / `mixer-edge bench`
/ `mixer-edge predict` with `--verify-key PUB.pem` refuse one whose signature does not verify.

What the signature (ARTIFACT/artifact.sig, a Sigstore bundle) covers: every file of the artifact as
exported, binding.json included, except
  - artifact.sig itself;
  - manifest.json: trt_build.py rewrites it on the device (the engine's record). It is covered
    through binding.json, which seals it less that record (claims.py), and which read_manifest
    checks on every read;
  - the TensorRT engine and its timing cache: built on the device, for its GPU (an engine copied
    from elsewhere is not vouched for: build it there).
Files the tools add after export are allowed beside the signed ones, unsigned: what `mixer-edge
pack` adds (bundle/, bundle.json, README-device.md, SHA256SUMS), JSON written at the top (results),
Python's __pycache__. Any other file the signature does not cover is refused: on a device a stray
module beside edge_bench.py would be imported.

model-signing is optional everywhere (a device needs it only for --verify-key): without it, these
options say which pip line installs it. A script checks itself too late to catch a script altered
before it runs: verify on a machine you trust (`mixer-edge bench --verify-key`, `model_signing verify
key`) where that matters.
"""
from __future__ import annotations

import importlib
import re
from pathlib import Path

from .artifact import MANIFEST, read_manifest
from .bundle import BUNDLE_DIR, README, SUMS
from .claims import BINDING
from .engine import ENGINE, TIMING_CACHE
from .errors import BadInput

SIGNATURE = "artifact.sig"
INSTALL = 'pip install "model-signing>=1.1,<2" pyOpenSSL'   # 1.1.1 imports pyOpenSSL without requiring it
NOT_SIGNED = (SIGNATURE, MANIFEST, ENGINE, TIMING_CACHE, f"{TIMING_CACHE}.json")
CACHES = "__pycache__"
VERIFY_HELP = ("public key (PEM) to verify the artifact's signature (artifact.sig, made by mixer-edge export "
               f"--sign-key) with; an unsigned or altered artifact is refused. Needs model-signing: {INSTALL}")


def _model_signing(option: str):
    try:
        return importlib.import_module("model_signing")
    except ImportError as e:
        raise BadInput(f"{option} needs the model-signing package ({e}); {INSTALL}") from None


def _key(path, option: str) -> Path:
    path = Path(path)
    if not path.is_file():
        raise BadInput(f"{option} {path}: not found (a PEM file of an elliptic-curve key, P-256, P-384 or P-521)")
    return path


def _caches(folder: Path) -> list[str]:
    return sorted({str(p.relative_to(folder)) for p in folder.rglob(CACHES) if p.is_dir()})


def signer(private_key):
    """model-signing's signing configuration for this key (the key read and checked now, so that a
    bad key is refused before an export's work)."""
    ms = _model_signing("--sign-key")
    try:
        return ms.signing.Config().use_elliptic_key_signer(private_key=_key(private_key, "--sign-key"))
    except BadInput:
        raise
    except Exception as e:   # cryptography's many ways to refuse a key: not PEM, encrypted, another curve
        raise BadInput(f"--sign-key {private_key}: not a usable elliptic-curve private key: {_first(e)}") from None


def sign(folder, private_key, config=None) -> Path:
    """Write FOLDER/artifact.sig over every file but NOT_SIGNED and Python caches (config: a signer()
    made earlier)."""
    ms = _model_signing("--sign-key")
    folder = Path(folder).resolve()
    if not (folder / BINDING).is_file():
        raise BadInput(f"{folder} has no {BINDING}: only an artifact exported by this mixer-edge can be signed")
    hashing = ms.hashing.Config().set_ignored_paths(paths=[*NOT_SIGNED, *_caches(folder)], ignore_git_paths=True)
    (config or signer(private_key)).set_hashing_config(hashing).sign(folder, folder / SIGNATURE)
    return folder / SIGNATURE


def after_export(folder: Path) -> list[str]:
    """The files (and folders) found in FOLDER that the tools add after export, which no signature
    made at export can cover: pack's, results, Python's caches."""
    out = set(_caches(folder))
    for p in folder.iterdir():
        if p.name in (BUNDLE_DIR, README, SUMS) or (p.suffix == ".json" and p.name not in (BINDING, MANIFEST)):
            out.add(p.name)
    return sorted(out)


def verify(folder, public_key) -> None:
    """Refuse (BadInput) an artifact that is unsigned, or whose signature does not verify with
    public_key: a signed file altered or missing (even with its manifest hashes and binding
    recomputed), another key, or a file added that the signature does not cover."""
    folder = Path(folder).resolve()
    if not (folder / SIGNATURE).is_file():
        raise BadInput(f"artifact {folder} is unsigned (no {SIGNATURE}): --verify-key accepts only an artifact "
                       f"signed at export (mixer-edge export --sign-key KEY)")
    ms = _model_signing("--verify-key")
    key = _key(public_key, "--verify-key")
    hashing = ms.hashing.Config().set_ignored_paths(paths=after_export(folder), ignore_git_paths=True)
    try:
        ms.verifying.Config().use_elliptic_key_verifier(public_key=key).set_hashing_config(hashing).verify(
            folder, folder / SIGNATURE)
    except Exception as e:   # model-signing raises ValueError for a mismatch, others for a bad file or key
        raise BadInput(f"artifact {folder}: its signature does not verify with {public_key}: {_mismatch(e)}") from None


def signature_line(folder, public_key=None) -> str:
    """The one line the tools print about an artifact's signature: verified with the key given (or
    BadInput), else signed but not verified, or unsigned."""
    if not (Path(folder) / MANIFEST).is_file():
        read_manifest(folder)   # not an artifact: its own message, not "unsigned"
    if public_key is not None:
        verify(folder, public_key)
        return f"signature: {SIGNATURE} verified with {public_key}"
    if (Path(folder) / SIGNATURE).is_file():
        return f"signature: signed ({SIGNATURE}), not verified: give --verify-key PUBLIC_KEY.pem to verify it"
    return "signature: unsigned"


def _mismatch(e: Exception) -> str:
    """model-signing's "Signature mismatch: [...]" (a list's repr, digests as bytes) as the files it names."""
    text, quote, names = str(e), r"\\?['\"]", r"([^'\"\\\]]+)"
    said = [(what, re.findall(pattern, text)) for what, pattern in (
        ("changed", rf"Hash mismatch for {quote}{names}{quote}"),
        ("not signed", rf"Extra files found in model {quote}[^'\"\\]*{quote}: {names}"),
        ("missing", rf"Missing files in model {quote}[^'\"\\]*{quote}: {names}"))]
    found = [f"{what}: {', '.join(n.strip() for n in names)}" for what, names in said if names]
    return "files " + "; ".join(found) if found else _first(e)


def _first(e: Exception) -> str:
    text = " ".join(str(e).split()) or type(e).__name__
    return text if len(text) <= 300 else text[:297] + "..."
