"""runtime/conditions.py: the tools' texts parsed (samples in the format JetPack 6 prints), a sysfs
tree read (a fake root with the files the kernel has), the warnings' rules, and the CPU time other
processes take measured against a process spinning beside the run."""
from __future__ import annotations

import subprocess
import sys
import time

import pytest

from mixer_edge.runtime import conditions as c

# `sudo jetson_clocks --show` on an AGX Orin (r36), dynamic clocks: CPUs and GPU free to scale.
UNLOCKED = """SOC family:tegra234  Machine:NVIDIA Jetson AGX Orin Developer Kit
Online CPUs: 0-11
cpu0: Online=1 Governor=schedutil MinFreq=729600 MaxFreq=2201600 CurrentFreq=1190400 IdleStates: WFI=1 c7=1
cpu1: Online=1 Governor=schedutil MinFreq=729600 MaxFreq=2201600 CurrentFreq=2201600 IdleStates: WFI=1 c7=1
GPU MinFreq=306000000 MaxFreq=1300500000 CurrentFreq=306000000
EMC MinFreq=204000000 MaxFreq=3199000000 CurrentFreq=2133000000 FreqOverride=0
FAN Dynamic Speed control=active hwmon4_pwm=77
NV Power Mode: MAXN
"""
# ... and after `sudo jetson_clocks`: every CPU and the GPU at min == max, the EMC at its max.
LOCKED = (UNLOCKED.replace("MinFreq=729600", "MinFreq=2201600").replace("CurrentFreq=1190400", "CurrentFreq=2201600")
          .replace("GPU MinFreq=306000000", "GPU MinFreq=1300500000").replace("CurrentFreq=306000000", "CurrentFreq=1300500000")
          .replace("CurrentFreq=2133000000 FreqOverride=0", "CurrentFreq=3199000000 FreqOverride=1"))


def test_power_mode():
    assert c.power_mode("NV Power Mode: MAXN\n0\n") == {"name": "MAXN", "id": 0}
    assert c.power_mode("NVPM WARN: something\nNV Power Mode: 15W\n1\n") == {"name": "15W", "id": 1}
    assert c.power_mode("NV Power Mode: 25W\n") == {"name": "25W", "id": None}
    assert c.power_mode("") is None and c.power_mode(None) is None


def test_jetson_clocks_show():
    locked, unlocked = c.parse_jetson_clocks(LOCKED), c.parse_jetson_clocks(UNLOCKED)
    assert locked["clocks_locked"] is True and unlocked["clocks_locked"] is False
    assert (locked["gpu_mhz"], locked["gpu_max_mhz"], locked["emc_mhz"]) == (1300.5, 1300.5, 3199.0)
    assert (unlocked["gpu_mhz"], unlocked["emc_mhz"], unlocked["cpu_mhz"]) == (306.0, 2133.0, 2201.6)
    # the GPU locked but the memory clock not at its max: not what jetson_clocks leaves
    half = LOCKED.replace("CurrentFreq=3199000000 FreqOverride=1", "CurrentFreq=2133000000 FreqOverride=0")
    assert c.parse_jetson_clocks(half)["clocks_locked"] is False
    assert c.parse_jetson_clocks("Error: Run this script(/usr/bin/jetson_clocks) as a root user") is None


def fake_root(tmp_path, gpu=(306000000, 1300500000, 306000000), cpus=((729600, 2201600),) * 2, zones=None,
              governor="schedutil"):
    """A root folder with the sysfs files a JetPack 6 Orin has (devfreq's Hz, cpufreq's kHz, millidegrees)."""
    if gpu:
        d = tmp_path / "sys/class/devfreq/17000000.gpu"
        d.mkdir(parents=True)
        for name, v in zip(("min_freq", "max_freq", "cur_freq"), gpu):
            (d / name).write_text(f"{v}\n")
    for i, (lo, hi) in enumerate(cpus):
        d = tmp_path / f"sys/devices/system/cpu/cpu{i}/cpufreq"
        d.mkdir(parents=True)
        (d / "scaling_min_freq").write_text(f"{lo}\n")
        (d / "scaling_max_freq").write_text(f"{hi}\n")
        (d / "scaling_governor").write_text(f"{governor}\n")
    for i, (kind, milli) in enumerate((zones or {}).items()):
        d = tmp_path / f"sys/class/thermal/thermal_zone{i}"
        d.mkdir(parents=True)
        (d / "type").write_text(kind + "\n")
        (d / "temp").write_text(f"{milli}\n")
    return tmp_path


def test_sysfs_clocks_without_root(tmp_path):
    """jetson_clocks --show is root only; the devfreq and cpufreq files are readable by anyone."""
    free = c.sysfs_clocks(fake_root(tmp_path / "a"))
    assert free["clocks_locked"] is False and (free["gpu_mhz"], free["gpu_max_mhz"]) == (306.0, 1300.5)
    pinned = c.sysfs_clocks(fake_root(tmp_path / "b", gpu=(1300500000,) * 3, cpus=((2201600, 2201600),) * 2))
    assert pinned["clocks_locked"] is True and "root" in pinned["clocks_source"]
    assert c.sysfs_clocks(fake_root(tmp_path / "c", gpu=None, cpus=())) is None


def test_temperatures_and_governor(tmp_path):
    root = fake_root(tmp_path, zones={"cpu-thermal": 46250, "gpu-thermal": 47000, "cv0-thermal": -256000})
    assert c.temperatures(root) == {"cpu-thermal": 46.2, "gpu-thermal": 47.0}   # an unused zone reads below zero
    assert c.cpu_governor(root) == "schedutil" and c.cpu_governor(tmp_path / "none") is None
    assert c.temperatures(tmp_path / "none") is None


def cond(before=None, **kw) -> dict:
    doc = {"before": before or {}, "after": before or {}, "cores_usable": 2, "others_cores": 0.0,
           "clocks_locked": None, "compute_units": None}
    return {**doc, **kw}


def test_clocks_locked_rules():
    assert c.clocks_locked({"jetson": {"clocks_locked": True}, "cpu_governor": "schedutil"}) is True
    assert c.clocks_locked({"jetson": None, "cpu_governor": "performance"}) is True
    assert c.clocks_locked({"jetson": None, "cpu_governor": "powersave"}) is False
    assert c.clocks_locked({"jetson": None, "cpu_governor": None}) is None   # a VM, a Mac


def test_warnings():
    jetson = {"jetson": {"power_mode": {"name": "MAXN", "id": 0}, "clocks_locked": False}}
    assert c.warnings(cond(jetson, clocks_locked=False)) == ["clocks not locked: run `sudo jetson_clocks` before "
                                                             "benchmarking"]
    assert "could not tell" in c.warnings(cond(jetson, clocks_locked=None))[0]
    assert "governor 'powersave'" in c.warnings(cond({"cpu_governor": "powersave"}, clocks_locked=False))[0]
    assert c.warnings(cond({"cpu_governor": "performance"}, clocks_locked=True)) == []
    assert c.warnings(cond(others_cores=0.24)) == [] and c.warnings(cond(others_cores=0.25)) == [
        "busy: other processes used 0.25 CPU cores on average during the run"]
    # no CPU-time counters (a Mac's ps failed too): the load average before the run, per usable core
    assert c.warnings(cond({"load_avg": [1.2, 1, 1]}, others_cores=None)) == [
        "busy: 1-minute load average 1.20 on 2 cores before the run"]
    assert c.warnings(cond({"load_avg": [0.9, 1, 1]}, others_cores=None)) == []
    assert c.warnings(None) == [] and c.warnings({}) == []


def test_summary():
    j = {"jetson": {"power_mode": {"name": "MAXN", "id": 0}, "clocks_locked": True, "gpu_mhz": 1300.5,
                    "gpu_max_mhz": 1300.5, "emc_mhz": 3199.0, "emc_max_mhz": 3199.0},
         "temperatures_c": {"cpu-thermal": 41.0, "tj-thermal": 44.5}}
    hot = {**j, "temperatures_c": {"cpu-thermal": 52.0, "tj-thermal": 55.9}}
    text = c.summary({**cond(j, others_cores=0.02, clocks_locked=True), "after": hot})
    assert text == "MAXN (0); GPU 1300/1300 MHz; EMC 3199/3199 MHz; clocks locked; 44->56 C; others 0.02 cores"
    mac = {"macos": {"version": "15.1", "chip": "Apple M4"}}
    assert c.summary(cond(mac, compute_units="CPU_AND_NE")) == ("macOS 15.1, Apple M4; compute units CPU_AND_NE; "
                                                                "others 0.00 cores")   # nothing to lock on a Mac
    assert c.summary(None) == "not recorded"


def test_other_processes_are_measured():
    """A process spinning on one core beside the run: about one core of others' CPU time, and a
    warning; nothing beside it: well under the threshold. (Linux: /proc/stat; elsewhere `ps`.)"""
    spinner = subprocess.Popen([sys.executable, "-c", "while True: pass"])
    try:
        time.sleep(0.3)
        watch = c.Watch()
        time.sleep(1.5)
        busy = watch.finish()
    finally:
        spinner.kill()
    assert busy["others_cores"] == pytest.approx(1.0, abs=0.5) and busy["warnings"][0].startswith("busy:")
    assert busy["cores_usable"] >= 1 and busy["seconds"] >= 1.5
    watch = c.Watch()
    sum(i * i for i in range(3_000_000))   # this process's own work does not count as others'
    assert c.Watch.finish(watch)["others_cores"] < c.BUSY_CORES + 0.5
