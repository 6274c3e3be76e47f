"""Bounded probes of the machine: GPUs, Slurm, CPUs and memory.

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
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import TypeVar

from mcp_server.core import nvml
from mcp_server.core.nvml import NvmlGpu, NvmlProcess, NvmlUnavailable

T = TypeVar("T")

SLURM_ENV_KEYS = ("SLURM_JOB_ID", "SLURM_CLUSTER_NAME", "SLURM_JOB_PARTITION", "SLURM_CONF", "SLURM_JOB_GPUS")


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


# ---- Slurm -------------------------------------------------------------------------------


@dataclass
class Partition:
    name: str
    default: bool
    available: str
    nodes: int
    gres: list[str]
    cpus_per_node: str
    memory_mb_per_node: str
    time_limit: str
    states: list[str]


@dataclass
class SlurmProbe:
    answered: bool = False  # the controller answered (ping UP, or sinfo listed partitions)
    can_submit: bool = False  # ... and sbatch is on PATH
    controller: str | None = None
    partitions: list[Partition] = field(default_factory=list)
    env: dict[str, str] = field(default_factory=dict)
    error: str | None = None
    signals: list[str] = field(default_factory=list)


SINFO_FORMAT = "%P|%a|%D|%G|%c|%m|%l|%T"


def parse_sinfo(text: str) -> list[Partition]:
    """``sinfo -h -o '%P|%a|%D|%G|%c|%m|%l|%T'``: one line per partition and node state."""
    parts: dict[str, Partition] = {}
    for line in text.splitlines():
        cols = line.strip().split("|")
        if len(cols) != 8 or not cols[0]:
            continue
        raw, avail, nodes, gres, cpus, mem, limit, state = cols
        name = raw.rstrip("*")
        p = parts.setdefault(name, Partition(name, raw.endswith("*"), avail, 0, [], cpus, mem, limit, []))
        p.nodes += int(nodes) if nodes.isdigit() else 0
        for g in gres.split(","):
            if g and g != "(null)" and g not in p.gres:
                p.gres.append(g)
        if state and state not in p.states:
            p.states.append(state)
    return list(parts.values())


def _all_down(ping: tuple[int, str, str]) -> bool:
    """Whether ``scontrol ping`` found no controller up (a backup answering counts as up)."""
    rc, stdout, stderr = ping
    return rc != 0 or not any(" is UP" in line for line in (stdout or stderr).splitlines())


def slurm_env(environ: Mapping[str, str] | None = None) -> dict[str, str]:
    """The Slurm variables of the environment (set inside a Slurm job)."""
    env = os.environ if environ is None else environ
    return {k: env[k] for k in SLURM_ENV_KEYS if env.get(k)}


def probe_slurm(timeout_s: float, environ: Mapping[str, str] | None = None) -> SlurmProbe:
    probe = SlurmProbe(env=slurm_env(environ))
    if "SLURM_JOB_ID" in probe.env:
        probe.signals.append(f"SLURM_JOB_ID={probe.env['SLURM_JOB_ID']} (running inside a Slurm job)")
    scontrol, sinfo, sbatch = (shutil.which(n) for n in ("scontrol", "sinfo", "sbatch"))
    if not (scontrol or sinfo):
        probe.signals.append("Slurm commands (scontrol, sinfo) not on PATH")
        return probe
    # Both commands at once: the probe costs the slower of the two, not their sum.
    procs: dict[str, subprocess.Popen[str]] = {}
    for name, exe, args in (("ping", scontrol, ["ping"]), ("sinfo", sinfo, ["-h", "-o", SINFO_FORMAT])):
        if exe:
            procs[name] = subprocess.Popen(
                [exe, *args],
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                stdin=subprocess.DEVNULL,
                text=True,
            )
    out: dict[str, tuple[int, str, str]] = {}
    deadline = time.monotonic() + timeout_s
    for name, proc in procs.items():  # the ping first: it answers at once, even when the controller is down
        if name == "sinfo" and "ping" in out and _all_down(out["ping"]):
            # sinfo would retry a dead controller for its whole message timeout: do not wait for it.
            proc.kill()
            proc.communicate()
            probe.signals.append("sinfo not waited for: the controller does not answer")
            continue
        try:
            stdout, stderr = proc.communicate(timeout=max(0.0, deadline - time.monotonic()))
            out[name] = (proc.returncode, stdout, stderr)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.communicate()
            msg = f"{'scontrol ping' if name == 'ping' else 'sinfo'} did not answer within {timeout_s:g} s"
            probe.error = msg
            probe.signals.append(msg)
    if "ping" in out:
        rc, stdout, stderr = out["ping"]
        text = (stdout or stderr).strip().splitlines()
        first = text[0] if text else f"exit {rc}"
        probe.controller = "DOWN" if _all_down(out["ping"]) else "UP"
        probe.signals.append(f"scontrol ping: {first}")
    if "sinfo" in out:
        rc, stdout, stderr = out["sinfo"]
        if rc == 0:
            probe.partitions = parse_sinfo(stdout)
            names = ", ".join(p.name for p in probe.partitions) or "none"
            probe.signals.append(f"sinfo: {len(probe.partitions)} partition(s): {names}")
        else:
            probe.signals.append(f"sinfo failed: {(stderr or stdout).strip()[:200]}")
    probe.answered = probe.controller == "UP" or bool(probe.partitions)
    probe.can_submit = probe.answered and sbatch is not None
    if probe.answered and sbatch is None:
        probe.signals.append("Slurm answers but sbatch is not on PATH: jobs cannot be submitted from here")
    return probe


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
