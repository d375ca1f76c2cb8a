"""The conditions a measurement ran under, read before and after it: power mode and whether clocks
were locked (Jetson: `nvpmodel -q`, `jetson_clocks --show`, else the world-readable sysfs), GPU and
memory clocks (`nvidia-smi` or the Jetson GPU's devfreq), temperatures, the CPU governor, what
other processes used of the CPUs during the run, and on a Mac the macOS version and the chip.

A latency figure means little without them: an Orin in its 15 W mode, or with dynamic clocks
that idle between calls, is 2-3x slower than the same Orin under `sudo jetson_clocks`; two
processes spinning on two cores made a demo 9x slower. Every reading is best effort (a missing
tool or an unreadable file gives None, never an error), and warnings() turns them into the lines
the device prints and `mixer-edge report` repeats per row.
"""
from __future__ import annotations

import os
import platform
import re
import shutil
import subprocess
import time
from pathlib import Path

from .system import is_jetson, usable_cpus

# Other processes using this much of the CPUs on average during the run (in cores) make it "busy":
# a quarter of a core taken from a 1- or 2-thread benchmark moves its median measurably.
BUSY_CORES = 0.25
# Where no CPU-time counters exist (a Mac: `ps` only), the 1-minute load average per usable core
# before the run above this says busy.
BUSY_LOAD_PER_CORE = 0.5
TIMEOUT_S = 5


def _run(*cmd: str) -> str | None:
    """stdout of a command that exited 0, else None (absent, refused, timed out)."""
    if not shutil.which(cmd[0]):
        return None
    try:
        r = subprocess.run(cmd, capture_output=True, text=True, timeout=TIMEOUT_S)
    except (OSError, subprocess.SubprocessError):
        return None
    return r.stdout if r.returncode == 0 else None


def _read(path: Path) -> str | None:
    try:
        return path.read_text().strip()
    except (OSError, UnicodeDecodeError):
        return None


def _int(text) -> int | None:
    try:
        return int(str(text).strip().split()[0])
    except (ValueError, IndexError, TypeError):
        return None


# ---- Jetson -------------------------------------------------------------------------------------

def power_mode(text: str | None) -> dict | None:
    """`nvpmodel -q`: 'NV Power Mode: MAXN' then the mode's id on a line of its own."""
    m = re.search(r"NV Power Mode:\s*(\S+)", text or "")
    if not m:
        return None
    ids = [int(line) for line in (text or "").splitlines() if line.strip().isdigit()]
    return {"name": m.group(1), "id": ids[0] if ids else None}


def parse_jetson_clocks(text: str | None) -> dict | None:
    """`jetson_clocks --show` (root only): per CPU 'cpuN: ... MinFreq=a MaxFreq=b CurrentFreq=c',
    'GPU MinFreq=a MaxFreq=b CurrentFreq=c', 'EMC MinFreq=a MaxFreq=b CurrentFreq=c FreqOverride=f'.
    Locked is what jetson_clocks makes: every CPU and the GPU at min == max, the EMC at its max."""
    if not text or "GPU MinFreq=" not in text:
        return None
    freq = r"MinFreq=(\d+) MaxFreq=(\d+) CurrentFreq=(\d+)"
    cpus = [tuple(map(int, m)) for m in re.findall(r"^cpu\d+:.*?Online=1.*?" + freq, text, re.M)]
    gpu = re.search(r"^GPU " + freq, text, re.M)
    emc = re.search(r"^EMC " + freq, text, re.M)
    gpu_v = tuple(map(int, gpu.groups())) if gpu else None
    emc_v = tuple(map(int, emc.groups())) if emc else None
    locked = (all(lo == hi for lo, hi, _ in cpus) and gpu_v is not None and gpu_v[0] == gpu_v[1]
              and (emc_v is None or emc_v[2] == emc_v[1]))
    return {"clocks_locked": locked, "clocks_source": "jetson_clocks --show",
            "gpu_mhz": gpu_v and gpu_v[2] / 1e6, "gpu_max_mhz": gpu_v and gpu_v[1] / 1e6,
            "emc_mhz": emc_v and emc_v[2] / 1e6, "emc_max_mhz": emc_v and emc_v[1] / 1e6,
            "cpu_mhz": max((c for _, _, c in cpus), default=0) / 1e3 or None}


def sysfs_clocks(root: Path = Path("/")) -> dict | None:
    """Without root: the Jetson GPU's devfreq (min_freq, max_freq, cur_freq in Hz) and each CPU's
    cpufreq (scaling_min_freq, scaling_max_freq in kHz); locked where both are pinned at min == max,
    as jetson_clocks leaves them. The memory clock (EMC) is root-only (debugfs): not read here."""
    gpus = [d for d in sorted((root / "sys/class/devfreq").glob("*"))
            if re.search(r"gpu|g[apv]\d+b", d.name) and (d / "cur_freq").exists()]
    gpu = gpus[0] if gpus else None
    lo, hi, cur = (_int(_read(gpu / f)) for f in ("min_freq", "max_freq", "cur_freq")) if gpu else (None,) * 3
    cpus = [(_int(_read(c / "scaling_min_freq")), _int(_read(c / "scaling_max_freq")))
            for c in sorted((root / "sys/devices/system/cpu").glob("cpu[0-9]*/cpufreq"))]
    if cur is None and not cpus:
        return None
    known = hi is not None and lo is not None and all(a is not None and b is not None for a, b in cpus)
    locked = (lo == hi and all(a == b for a, b in cpus)) if known else None
    return {"clocks_locked": locked, "clocks_source": "sysfs (jetson_clocks --show needs root)",
            "gpu_mhz": cur and cur / 1e6, "gpu_max_mhz": hi and hi / 1e6, "emc_mhz": None, "emc_max_mhz": None,
            "cpu_mhz": None}


def jetson(root: Path = Path("/")) -> dict | None:
    if not is_jetson(root):
        return None
    clocks = parse_jetson_clocks(_run("jetson_clocks", "--show")) or sysfs_clocks(root) or {
        "clocks_locked": None, "clocks_source": "unreadable"}
    return {"power_mode": power_mode(_run("nvpmodel", "-q")), **clocks}


# ---- GPUs with nvidia-smi, temperatures, the CPU, the Mac ---------------------------------------

SMI_FIELDS = ("name", "clocks.sm", "clocks.max.sm", "clocks.mem", "clocks.max.mem", "temperature.gpu", "pstate")


def nvidia_gpus() -> list | None:
    out = _run("nvidia-smi", f"--query-gpu={','.join(SMI_FIELDS)}", "--format=csv,noheader,nounits")
    gpus = []
    for line in (out or "").splitlines():
        cells = [c.strip() for c in line.split(",")]
        if len(cells) == len(SMI_FIELDS):
            name, sm, sm_max, mem, mem_max, temp, pstate = cells
            gpus.append({"name": name, "sm_mhz": _int(sm), "sm_max_mhz": _int(sm_max), "mem_mhz": _int(mem),
                         "mem_max_mhz": _int(mem_max), "temperature_c": _int(temp), "pstate": pstate})
    return gpus or None


def temperatures(root: Path = Path("/")) -> dict | None:
    """Thermal zones: {type: degrees C} (the kernel gives millidegrees)."""
    out = {}
    for zone in sorted((root / "sys/class/thermal").glob("thermal_zone*")):
        kind, milli = _read(zone / "type"), _int(_read(zone / "temp"))
        if kind and milli is not None and milli > 0:
            out[kind] = round(milli / 1000, 1)
    return out or None


def cpu_governor(root: Path = Path("/")) -> str | None:
    return _read(root / "sys/devices/system/cpu/cpu0/cpufreq/scaling_governor")


def macos() -> dict | None:
    if platform.system() != "Darwin":
        return None
    chip = _run("sysctl", "-n", "machdep.cpu.brand_string")
    return {"version": platform.mac_ver()[0] or None, "chip": chip.strip() if chip else None}


def _cpu_busy_s(root: Path = Path("/")) -> float | None:
    """Seconds every CPU spent busy since boot (/proc/stat: user nice system irq softirq steal)."""
    line = (_read(root / "proc/stat") or "").split("\n", 1)[0].split()
    if len(line) < 9 or line[0] != "cpu":
        return None
    user, nice, system, _idle, _iowait, irq, softirq, steal = map(int, line[1:9])
    return (user + nice + system + irq + softirq + steal) / os.sysconf("SC_CLK_TCK")


def _others_percent() -> float | None:
    """Where there is no /proc/stat (a Mac): the %CPU `ps` gives every other process, summed."""
    out = _run("ps", "-A", "-o", "pid=,%cpu=")
    if out is None:
        return None
    me, total = os.getpid(), 0.0
    for line in out.splitlines():
        parts = line.split()
        if len(parts) == 2 and parts[0].isdigit() and int(parts[0]) != me:
            try:
                total += float(parts[1].replace(",", "."))
            except ValueError:
                pass
    return total


def _self_cpu_s() -> float:
    t = os.times()
    return t.user + t.system + t.children_user + t.children_system


def snapshot() -> dict:
    """What can be read now: load, governor, clocks, temperatures, power mode."""
    try:
        load = [round(x, 2) for x in os.getloadavg()]
    except (OSError, AttributeError):
        load = None
    return {"load_avg": load, "cpu_governor": cpu_governor(), "temperatures_c": temperatures(),
            "jetson": jetson(), "nvidia_gpus": nvidia_gpus(), "macos": macos()}


class OthersCPU:
    """The CPU cores other processes used from now until cores() is called: all CPUs' busy time
    (/proc/stat) minus this process's own; on a Mac, the mean of two `ps` samples. None: unknown."""

    def __init__(self):
        self.t0, self.busy0, self.self0 = time.monotonic(), _cpu_busy_s(), _self_cpu_s()
        self.ps0 = None if self.busy0 is not None else _others_percent()

    def cores(self) -> float | None:
        wall, busy1 = time.monotonic() - self.t0, _cpu_busy_s()
        if self.busy0 is not None and busy1 is not None and wall > 0:
            return max((busy1 - self.busy0) - (_self_cpu_s() - self.self0), 0.0) / wall
        if self.ps0 is not None and (ps1 := _others_percent()) is not None:
            return (self.ps0 + ps1) / 200   # mean of two samples, % of one core -> cores
        return None

    def seconds(self) -> float:
        return time.monotonic() - self.t0


def load_entry(others: float | None) -> dict:
    """A result row's "load": the cores other processes used while it was measured, and whether
    that makes it busy (BUSY_CORES)."""
    return {"others_cores": None if others is None else round(others, 3),
            "busy": others is not None and others >= BUSY_CORES}


class Watch:
    """Conditions around one measurement: start() before loading the model, finish() after the
    last timed call. finish() gives the result's "conditions": before, after, the CPU cores other
    processes used meanwhile, whether clocks were locked, and the warnings."""

    def __init__(self):
        self.cores = usable_cpus()
        self.before = snapshot()
        self.others = OthersCPU()

    def finish(self, compute_units: str | None = None) -> dict:
        others, wall = self.others.cores(), self.others.seconds()
        after = snapshot()
        doc = {"before": self.before, "after": after, "seconds": round(wall, 2), "cores_usable": self.cores,
               "others_cores": None if others is None else round(others, 3), "clocks_locked": clocks_locked(after),
               "compute_units": compute_units}
        return {**doc, "warnings": warnings(doc)}


def clocks_locked(snap: dict) -> bool | None:
    """Jetson: as jetson_clocks leaves them. Elsewhere the CPU governor: 'performance' counts as
    locked (no frequency ramp between calls), any other as not; None where neither is readable
    (a VM, a Mac, a GPU host whose lock nvidia-smi does not report)."""
    j = snap.get("jetson")
    if j is not None:
        return j.get("clocks_locked")
    gov = snap.get("cpu_governor")
    return None if gov is None else gov == "performance"


def warnings(cond: dict | None) -> list[str]:
    """One line per condition that makes the figures less trustworthy; [] for none (or no record)."""
    if not cond:
        return []
    out, before = [], cond.get("before") or {}
    j = before.get("jetson")
    if cond.get("clocks_locked") is False:
        out.append("clocks not locked: run `sudo jetson_clocks` before benchmarking" if j else
                   f"clocks not locked: CPU governor {before.get('cpu_governor')!r}, not 'performance' "
                   f"(sudo cpupower frequency-set -g performance)")
    elif j is not None and cond.get("clocks_locked") is None:
        out.append("could not tell whether the Jetson's clocks were locked (jetson_clocks --show and sysfs unreadable)")
    if j is not None and not j.get("power_mode"):
        out.append("Jetson power mode unknown (nvpmodel -q failed)")
    others = cond.get("others_cores")
    if others is not None and others >= BUSY_CORES:
        out.append(f"busy: other processes used {others:.2f} CPU cores on average during the run")
    elif others is None:
        load, cores = before.get("load_avg"), cond.get("cores_usable") or 1
        if load and load[0] / cores > BUSY_LOAD_PER_CORE:
            out.append(f"busy: 1-minute load average {load[0]:.2f} on {cores} cores before the run")
    return out


def summary(cond: dict | None) -> str:
    """One cell: power mode, clocks, GPU clock, temperature before -> after, other processes' load."""
    if not cond:
        return "not recorded"
    before, after = cond.get("before") or {}, cond.get("after") or {}
    parts = []
    j = after.get("jetson") or before.get("jetson")
    if j:
        pm = j.get("power_mode") or {}
        parts.append(f"{pm.get('name', '?')} ({pm.get('id', '?')})" if pm else "power mode ?")
        if j.get("gpu_mhz"):
            parts.append(f"GPU {j['gpu_mhz']:.0f}/{j['gpu_max_mhz'] or 0:.0f} MHz")
        if j.get("emc_mhz"):
            parts.append(f"EMC {j['emc_mhz']:.0f}/{j['emc_max_mhz'] or 0:.0f} MHz")
    for g in [] if j else after.get("nvidia_gpus") or []:   # a Jetson's nvidia-smi answers [N/A]: its sysfs says more
        clocks = [f"{what} {g[k]}/{g[top] or '?'} MHz" for what, k, top in
                  (("SM", "sm_mhz", "sm_max_mhz"), ("mem", "mem_mhz", "mem_max_mhz")) if g.get(k) is not None]
        parts.append(", ".join([g["name"], *clocks] + ([g["pstate"]] if g.get("pstate") not in (None, "[N/A]") else [])))
    locked, mac = cond.get("clocks_locked"), before.get("macos")
    if locked is not None or not mac:   # a Mac has no clocks to lock: nothing to say
        parts.append({True: "clocks locked", False: "clocks NOT locked", None: "clocks lock unknown"}[locked])
    if before.get("cpu_governor"):
        parts.append(f"governor {before['cpu_governor']}")
    if mac:
        parts.append(f"macOS {mac.get('version') or '?'}, {mac.get('chip') or '?'}")
    if cond.get("compute_units"):
        parts.append(f"compute units {cond['compute_units']}")
    t0, t1 = _hottest(before), _hottest(after)
    if t1 is not None:
        parts.append(f"{t0:.0f}->{t1:.0f} C" if t0 is not None else f"{t1:.0f} C")
    if cond.get("others_cores") is not None:
        parts.append(f"others {cond['others_cores']:.2f} cores")
    return "; ".join(parts)


def _hottest(snap: dict) -> float | None:
    temps = list((snap.get("temperatures_c") or {}).values())
    temps += [g["temperature_c"] for g in snap.get("nvidia_gpus") or [] if g.get("temperature_c") is not None]
    return max(temps, default=None)
