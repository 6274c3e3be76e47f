"""What tools and the CLI return: plain pydantic models (no sqlmodel, cheap to import).

These double as the tools' output schemas, so field descriptions are written for the
model reading them.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any, Literal

from pydantic import BaseModel, Field


def iso(ts: float | None) -> str | None:
    if ts is None:
        return None
    return datetime.fromtimestamp(ts, UTC).isoformat(timespec="seconds").replace("+00:00", "Z")


class RunRow(BaseModel):
    """One run, compact."""

    id: str
    name: str
    status: str = Field(description="ready, queued, launching, running, finished, failed, stopped or lost")
    status_reason: str = Field(description="why the run is in this status, in words")
    exit_code: int | None = None
    backend: str
    gpus: int
    leased_gpus: list[int] | None = Field(
        None, description="GPU indices leased to the run now (its CUDA_VISIBLE_DEVICES); null when none"
    )
    sweep_id: str | None = None
    created_at: str
    started_at: str | None = None
    ended_at: str | None = None
    duration_s: float | None = Field(None, description="seconds from command start to end (or to now)")


class RunRecord(RunRow):
    """One run as stored: what lifecycle tools (create, start, stop, rerun) answer with."""

    command: str
    workdir: str
    params: dict[str, Any] = Field(default_factory=dict)
    env_keys: list[str] = Field(
        default_factory=list, description="names of env vars set for the run (values hidden)"
    )
    options: dict[str, Any] = Field(default_factory=dict)
    error: str | None = None
    parent_run_id: str | None = None
    backend_ref: str | None = Field(
        None, description="the backend's handle, e.g. a tmux target or Slurm job id"
    )
    run_dir: str
    queued_at: str | None = None
    launched_at: str | None = None
    updated_at: str
    stop_requested_at: str | None = None


class RunDetail(RunRecord):
    """One run in full: the record plus what its sidecar saw (get_run)."""

    metrics: list[MetricSummary] = Field(default_factory=list, description="one summary per metric key")
    open_alerts: list[AlertView] = Field(default_factory=list, description="newest first")
    monitor: MonitorInfo | None = Field(None, description="the run's sidecar, once one has started")


class RunPage(BaseModel):
    runs: list[RunRow]
    total: int = Field(description="runs matching the filters")
    offset: int
    limit: int
    next_offset: int | None = Field(
        None, description="pass as offset for the next page; null on the last page"
    )


class LogChunk(BaseModel):
    run_id: str
    source: Literal["output", "sidecar"]
    text: str
    start_offset: int = Field(description="byte offset of the first returned byte in the file")
    end_offset: int = Field(description="byte offset just past the last returned byte")
    file_size: int
    lines: int = Field(description="number of lines returned")
    truncated: bool = Field(description="true when more text existed than the caps allowed")
    note: str = ""


# ---- cluster ---------------------------------------------------------------------------------

ClusterType = Literal["local_gpu", "slurm", "cpu_only"]


class GpuProcessView(BaseModel):
    pid: int
    user: str | None = Field(None, description="owner of the process; null when not visible from here")
    used_memory_mib: float | None = None
    kind: str = Field(description="compute or graphics")
    run_id: str | None = Field(None, description="the research-mcp run it belongs to; null = foreign")


class GpuView(BaseModel):
    index: int = Field(description="NVML index = CUDA index under CUDA_DEVICE_ORDER=PCI_BUS_ID")
    uuid: str
    name: str
    memory_total_mib: float
    memory_used_mib: float
    utilization_pct: int | None = None
    processes: list[GpuProcessView] = Field(default_factory=list)
    leased_by: str | None = Field(None, description="run holding a gpuwrap lease on this GPU")
    free: bool = Field(description="no lease, no foreign process, memory use under the threshold")
    busy_reason: str | None = None


class PartitionView(BaseModel):
    name: str
    default: bool
    available: str
    nodes: int
    gres: list[str] = Field(default_factory=list, description="generic resources, e.g. gpu:a100:4")
    cpus_per_node: str
    memory_mb_per_node: str
    time_limit: str
    states: list[str] = Field(default_factory=list)


class SlurmView(BaseModel):
    answered: bool = Field(description="the Slurm controller answered (scontrol ping / sinfo)")
    can_submit: bool = Field(description="answered and sbatch is on PATH")
    controller: str | None = None
    partitions: list[PartitionView] = Field(default_factory=list)
    env: dict[str, str] = Field(default_factory=dict, description="SLURM_* variables of this process")


class HostView(BaseModel):
    hostname: str
    cpus: int
    cpus_usable: int
    memory_total_mib: float | None = None
    memory_available_mib: float | None = None


class ClusterInfo(BaseModel):
    """What this machine offers for runs, and how that was found out."""

    type: ClusterType = Field(description="what runs use: local_gpu, slurm or cpu_only")
    detected_type: ClusterType = Field(description="what the probes found")
    preferred_type: ClusterType | None = Field(None, description="the user's kept choice, if any")
    pinned_by_env: bool = Field(False, description="RESEARCH_MCP_CLUSTER_TYPE fixes the type")
    status: Literal["ok", "degraded"] = Field(
        description="degraded: a probe failed or timed out, or the chosen type is not what was found"
    )
    confidence: float = Field(description="0–1: how sure the probes are of detected_type")
    gpu_count: int
    gpu_source: str | None = Field(None, description="nvml, nvidia-smi or fake-nvml")
    gpus: list[GpuView] = Field(default_factory=list)
    slurm: SlurmView
    host: HostView
    cpu_run_limit: int = Field(description="local runs at once on a cpu_only machine")
    queued_runs: list[str] = Field(default_factory=list, description="local runs waiting for GPUs or a slot")
    signals: list[str] = Field(default_factory=list, description="what each probe saw")
    warnings: list[str] = Field(default_factory=list)
    detected_at: str
    detect_ms: float = Field(description="how long detection took")


# ---- monitoring ------------------------------------------------------------------------------


class AlertView(BaseModel):
    id: str
    run_id: str | None = None
    kind: str = Field(
        description="e.g. nonfinite, spike, divergence, stall, failure, lost, judge, contention"
    )
    severity: Literal["info", "warning", "critical"] | str
    message: str
    choices: list[str] = Field(description="pass one of these to resolve_alert")
    status: str = Field(description="open or resolved")
    resolution: str | None = Field(None, description="the choice it was resolved with")
    created_at: str
    resolved_at: str | None = None
    data: dict[str, Any] = Field(default_factory=dict, description="evidence: values, steps, log lines")


class AlertPage(BaseModel):
    alerts: list[AlertView]
    total: int = Field(description="alerts matching the filters")
    offset: int
    limit: int
    next_offset: int | None = Field(
        None, description="pass as offset for the next page; null on the last page"
    )


class MetricSummary(BaseModel):
    """One metric key of one run, summarised over all of its points."""

    key: str
    source: str = Field(
        description="jsonl (metrics.jsonl), log (printed output), tfevents, csv, trainer_state (HF)"
    )
    count: int = Field(description="points stored")
    first_step: int | None = None
    last_step: int | None = None
    last: float | None = Field(None, description="latest value (null when it is NaN/Inf)")
    min: float | None = Field(None, description="smallest finite value")
    max: float | None = Field(None, description="largest finite value")
    best: float | None = Field(None, description="min for loss-like keys, max for accuracy-like; else null")
    best_step: int | None = None
    nonfinite: int = Field(0, description="NaN/Inf points")
    first_nonfinite_step: int | None = None


class MetricSeriesOut(MetricSummary):
    points: list[tuple[int, float | None]] = Field(
        description="[step, value] pairs in step order; null = NaN/Inf"
    )
    downsampled: bool = Field(description="true when points were reduced to the budget (extremes kept)")


class MissingKey(BaseModel):
    key: str
    hint: str
    similar: list[str] = Field(default_factory=list, description="existing keys that look like it")


class IngestStats(BaseModel):
    """How the sidecar read the run's files; non-zero error counters explain missing numbers."""

    metrics_records: int = Field(0, description="metrics.jsonl lines that carried numbers")
    log_records: int = Field(0, description="output lines that carried numbers (no metrics.jsonl)")
    points: int = 0
    bad_lines: int = Field(0, description="metrics.jsonl lines that were not JSON objects")
    non_numeric: int = Field(0, description="values that looked like metrics but were not numbers")
    non_numeric_example: str = Field("", description="the first such value")
    huge_lines: int = Field(0, description="lines over 1 MiB, skipped")
    partial_lines: int = Field(0, description="an unterminated last line read at the end of the run")
    duplicates: int = Field(0, description="points not stored: a better source's series of that key has them")
    log_parsing: bool = Field(description="true while output.log is parsed (metrics.jsonl still empty)")


class MetricSource(BaseModel):
    """One file the sidecar reads metrics from."""

    kind: str = Field(description="jsonl, log (printed output), tfevents, csv or trainer_state")
    path: str = Field(description="run-dir file, or a path under the run's workdir")
    records: int = Field(default=0, description="lines, events or rows read")
    keys: int = Field(default=0, description="metric keys whose series this kind of source owns")
    bad: int = Field(default=0, description="records or values it could not read")


class JudgeUsage(BaseModel):
    calls: int = 0
    errors: int = 0
    prompt_tokens: int = 0
    completion_tokens: int = 0
    cost_usd: float = 0.0


class MonitorInfo(BaseModel):
    """The run's sidecar (monitor process)."""

    alive: bool = Field(description="its heartbeat is recent")
    pid: int | None = None
    heartbeat_age_s: float | None = None
    starts: int = Field(0, description="how many times a sidecar started for this run")
    exited: bool = False
    exit_reason: str = ""
    ingest: IngestStats
    sources: list[MetricSource] = Field(default_factory=list, description="where its metrics come from")
    judge: JudgeUsage


class RunMetrics(BaseModel):
    run_id: str
    name: str
    status: str
    keys: list[str] = Field(description="every metric key this run has")
    series: list[MetricSeriesOut]
    missing: list[MissingKey] = Field(default_factory=list, description="asked-for keys this run lacks")
    ingest: IngestStats | None = None
    note: str = ""


class MetricsAnswer(BaseModel):
    runs: list[RunMetrics]
    max_points: int
    points_per_series: int = Field(description="the budget each series got (max_points / series)")


class AlertResolution(BaseModel):
    alert: AlertView
    action: str = Field(description="what resolving did: none, stopped or rerun")
    run: RunRecord | None = Field(None, description="the run after the action (the new run for rerun)")
    note: str = ""
