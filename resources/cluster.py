"""The cluster in documents: ``cluster://state`` (JSON) and the Markdown section of the
experiment context and the agent prompts.

Both read the persisted ``detect_cluster`` result; the section never triggers a detection
itself (rendering a prompt must not probe the machine), it says how to get one instead.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from mcp_server.core.run_views import ClusterInfo, GpuView
    from mcp_server.core.services import Services

CLUSTER_TYPES: tuple[str, ...] = ("local_gpu", "slurm", "cpu_only")
MAX_GPU_ROWS = 16


def cluster_state_json(services: Services) -> str:
    return services.cluster.get().model_dump_json(indent=2)


@dataclass(frozen=True)
class ClusterSection:
    type: str | None  # local_gpu | slurm | cpu_only, or None when not detected
    markdown: str


def current_cluster(services: Services) -> ClusterInfo | None:
    """The last detection (leases as they are now), or None when nothing was detected yet."""
    return services.cluster.last()


def _gpu_line(gpu: GpuView) -> str:
    parts = [f"GPU {gpu.index}", gpu.name, f"{gpu.memory_used_mib:.0f}/{gpu.memory_total_mib:.0f} MiB used"]
    if gpu.utilization_pct is not None:
        parts.append(f"{gpu.utilization_pct}% busy")
    if gpu.leased_by:
        parts.append(f"leased by {gpu.leased_by}")
    foreign = [p for p in gpu.processes if p.run_id is None]
    if foreign:
        owners = sorted({p.user or "?" for p in foreign})
        parts.append(f"{len(foreign)} foreign process(es) ({', '.join(owners)})")
    parts.append("free" if gpu.free else f"busy: {gpu.busy_reason or 'in use'}")
    return "- " + ", ".join(parts)


def cluster_section(info: ClusterInfo | None, *, can_detect: bool) -> ClusterSection:
    """Markdown describing the cluster, and its type (None when unknown)."""
    if info is None:
        how = "call detect_cluster" if can_detect else "ask the user what hardware runs should use"
        return ClusterSection(None, f"Cluster: not detected yet — {how}.")
    lines = [f"Cluster type: **{info.type}** (detected {info.detected_at}, status {info.status})"]
    if info.gpus:
        lines.append(f"GPUs: {len(info.gpus)}")
        lines += [_gpu_line(g) for g in info.gpus[:MAX_GPU_ROWS]]
        if len(info.gpus) > MAX_GPU_ROWS:
            lines.append(f"- … {len(info.gpus) - MAX_GPU_ROWS} more")
    host = info.host
    memory = f", {host.memory_total_mib / 1024:.0f} GiB memory" if host.memory_total_mib else ""
    lines.append(f"CPUs: {host.cpus_usable} usable of {host.cpus}{memory}")
    if info.type == "cpu_only":
        lines.append(f"Local runs at once: {info.cpu_run_limit}")
    if info.queued_runs:
        lines.append(f"Queued local runs: {len(info.queued_runs)}")
    from mcp_server.core.backends import registry

    lines += registry.describe(info.backends)
    return ClusterSection(info.type, "\n".join(lines))
