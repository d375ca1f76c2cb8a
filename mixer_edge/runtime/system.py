"""The machine a measurement ran on: resident memory (the model's and the process's), the CPU (model
and instruction-set flags), GPUs, and the versions every result records."""
from __future__ import annotations

import os
import platform
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np

RUNTIME_VERSION = "1"   # of this package's measurements and result fields ("edge_bench" in versions)


# ---- memory -------------------------------------------------------------------------------------

def _proc_status_mb(key: str) -> float | None:
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith(key + ":"):
                return int(line.split()[1]) / 1024  # kB
    except (OSError, ValueError, IndexError):
        pass
    return None


def reset_peak_rss() -> bool:
    """Linux: reset the high-water mark to the current RSS (clear_refs 5), so a peak read later
    belongs to what ran since. False where that is not possible."""
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
        return True
    except OSError:
        return False


def current_rss_mb() -> float | None:
    return _proc_status_mb("VmRSS")


def peak_rss_mb(since_reset: bool = False) -> float | None:
    """Peak resident memory of this process in MiB: ru_maxrss (Linux KiB, macOS bytes), or
    /proc/self/status VmHWM after reset_peak_rss()."""
    if since_reset:
        return _proc_status_mb("VmHWM")
    try:
        import resource
    except ImportError:  # Windows
        return None
    r = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return r / 2 ** 20 if sys.platform == "darwin" else r / 1024


@dataclass(frozen=True)
class MemoryMark:
    """Resident memory just before a model is loaded; scoped: the high-water mark was reset there."""
    before_mb: float | None
    scoped: bool


def mark_memory() -> MemoryMark:
    """Garbage collected and glibc's free heap handed back first: memory an earlier model freed
    would otherwise be reused by this one without showing in the resident figure."""
    import gc

    gc.collect()
    _trim_heap()
    scoped = reset_peak_rss()
    return MemoryMark(current_rss_mb(), scoped)


def _trim_heap() -> None:
    try:
        import ctypes

        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):  # not glibc (macOS, musl, Windows): nothing to hand back
        pass


def model_rss_mb(mark: MemoryMark) -> float | None:
    """The model's memory: resident memory added since the mark (its high-water mark where it
    could be reset, else the current RSS), read after load and the first inference. The process
    total (a 0.7 MB model in a 650 MB process with torch) says little about the model."""
    now = peak_rss_mb(since_reset=True) if mark.scoped else current_rss_mb()
    return None if now is None or mark.before_mb is None else max(now - mark.before_mb, 0.0)


def process_memory(mark: MemoryMark) -> dict:
    """The whole process's peak RSS, with what it covers, beside the model's own figure."""
    return {"process_peak_rss_mb": peak_rss_mb(since_reset=mark.scoped), "rss_before_load_mb": mark.before_mb,
            "process_peak_rss_scope": "process total, peak since load" if mark.scoped
            else "process total, peak over the process's life"}


# ---- the CPU, GPUs, the device ------------------------------------------------------------------

ISA_FLAGS = ("sse4_2", "avx", "avx2", "fma", "f16c", "avx512f", "avx512bw", "avx512vl", "avx512_vnni",
             "avx_vnni", "avx512_bf16", "avx512_fp16", "amx_tile", "amx_bf16", "amx_int8", "amx_fp16",
             "neon", "asimd", "asimdhp", "asimddp", "fphp", "bf16", "i8mm", "sve", "sve2", "sme")
X86_BF16 = ("avx512_bf16", "amx_bf16")   # the x86 flags with which a CPU computes bf16 in hardware


def _cpuinfo() -> dict:
    """Keys of the first processor block of /proc/cpuinfo plus the flags / Features line."""
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return {}
    info = {}
    for line in text.splitlines():
        key, sep, value = line.partition(":")
        if sep:
            info.setdefault(key.strip(), value.strip())
    return info


def _sysctl(name: str) -> str | None:
    try:
        return subprocess.run(["sysctl", "-n", name], capture_output=True, text=True, timeout=5).stdout.strip() or None
    except (OSError, subprocess.SubprocessError):
        return None


def isa_flags(info: dict | None = None) -> list:
    """The ISA_FLAGS this CPU has, in that order (what decides int8 / bf16 kernels)."""
    info = _cpuinfo() if info is None else info
    have = set((info.get("flags") or info.get("Features") or "").split())
    if "asimd" in have:
        have.add("neon")  # Linux on AArch64 calls NEON asimd
    if sys.platform == "darwin":
        if platform.machine() == "arm64":
            have.add("neon")
        for flag, key in (("bf16", "hw.optional.arm.FEAT_BF16"), ("i8mm", "hw.optional.arm.FEAT_I8MM"),
                          ("asimddp", "hw.optional.arm.FEAT_DotProd"), ("avx2", "hw.optional.avx2_0"),
                          ("avx512f", "hw.optional.avx512f")):
            if _sysctl(key) == "1":
                have.add(flag)
    return [f for f in ISA_FLAGS if f in have]


def cpu_model(info: dict | None = None) -> str:
    info = _cpuinfo() if info is None else info
    for key in ("model name", "Model", "Hardware", "cpu model"):
        if info.get(key):
            return info[key]
    board = Path("/proc/device-tree/model")
    if board.is_file():
        return board.read_text(errors="replace").strip("\x00 \n")
    if sys.platform == "darwin":
        return _sysctl("machdep.cpu.brand_string") or platform.processor() or "unknown"
    return platform.processor() or platform.machine() or "unknown"


def is_jetson(root: Path = Path("/")) -> bool:
    """An NVIDIA Jetson: L4T's release file, or JetPack's power-mode tool on PATH."""
    return (root / "etc/nv_tegra_release").is_file() or bool(shutil.which("nvpmodel"))


def affinity_cpus() -> int:
    """CPUs in this process's affinity mask (all of them where there is no mask: macOS, Windows)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:
        return os.cpu_count() or 1


def cgroup_quota(root: Path = Path("/")) -> float | None:
    """A container's CPU quota in CPUs (1.5 for "150000 100000"), None where there is none."""
    for quota_file, period_file in _quota_files(root):
        try:
            if quota_file.name == "cpu.max":   # cgroup v2: "QUOTA PERIOD" or "max PERIOD"
                quota, period = quota_file.read_text().split()[:2]
            else:                              # cgroup v1: two files, -1 for no quota
                quota, period = quota_file.read_text().strip(), period_file.read_text().strip()
        except (OSError, ValueError):
            continue
        if quota in ("max", "-1"):
            return None
        try:
            return int(quota) / int(period)
        except (ValueError, ZeroDivisionError):
            return None
    return None


def _quota_files(root: Path):
    """(quota file, period file) candidates: this process's own cgroup first, then the mount's root."""
    base = root / "sys/fs/cgroup"
    own = []
    try:
        for line in (root / "proc/self/cgroup").read_text().splitlines():
            _, controllers, path = line.split(":", 2)
            if controllers == "":                                  # v2: "0::/path"
                own.append((base / path.lstrip("/") / "cpu.max", None))
            elif "cpu" in controllers.split(","):                   # v1: "N:cpu,cpuacct:/path"
                d = base / "cpu" / path.lstrip("/")
                own.append((d / "cpu.cfs_quota_us", d / "cpu.cfs_period_us"))
    except (OSError, ValueError):
        pass
    return [(q, p) for q, p in [*own, (base / "cpu.max", None),
                                (base / "cpu/cpu.cfs_quota_us", base / "cpu/cpu.cfs_period_us")] if q.is_file()]


def usable_cpus(root: Path = Path("/")) -> int:
    """CPUs this process may use: the affinity mask, capped by the container's quota (rounded down,
    at least 1): a 1.5-CPU quota on a 64-core host is one thread's worth, not 64."""
    n = affinity_cpus()
    quota = cgroup_quota(root)
    return max(1, min(n, int(quota))) if quota is not None else n


def _gpus() -> list | None:
    if not shutil.which("nvidia-smi"):
        return None
    try:
        out = subprocess.run(["nvidia-smi", "--query-gpu=name,driver_version,memory.total", "--format=csv,noheader"],
                             capture_output=True, text=True, timeout=10).stdout
    except (OSError, subprocess.SubprocessError):
        return None
    return [line.strip() for line in out.splitlines() if line.strip()] or None


def device_info(name: str | None = None) -> dict:
    info = _cpuinfo()
    return {"name": name or platform.node() or "unknown", "hostname": platform.node(), "cpu": cpu_model(info),
            "cores_logical": os.cpu_count(), "cores_usable": usable_cpus(), "isa": isa_flags(info),
            "machine": platform.machine(), "os": platform.platform(), "gpus": _gpus()}


def base_versions() -> dict:
    v = {"python": platform.python_version(), "numpy": np.__version__, "edge_bench": RUNTIME_VERSION}
    if "PIL" in sys.modules:
        v["pillow"] = getattr(sys.modules["PIL"], "__version__", "?")
    return v
