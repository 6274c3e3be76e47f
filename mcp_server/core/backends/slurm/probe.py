"""What ``detect_cluster`` learns of Slurm: does a controller answer, can we submit, which partitions.

Both commands run at once under a timeout (a controller that is down makes ``scontrol`` wait
for its message timeout), so the probe costs the slower of the two, never a hung server.
"""

from __future__ import annotations

import dataclasses
import os
import shutil
import subprocess
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

SLURM_ENV_KEYS = ("SLURM_JOB_ID", "SLURM_CLUSTER_NAME", "SLURM_JOB_PARTITION", "SLURM_CONF", "SLURM_JOB_GPUS")
MAX_PARTITIONS = 12


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


def facts_of(probe: SlurmProbe) -> dict[str, Any]:
    """The probe as ``detect_cluster`` shows it under ``backends.slurm``."""
    return {
        "answered": probe.answered,
        "can_submit": probe.can_submit,
        "controller": probe.controller,
        "partitions": [dataclasses.asdict(p) for p in probe.partitions],
        "env": probe.env,
    }


def describe(facts: Mapping[str, Any]) -> list[str]:
    parts = [p for p in facts.get("partitions") or [] if isinstance(p, dict)]
    if not parts:
        return []
    names = [
        str(p.get("name")) + (f" [{', '.join(p['gres'])}]" if p.get("gres") else "")
        for p in parts[:MAX_PARTITIONS]
    ]
    more = f" … {len(parts) - MAX_PARTITIONS} more" if len(parts) > MAX_PARTITIONS else ""
    return ["Slurm partitions: " + ", ".join(names) + more]
