"""runtime/signing.py: artifacts signed at export (OpenSSF model signing, an elliptic-curve key,
offline) and verified by the tools with --verify-key: an artifact altered and rehashed (manifest
hashes and binding.json recomputed), signed by another key, unsigned, or with a file the signature
does not cover is refused in one line; what pack and the device add after export, and the engine
stamp of trt_build.py, are not. Without model-signing the options say how to install it."""
from __future__ import annotations

import hashlib
import json
import shutil
import sys
import tarfile

import pytest

from conftest import reseal
from mixer_edge.runtime.artifact import read_manifest, sha256_file
from mixer_edge.runtime.errors import BadInput
from mixer_edge.runtime.signing import INSTALL, SIGNATURE, sign, signature_line, signer, verify

FAST = ["--iters", "2", "--warmup", "0", "--batch-sizes", "1"]


@pytest.fixture(scope="module")
def signed(digits_checkpoint, signing_keys, tmp_path_factory):
    """`mixer-edge export --sign-key`: an ONNX FP32 artifact signed in its staging folder."""
    from mixer_edge.cli import main

    out = tmp_path_factory.mktemp("signed")
    assert main(["export", str(digits_checkpoint), "--out", str(out), "--sign-key",
                 str(signing_keys["private"])]) == 0
    return out / "onnx-fp32"


def copy(folder, tmp_path):
    dest = tmp_path / folder.name
    shutil.copytree(folder, dest)
    return dest


def test_export_signs_and_edge_bench_verifies(signed, signing_keys, capsys):
    from mixer_edge.runtime.cli import main as device_main

    assert (signed / SIGNATURE).is_file()
    assert signature_line(signed, signing_keys["public"]) == f"signature: {SIGNATURE} verified with " \
                                                            f"{signing_keys['public']}"
    capsys.readouterr()
    assert device_main([str(signed), "--data", "digits", *FAST, "--verify-key", str(signing_keys["public"])]) == 0
    assert f"signature: {SIGNATURE} verified with" in capsys.readouterr().out


def test_without_a_key_the_tools_say_signed_or_unsigned(signed, digits_onnx_artifact):
    assert signature_line(signed) == f"signature: signed ({SIGNATURE}), not verified: give --verify-key " \
                                     f"PUBLIC_KEY.pem to verify it"
    assert signature_line(digits_onnx_artifact) == "signature: unsigned"


def _rehashed(folder, name: str, data: bytes) -> None:
    """A file altered, its sha256 in manifest.json and binding.json recomputed: a forger's whole job."""
    (folder / name).write_bytes(data)
    manifest = json.loads((folder / "manifest.json").read_text())
    for entry in manifest["files"]:
        if entry["path"] == name:
            entry["sha256"], entry["bytes"] = sha256_file(folder / name), len(data)
    (folder / "manifest.json").write_text(json.dumps(manifest))
    reseal(folder)


def test_an_altered_and_rehashed_artifact_is_refused(signed, signing_keys, tmp_path):
    folder = copy(signed, tmp_path)
    module = "mixer_edge_runtime/labels.py"
    _rehashed(folder, module, (folder / module).read_bytes() + b"\n# altered\n")
    read_manifest(folder)   # every hash and the binding agree: only the signature can tell
    with pytest.raises(BadInput, match=rf"signature does not verify with .*: files changed: binding.json, {module}"):
        verify(folder, signing_keys["public"])


def test_a_resealed_manifest_edit_is_refused(signed, signing_keys, tmp_path):
    folder = copy(signed, tmp_path)
    manifest = json.loads((folder / "manifest.json").read_text())
    manifest["validation"]["passed"] = True
    manifest["images"]["note"] = "edited"
    (folder / "manifest.json").write_text(json.dumps(manifest))
    reseal(folder)
    with pytest.raises(BadInput, match="files changed: binding.json"):
        verify(folder, signing_keys["public"])


def test_another_key_and_an_unsigned_artifact_are_refused(signed, signing_keys, digits_onnx_artifact):
    with pytest.raises(BadInput, match="its signature does not verify with .*other_key.pub.pem: Key mismatch"):
        verify(signed, signing_keys["other_public"])
    with pytest.raises(BadInput, match=rf"is unsigned \(no {SIGNATURE}\): --verify-key accepts only an artifact "
                                       r"signed at export \(mixer-edge export --sign-key KEY\)"):
        verify(digits_onnx_artifact, signing_keys["public"])
    with pytest.raises(BadInput, match="--verify-key .*nope.pem: not found"):
        verify(signed, signed / "nope.pem")


def test_files_added_after_export(signed, signing_keys, tmp_path):
    """What pack, the device scripts and Python add is allowed; anything else the signature does not
    cover (here a module edge_bench.py would import) is refused, as is a signed file gone."""
    folder = copy(signed, tmp_path)
    for name in ("result-jetson.json", "bundle.json", "README-device.md", "SHA256SUMS", "bundle/images.npz",
                 "mixer_edge_runtime/__pycache__/cli.cpython-310.pyc", "timing.cache", "model.engine"):
        (folder / name).parent.mkdir(parents=True, exist_ok=True)
        (folder / name).write_bytes(b"x")
    verify(folder, signing_keys["public"])
    (folder / "numpy.py").write_text("raise SystemExit('not numpy')\n")
    with pytest.raises(BadInput, match="files not signed: numpy.py"):
        verify(folder, signing_keys["public"])
    (folder / "numpy.py").unlink()
    (folder / "golden.npz").unlink()
    with pytest.raises(BadInput, match="files missing: golden.npz"):
        verify(folder, signing_keys["public"])


def test_pack_keeps_the_signature(signed, signing_keys, tmp_path):
    from mixer_edge.pack import pack

    done = pack(signed, "digits", tmp_path / "b.tar.gz", images=10)
    with tarfile.open(done["out"]) as tar:
        tar.extractall(tmp_path / "device", filter="data")
    unpacked = tmp_path / "device" / signed.name
    assert (unpacked / SIGNATURE).is_file() and (unpacked / "bundle.json").is_file()
    verify(unpacked, signing_keys["public"])
    assert "--verify-key" in (unpacked / "README-device.md").read_text()


def test_a_signed_tensorrt_artifact_verifies_after_its_engine_is_stamped(ck, val, signing_keys, tmp_path):
    """trt_build.py rewrites manifest.json and writes the engine on the device: neither is signed
    (binding.json carries the manifest, less the stamp), so the signature still verifies."""
    from mixer_edge.export.base import ExportSpec
    from mixer_edge.export.build import export_one
    from mixer_edge.runtime.engine import stamp_engine

    folder = export_one(ck, "tensorrt", ExportSpec("fp32"), None, tmp_path, validation=val,
                        sign_key=str(signing_keys["private"])).artifact.path
    (folder / "model.engine").write_bytes(b"an engine")
    info = {"built": True, "file": "model.engine", "sha256": hashlib.sha256(b"an engine").hexdigest(),
            "tensorrt": "10.3.0", "cuda": {"version": "12.6"}}
    stamp_engine(folder, read_manifest(folder), info)
    read_manifest(folder)
    verify(folder, signing_keys["public"])


def test_a_bad_key_is_refused_before_any_work(tmp_path):
    pytest.importorskip("model_signing")
    (tmp_path / "k.pem").write_text("not a key")
    with pytest.raises(BadInput, match="--sign-key .*k.pem: not a usable elliptic-curve private key"):
        signer(tmp_path / "k.pem")
    with pytest.raises(BadInput, match="--sign-key .*none.pem: not found"):
        signer(tmp_path / "none.pem")


def test_without_model_signing_the_options_say_how_to_install_it(signed, signing_keys, digits_checkpoint,
                                                                   tmp_path, monkeypatch, capsys):
    from mixer_edge.cli import main
    from mixer_edge.runtime.cli import main as device_main

    monkeypatch.setitem(sys.modules, "model_signing", None)   # as where the extra `sign` is not installed
    for call in (lambda: signer(signing_keys["private"]), lambda: sign(signed, signing_keys["private"]),
                 lambda: verify(signed, signing_keys["public"])):
        with pytest.raises(BadInput, match=f"needs the model-signing package .*; {INSTALL}"):
            call()
    capsys.readouterr()
    assert main(["export", str(digits_checkpoint), "--out", str(tmp_path / "o"), "--sign-key",
                 str(signing_keys["private"])]) == 2
    errors = [line for line in capsys.readouterr().err.splitlines() if line.startswith("error")]
    assert len(errors) == 1 and "--sign-key needs the model-signing package" in errors[0] and INSTALL in errors[0]
    assert not (tmp_path / "o" / "onnx-fp32").exists()
    assert device_main([str(signed), "--data", "digits", *FAST, "--verify-key", str(signing_keys["public"])]) == 2
    assert INSTALL in capsys.readouterr().err


@pytest.mark.slow
def test_a_python_310_device_verifies_with_model_signing(signed, signing_keys, tmp_path):
    """JetPack 6's Python 3.10 with numpy 1.26, ONNX Runtime and model-signing (the extra a device
    installs for --verify-key): the artifact's own edge_bench.py verifies, and refuses a forgery."""
    import subprocess

    from conftest import JETPACK_PACKAGES, device_venv

    import numpy as np

    from mixer_edge.runtime.readers import read_data

    python = device_venv("signing", JETPACK_PACKAGES + ("model-signing>=1.1,<2", "pyOpenSSL"))
    folder = copy(signed, tmp_path)
    digits = read_data("digits")   # raw images in an .npz: the device has no scikit-learn
    np.savez(tmp_path / "digits.npz", images=digits.images[:100], labels=digits.labels[:100])

    def run():
        return subprocess.run([python, str(folder / "edge_bench.py"), str(folder), "--data",
                               str(tmp_path / "digits.npz"), *FAST, "--images", "all", "--verify-key",
                               str(signing_keys["public"])], capture_output=True, text=True, timeout=300)
    done = run()
    assert done.returncode == 0 and f"signature: {SIGNATURE} verified with" in done.stdout, done.stderr
    _rehashed(folder, "mixer_edge_runtime/labels.py", (folder / "mixer_edge_runtime/labels.py").read_bytes() + b"#")
    done = run()
    assert done.returncode == 2 and "files changed: binding.json" in done.stderr and "Traceback" not in done.stderr
