"""runtime/cli.py, edge_bench.py's command line: its options (shared with `mixer-edge bench`), the
settings they make, and how one result ends (exit codes 0 / 3 / 4 with one line on stderr).
The whole matrix of mistakes is tests/test_bad_input.py; runs on real artifacts tests/test_bench.py."""
from __future__ import annotations

import json

import pytest

from mixer_edge.runtime.cli import build_parser, finish, main, settings_from_args
from mixer_edge.runtime.errors import EXIT_BAD_INPUT, EXIT_DEVICE_CHECK, EXIT_NOT_RUN, EXIT_OK
from mixer_edge.runtime.results import result_entry
from mixer_edge.runtime.timing import Settings, latency_stats


def test_settings_from_the_options():
    args = build_parser().parse_args(["art", "--data", "d", "--iters", "7", "--batch-sizes", "2,4", "--warmup", "0"])
    assert settings_from_args(args) == Settings(warmup=0, iters=7, batch_sizes=(2, 4))
    args = build_parser().parse_args(["art", "--data", "d", "--duration", "1.5", "--min-calls", "3", "--min-time", "0"])
    s = settings_from_args(args)
    assert (s.iters, s.duration, s.min_calls, s.min_seconds) == (None, 1.5, 3, 0.0)
    with pytest.raises(SystemExit):   # argparse: one of --iters and --duration
        build_parser().parse_args(["art", "--iters", "3", "--duration", "1"])


@pytest.mark.parametrize("entry, code, line", [
    ({"status": "ok", "device_check": {"status": "passed", "sqnr_db": 41.0, "n": 32, "threshold_sqnr_db": 20.0}},
     EXIT_OK, None),
    ({"status": "not-run", "reason": "needs macOS"}, EXIT_NOT_RUN, "error: not run: needs macOS"),
    ({"status": "ok", "device_check": {"status": "failed", "reason": "SQNR 3 dB"}}, EXIT_DEVICE_CHECK,
     "error: device check failed for a: SQNR 3 dB"),
])
def test_finish_prints_writes_and_says_how_it_ended(tmp_path, capsys, entry, code, line):
    timed = {"latency_ms": latency_stats([1.0]), "throughput": []} if entry["status"] == "ok" else {}
    doc = {"device": {"name": "d", "cpu": "c", "cores_usable": 1, "isa": [], "os": "o"},
           "results": [result_entry(name="a", target="onnx", precision="fp32", **entry, **timed)]}
    assert finish(doc, tmp_path / "r.json") == code
    out, err = capsys.readouterr()
    assert out.startswith("artifact") and json.loads((tmp_path / "r.json").read_text()) == doc
    assert err.strip() == (line or "")
    if entry.get("device_check"):   # the golden check's line below the table
        assert f"a: device check {entry['device_check']['status']}: " in out


def test_help_and_the_missing_mode(capsys, tmp_path):
    with pytest.raises(SystemExit) as e:
        main(["--help"])
    assert e.value.code == 0 and "Exit status" in capsys.readouterr().out
    assert main([str(tmp_path)]) == EXIT_BAD_INPUT
    assert capsys.readouterr().err == ("error: give --data SPEC to benchmark, or --predict IMAGE... to classify images "
                                       "(a packed artifact, made by mixer-edge pack, benchmarks its bundled images by "
                                       "default)\n")


def test_a_result_that_cannot_be_written_is_refused_before_the_benchmark(digits_onnx_artifact, tmp_path, capsys,
                                                                          monkeypatch):
    """Before: the whole benchmark ran, then an OSError (Errno 30) as the result was written."""
    from mixer_edge.runtime import artifact

    monkeypatch.setattr(artifact.os, "access", lambda p, mode: False)
    assert main([str(digits_onnx_artifact), "--data", "digits", "--json", str(tmp_path / "r.json")]) == EXIT_BAD_INPUT
    out, err = capsys.readouterr()
    assert out == "" and err.count("error: ") == 1 and "is not writable (the result " in err
