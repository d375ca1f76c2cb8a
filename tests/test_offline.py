"""mixer_edge/offline.py: an OpenVINO export (FP32 and INT8: ov.convert_model and NNCF) run in a
fresh process whose sockets record every connection attempt and refuse it, with an empty home (no
telemetry consent file: the dependencies count that as consent). By default nothing is attempted
and nothing is written to the home; with MIXER_EDGE_TELEMETRY=1 (the user asked) the same export
does try to connect, which shows the recorder sees the traffic this test is about."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

pytest.importorskip("openvino")
pytest.importorskip("openvino_telemetry")

# Run before mixer-edge: every way out through a socket (name lookup, connect) is written to LOG,
# then refused as a machine without network would. Forked children (the telemetry sender) inherit it.
RECORDER = """
import os, socket, sys
LOG = os.environ["NET_LOG"]
def _record(what):
    def refuse(*args, **kwargs):
        with open(LOG, "a") as f:
            f.write(f"{os.getpid()} {what} {args[1:] if what == 'connect' else args[:2]}\\n")
        raise OSError(101, "Network is unreachable (blocked by the test)")
    return refuse
socket.socket.connect = _record("connect")
socket.socket.connect_ex = _record("connect")
socket.getaddrinfo = _record("getaddrinfo")
socket.create_connection = _record("create_connection")
from mixer_edge.cli import main
sys.exit(main(sys.argv[1:]))
"""


def _export(tmp: Path, checkpoint: Path, asked: bool) -> tuple[int, list[str], Path]:
    home, log = tmp / "home", tmp / "net.log"
    home.mkdir()
    env = {k: v for k, v in os.environ.items() if k not in ("CI", "NNCF_CI", "MIXER_EDGE_TELEMETRY")}
    env.update(HOME=str(home), NET_LOG=str(log), MIXER_EDGE_PROGRESS="0")
    if asked:
        env["MIXER_EDGE_TELEMETRY"] = "1"
    r = subprocess.run([sys.executable, "-c", RECORDER, "export", str(checkpoint), "--target", "openvino",
                        "--precision", "fp32,int8", "--calib-data", "digits", "--calib-size", "100", "--out", str(tmp / "out")],
                       env=env, capture_output=True, text=True, timeout=600, cwd=tmp)
    return r.returncode, (log.read_text().splitlines() if log.exists() else []), home


def test_an_openvino_export_attempts_no_connection(digits_checkpoint, tmp_path):
    code, attempts, home = _export(tmp_path, digits_checkpoint, asked=False)
    assert code == 0
    assert attempts == [], attempts
    assert not (home / "intel").exists()   # no client id, no consent file written for the user


def test_the_recorder_sees_telemetry_when_it_is_asked_for(digits_checkpoint, tmp_path):
    code, attempts, _ = _export(tmp_path, digits_checkpoint, asked=True)
    assert code == 0 and attempts, "the dependencies' telemetry was expected to try to connect"
