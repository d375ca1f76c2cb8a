"""runtime/threads.py: the CPU quota read from a fake cgroup tree (v1 and v2 files as the kernel
writes them), the choice's rules (--threads, OMP_NUM_THREADS, usable CPUs less the cores other
processes take, measured against processes spinning beside it), and the wait policy."""
from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from mixer_edge.runtime import threads as t
from mixer_edge.runtime.errors import BadInput
from mixer_edge.runtime.system import affinity_cpus, cgroup_quota, usable_cpus


def _tree(root: Path, files: dict) -> Path:
    for rel, text in files.items():
        p = root / rel
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_text(text)
    return root


def test_cgroup_v2_quota_of_this_process_cgroup(tmp_path):
    root = _tree(tmp_path, {"proc/self/cgroup": "0::/ci/job\n", "sys/fs/cgroup/ci/job/cpu.max": "150000 100000\n",
                            "sys/fs/cgroup/cpu.max": "max 100000\n"})
    assert cgroup_quota(root) == 1.5
    assert usable_cpus(root) == min(affinity_cpus(), 1)   # 1.5 CPUs: one thread's worth, at least 1


def test_cgroup_v2_without_quota(tmp_path):
    root = _tree(tmp_path, {"proc/self/cgroup": "0::/\n", "sys/fs/cgroup/cpu.max": "max 100000\n"})
    assert cgroup_quota(root) is None and usable_cpus(root) == affinity_cpus()


def test_cgroup_v1_quota(tmp_path):
    root = _tree(tmp_path, {"proc/self/cgroup": "2:cpu,cpuacct:/docker/abc\n1:memory:/docker/abc\n",
                            "sys/fs/cgroup/cpu/docker/abc/cpu.cfs_quota_us": "400000\n",
                            "sys/fs/cgroup/cpu/docker/abc/cpu.cfs_period_us": "100000\n"})
    assert cgroup_quota(root) == 4.0
    assert usable_cpus(root) == min(affinity_cpus(), 4)
    root2 = _tree(tmp_path / "none", {"proc/self/cgroup": "1:cpu:/\n", "sys/fs/cgroup/cpu/cpu.cfs_quota_us": "-1\n",
                                      "sys/fs/cgroup/cpu/cpu.cfs_period_us": "100000\n"})
    assert cgroup_quota(root2) is None


def test_no_cgroup_files_means_no_quota(tmp_path):
    assert cgroup_quota(tmp_path) is None and usable_cpus(tmp_path) == affinity_cpus()


def test_requested_threads_win_and_are_checked(monkeypatch):
    monkeypatch.setenv("OMP_NUM_THREADS", "3")
    c = t.choose_threads(1, sample_s=0)
    assert c.threads == 1 and c.requested == 1 and c.line().startswith("threads: 1 (from --threads; ")
    c = t.choose_threads(None, sample_s=0)                          # the user's OMP_NUM_THREADS next
    assert c.threads == 3 and c.line().startswith("threads: 3 (from OMP_NUM_THREADS; ")
    with pytest.raises(BadInput, match="at least 1, got 0"):
        t.choose_threads(0)


@pytest.mark.parametrize("value, want", [("4", 4), ("4,2", 4), ("0", None), ("many", None), ("", None)])
def test_env_threads(value, want):
    assert t.env_threads({"OMP_NUM_THREADS": value}) == want


def test_quiet_machine_uses_every_usable_cpu(monkeypatch):
    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    monkeypatch.setattr(t, "OthersCPU", lambda: type("W", (), {"cores": lambda self: 0.1})())
    c = t.choose_threads(None, sample_s=0.01)
    assert c.threads == usable_cpus() and not c.busy and "other processes using 0.1" in c.line()


def test_the_cores_others_take_are_left_to_them(monkeypatch):
    """Others busy with 1.6 cores (as /proc/stat would say) on 2 usable CPUs: one thread; never fewer than 1."""
    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    monkeypatch.setattr(t, "usable_cpus", lambda root=None: 2)
    monkeypatch.setattr(t, "OthersCPU", lambda: type("W", (), {"cores": lambda self: 1.6})())
    c = t.choose_threads(None, sample_s=0.01)
    assert (c.threads, c.busy) == (1, True)
    monkeypatch.setattr(t, "OthersCPU", lambda: type("W", (), {"cores": lambda self: 7.0})())
    assert t.choose_threads(None, sample_s=0.01).threads == 1


@pytest.mark.skipif(not Path("/proc/stat").is_file() or affinity_cpus() < 2, reason="needs /proc/stat and 2 CPUs")
def test_a_real_spinning_neighbour_is_seen(monkeypatch):
    """Processes spinning on every usable CPU beside the choice: measured busy (>= 0.8 cores of the
    spinners' at least 1 seen in 0.5 s), one thread chosen."""
    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    spinners = [subprocess.Popen([sys.executable, "-c", "while True: pass"]) for _ in range(affinity_cpus())]
    try:
        time.sleep(0.5)
        c = t.choose_threads(None, sample_s=0.5)
    finally:
        for p in spinners:
            p.kill()
    assert c.others_cores >= 0.8 and c.busy, c
    assert c.threads <= usable_cpus() - 1 or c.threads == 1, c


def test_quiet_waits_keeps_the_users_policy():
    env = {}
    assert t.quiet_waits(env) == {"OMP_WAIT_POLICY": "PASSIVE"} and env["OMP_WAIT_POLICY"] == "PASSIVE"
    env = {"OMP_WAIT_POLICY": "ACTIVE"}
    assert t.quiet_waits(env) == {} and env["OMP_WAIT_POLICY"] == "ACTIVE"


def test_use_threads_leaves_the_count_for_the_runtimes(monkeypatch, capsys):
    for name in ("OMP_NUM_THREADS", "OMP_WAIT_POLICY"):   # monkeypatch restores what use_threads sets
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setattr(t, "OthersCPU", lambda: type("W", (), {"cores": lambda self: 0.0})())
    c = t.use_threads(1)
    assert os.environ["OMP_NUM_THREADS"] == "1" and t.default_threads() == 1
    assert "OMP_WAIT_POLICY" not in os.environ and c.wait_policy is None   # quiet: the runtimes spin, fast
    assert capsys.readouterr().err.strip() == c.line() and c.line().startswith("threads: 1 (")
    assert c.line().endswith("idle threads spin)")


def test_a_busy_machine_makes_idle_threads_sleep(monkeypatch, capsys):
    for name in ("OMP_NUM_THREADS", "OMP_WAIT_POLICY"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setattr(t, "usable_cpus", lambda root=None: 2)
    monkeypatch.setattr(t, "OthersCPU", lambda: type("W", (), {"cores": lambda self: 2.0})())
    c = t.use_threads()
    assert c.threads == 1 and os.environ["OMP_WAIT_POLICY"] == "PASSIVE" and c.wait_policy == "PASSIVE"
    assert c.line().endswith("idle threads sleep)")


def test_nothing_left_to_decide_takes_no_sample(monkeypatch):
    monkeypatch.setenv("OMP_NUM_THREADS", "2")
    monkeypatch.setenv("OMP_WAIT_POLICY", "PASSIVE")
    monkeypatch.setattr(t, "OthersCPU", lambda: pytest.fail("sampled although the user fixed everything"))
    assert t.choose_threads().others_cores is None
