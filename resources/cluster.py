"""The cluster section of the experiment context and of the agent prompts.

``current_cluster`` is the one place that reads the persisted cluster state; cluster
detection (``detect_cluster``) is a separate piece of the server, so until a state is
recorded the section says so and how to get one. The section is rendered from whatever
fields the state has, so it tolerates older or newer state documents.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from mcp_server.core.services import Services

CLUSTER_TYPES: tuple[str, ...] = ("local_gpu", "slurm", "cpu_only")
MAX_GPU_ROWS = 16
MAX_PARTITIONS = 12


@dataclass(frozen=True)
class ClusterSection:
    type: str | None  # local_gpu | slurm | cpu_only, or None when not detected
    markdown: str


def current_cluster(services: Services) -> Mapping[str, Any] | None:
    """The last detected cluster state as a mapping with at least ``type``, or None.

    Rewire point: cluster detection persists its state elsewhere; return it here.
    """
    return None


def _gpu_line(gpu: Mapping[str, Any]) -> str:
    parts = [f"GPU {gpu.get('index', '?')}"]
    if gpu.get("name"):
        parts.append(str(gpu["name"]))
    total = gpu.get("memory_total_mb") or gpu.get("memory_mb")
    used = gpu.get("memory_used_mb")
    if total:
        parts.append(f"{used}/{total} MB used" if used is not None else f"{total} MB")
    if gpu.get("utilization") is not None:
        parts.append(f"{gpu['utilization']}% busy")
    holder = gpu.get("lease_holder") or gpu.get("leased_by")
    if holder:
        parts.append(f"leased by {holder}")
    procs = gpu.get("processes")
    if procs:
        parts.append(f"{len(procs)} process(es)")
    return "- " + ", ".join(parts)


def cluster_section(state: Mapping[str, Any] | None, *, can_detect: bool) -> ClusterSection:
    """Markdown describing the cluster, and its type (None when unknown)."""
    if not state:
        how = "call detect_cluster" if can_detect else "ask the user what hardware runs should use"
        return ClusterSection(None, f"Cluster: not detected yet — {how}.")
    kind = state.get("type")
    kind = kind if kind in CLUSTER_TYPES else None
    lines = [f"Cluster type: **{kind or state.get('type') or 'unknown'}**"]
    if state.get("detected_at"):
        lines[0] += f" (detected {state['detected_at']})"
    gpus = list(state.get("gpus") or [])
    if gpus:
        lines.append(f"GPUs: {len(gpus)}")
        lines += [_gpu_line(g) for g in gpus[:MAX_GPU_ROWS] if isinstance(g, Mapping)]
        if len(gpus) > MAX_GPU_ROWS:
            lines.append(f"- … {len(gpus) - MAX_GPU_ROWS} more")
    if state.get("cpus"):
        lines.append(f"CPUs: {state['cpus']}")
    if state.get("memory_gb") or state.get("memory_mb"):
        mem = state.get("memory_gb") or f"{int(state['memory_mb']) // 1024}"
        lines.append(f"Memory: {mem} GB")
    partitions = list(state.get("partitions") or [])
    if partitions:
        names = [p.get("name", "?") if isinstance(p, Mapping) else str(p) for p in partitions]
        more = f" … {len(names) - MAX_PARTITIONS} more" if len(names) > MAX_PARTITIONS else ""
        lines.append("Slurm partitions: " + ", ".join(names[:MAX_PARTITIONS]) + more)
    return ClusterSection(kind, "\n".join(lines))
