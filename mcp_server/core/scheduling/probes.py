"""Bounded probes of the machine: GPUs, CPUs and memory (engines probe themselves: core.backends).

A GPU that fell off the bus can make NVML or nvidia-smi hang for minutes, and a Slurm
controller that is down makes ``scontrol`` wait for its message timeout. Every probe
therefore runs under a deadline (a thread for library calls, a subprocess timeout for
commands) and reports "did not answer within N s" instead of blocking the server.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import socket
import subprocess
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TypeVar

from mcp_server.core.scheduling import nvml
from mcp_server.core.scheduling.nvml import NvmlGpu, NvmlProcess, NvmlUnavailable

T = TypeVar("T")


class ProbeTimeout(Exception):
    pass


def bounded(fn: Callable[[], T], timeout_s: float, what: str) -> T:
    """Run ``fn`` on a daemon thread; give up (leaving it behind) after ``timeout_s``."""
    box: dict[str, object] = {}

    def run() -> None:
        try:
            box["value"] = fn()
        except BaseException as err:
            box["error"] = err

    thread = threading.Thread(target=run, name=f"probe-{what}", daemon=True)
    thread.start()
    thread.join(timeout_s)
    if thread.is_alive():
        raise ProbeTimeout(f"{what} did not answer within {timeout_s:g} s")
    if "error" in box:
        raise box["error"]  # type: ignore[misc]
    return box["value"]  # type: ignore[return-value]


# ---- GPUs --------------------------------------------------------------------------------


@dataclass
class GpuProbe:
    gpus: list[NvmlGpu] = field(default_factory=list)
    source: str | None = None  # nvml | fake-nvml | nvidia-smi
    error: str | None = None  # set when GPUs may exist but could not be read
    signals: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return self.error is None


SMI_GPUS = [
    "--query-gpu=index,uuid,name,memory.total,memory.used,utilization.gpu",
    "--format=csv,noheader,nounits",
]
SMI_APPS = ["--query-compute-apps=gpu_uuid,pid,used_memory", "--format=csv,noheader,nounits"]


def _number(text: str) -> float | None:
    try:
        return float(text.strip())
    except ValueError:
        return None  # "[N/A]", "[Not Supported]"


def parse_nvidia_smi(gpus_csv: str, apps_csv: str) -> list[NvmlGpu]:
    """Turn nvidia-smi's CSV (noheader, nounits) into the same records NVML gives."""
    procs: dict[str, list[NvmlProcess]] = {}
    for line in apps_csv.splitlines():
        parts = [p.strip() for p in line.split(",")]
        if len(parts) < 3 or not parts[1].isdigit():
            continue
        procs.setdefault(parts[0], []).append(NvmlProcess(int(parts[1]), _number(parts[2]), "compute"))
    gpus = []
    for line in gpus_csv.splitlines():
        parts = [p.strip() for p in line.split(",")]
        if len(parts) < 6 or not parts[0].isdigit():
            continue
        util = _number(parts[5])
        gpus.append(
            NvmlGpu(
                index=int(parts[0]),
                uuid=parts[1],
                name=parts[2],
                memory_total_mib=_number(parts[3]) or 0.0,
                memory_used_mib=_number(parts[4]) or 0.0,
                utilization_pct=None if util is None else int(util),
                processes=tuple(procs.get(parts[1], [])),
            )
        )
    return gpus


def _nvidia_smi(exe: str, timeout_s: float) -> list[NvmlGpu]:
    gpus = subprocess.run([exe, *SMI_GPUS], capture_output=True, text=True, timeout=timeout_s, check=True)
    apps = subprocess.run([exe, *SMI_APPS], capture_output=True, text=True, timeout=timeout_s, check=False)
    return parse_nvidia_smi(gpus.stdout, apps.stdout if apps.returncode == 0 else "")


_nvml_busy = threading.Lock()  # held while an NVML query runs (even one we stopped waiting for)


def _query_nvml() -> list[NvmlGpu]:
    try:
        return nvml.query()
    finally:
        _nvml_busy.release()


def probe_gpus(timeout_s: float) -> GpuProbe:
    """NVML first; nvidia-smi only when NVML cannot load but the command exists."""
    source = nvml.source_name()
    # A hung driver keeps its query thread forever; never start a second one behind it
    # (a query of another thread that is merely running is waited for).
    if not _nvml_busy.acquire(timeout=timeout_s):
        msg = f"{source} is still busy with an earlier query that did not answer"
        return GpuProbe([], None, msg, [msg])
    try:
        gpus = bounded(_query_nvml, timeout_s, source)
        return GpuProbe(gpus, source, None, [f"{source}: {len(gpus)} GPU(s)"])
    except ProbeTimeout as err:
        return GpuProbe([], None, str(err), [str(err)])
    except NvmlUnavailable as err:
        if not err.library_missing:
            return GpuProbe([], None, str(err), [str(err)])
        signals = ["NVML library not found (no NVIDIA driver)"]
    exe = shutil.which("nvidia-smi")
    if exe is None:
        return GpuProbe([], None, None, [*signals, "nvidia-smi not on PATH"])
    try:
        gpus = _nvidia_smi(exe, timeout_s)
    except subprocess.TimeoutExpired:
        msg = f"nvidia-smi did not answer within {timeout_s:g} s"
        return GpuProbe([], None, msg, [*signals, msg])
    except (OSError, subprocess.CalledProcessError) as err:
        msg = f"nvidia-smi failed: {err}"
        return GpuProbe([], None, msg, [*signals, msg])
    return GpuProbe(gpus, "nvidia-smi", None, [*signals, f"nvidia-smi: {len(gpus)} GPU(s)"])


# ---- CPUs and memory ---------------------------------------------------------------------


@dataclass
class HostProbe:
    hostname: str
    cpus: int
    cpus_usable: int
    memory_total_mib: float | None
    memory_available_mib: float | None


def probe_host() -> HostProbe:
    cpus = os.cpu_count() or 1
    try:
        usable = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        usable = cpus
    mem: dict[str, float] = {}
    try:
        with open("/proc/meminfo") as fh:
            for line in fh:
                key, _, rest = line.partition(":")
                if key in ("MemTotal", "MemAvailable"):
                    mem[key] = round(int(rest.split()[0]) / 1024, 1)
    except (OSError, ValueError, IndexError):
        pass
    if "MemTotal" not in mem:
        with contextlib.suppress(ValueError, OSError, AttributeError):
            mem["MemTotal"] = round(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**20, 1)
    return HostProbe(socket.gethostname(), cpus, usable, mem.get("MemTotal"), mem.get("MemAvailable"))
