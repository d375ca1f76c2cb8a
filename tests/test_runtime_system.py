"""runtime/system.py: CPU flags and model from /proc/cpuinfo-style text, the model's resident memory
(an allocation of known size after the mark), and what every result says of its machine."""
from __future__ import annotations

import platform
import sys

import numpy as np
import pytest

from mixer_edge.runtime.system import (ISA_FLAGS, base_versions, cpu_model, device_info, isa_flags, mark_memory,
                                       model_rss_mb, process_memory, usable_cpus)

EPYC = {"model name": "AMD EPYC 9R14", "flags": "fpu sse4_2 avx avx2 fma avx512f avx512_vnni avx512_bf16 amx_tile"}
ORIN = {"Features": "fp asimd evtstrm aes asimdhp asimddp i8mm bf16", "Hardware": ""}


@pytest.mark.skipif(sys.platform == "darwin", reason="macOS adds flags from sysctl")
def test_isa_flags_in_table_order():
    assert isa_flags(EPYC) == ["sse4_2", "avx", "avx2", "fma", "avx512f", "avx512_vnni", "avx512_bf16", "amx_tile"]
    assert isa_flags(ORIN) == ["neon", "asimd", "asimdhp", "asimddp", "bf16", "i8mm"]   # asimd is NEON
    assert isa_flags({}) == [] and set(isa_flags()) <= set(ISA_FLAGS)


def test_cpu_model():
    assert cpu_model(EPYC) == "AMD EPYC 9R14"
    assert cpu_model({"Model": "Raspberry Pi 5"}) == "Raspberry Pi 5"
    assert isinstance(cpu_model(), str) and cpu_model()


@pytest.mark.skipif(platform.system() != "Linux", reason="the scoped high-water mark is Linux's /proc")
def test_model_memory_is_what_came_after_the_mark():
    mark = mark_memory()
    block = np.ones(64 * 2 ** 20, np.uint8)       # 64 MiB, touched
    grown = model_rss_mb(mark)
    assert mark.scoped and 60 <= grown <= 200, grown
    info = process_memory(mark)
    assert info["process_peak_rss_mb"] >= info["rss_before_load_mb"] + 60
    assert info["process_peak_rss_scope"] == "process total, peak since load"
    del block


def test_device_info_and_versions():
    d = device_info("board")
    assert d["name"] == "board" and d["cores_usable"] == usable_cpus() >= 1 and d["machine"] == platform.machine()
    assert set(d) == {"name", "hostname", "cpu", "cores_logical", "cores_usable", "isa", "machine", "os", "gpus"}
    v = base_versions()
    assert v["python"] == platform.python_version() and v["numpy"] == np.__version__ and v["edge_bench"] == "1"
