"""What tools and the CLI return: plain pydantic models (no sqlmodel, cheap to import).

They are also the tools' output models: a tool's answer is the model as compact JSON without
its null and default fields (``mcp_server.tools.surface``), so every field costs an agent's
context when it is set: add one only when an agent acts on it.
"""

from __future__ import annotations

import math
from datetime import UTC, datetime
from typing import Annotated, Any, Literal

from pydantic import BaseModel, Field, PlainSerializer, SkipValidation


def iso(ts: float | None) -> str | None:
    if ts is None:
        return None
    return datetime.fromtimestamp(ts, UTC).isoformat(timespec="seconds").replace("+00:00", "Z")


class RunBrief(BaseModel):
    """A run as lifecycle tools (create, start, stop, rerun) answer: enough to follow it."""

    id: str
    name: str
    status: str  # ready, queued, launching, running, finished, failed, stopped or lost
    status_reason: str  # why the run is in this status, in words
    exit_code: int | None = None
    leased_gpus: list[int] | None = None  # GPU indices leased now (its CUDA_VISIBLE_DEVICES)


class RunRow(RunBrief):
    """One run, compact (list_runs)."""

    backend: str
    gpus: int
    sweep_id: str | None = None
    created_at: str
    started_at: str | None = None
    ended_at: str | None = None
    duration_s: float | None = None  # from the command's start to its end (or to now)


class RunRecord(RunRow):
    """One run as stored."""

    command: str
    workdir: str
    params: dict[str, Any] = Field(default_factory=dict)
    env_keys: list[str] = Field(default_factory=list)  # names only: values stay in env.sh
    options: dict[str, Any] = Field(default_factory=dict)
    error: str | None = None
    parent_run_id: str | None = None
    backend_ref: str | None = None  # the backend's handle: a tmux target, a Slurm job id
    run_dir: str
    stop_requested_at: str | None = None


class ProvenanceBrief(BaseModel):
    """What a run ran, in a few fields (runs://{id}/provenance has the whole record)."""

    commit: str | None = None  # the workdir's HEAD (12 hex digits)
    branch: str | None = None
    dirty: bool = False  # uncommitted changes at launch
    patch: str | None = None  # the uncommitted diff saved in the run dir, as a diffstat
    omitted: list[str] = Field(default_factory=list)  # changed files not copied (binary, too large)
    python: str | None = None  # version, interpreter and package count, as the job resolved them
    host: str | None = None
    gpus: str | None = None
    seeds: dict[str, Any] = Field(default_factory=dict)
    note: str = ""


class RunDetail(RunRecord):
    """One run in full: the record plus what its sidecar saw (get_run)."""

    provenance: ProvenanceBrief | None = None  # what it ran: code, Python, host, GPUs, seeds
    metrics: list[MetricSummary] = Field(default_factory=list)  # one summary per metric key
    open_alerts: list[AlertView] = Field(default_factory=list)  # newest first
    monitor: MonitorInfo | None = None  # the run's sidecar, once one has started
    note: str = ""


class RunPage(BaseModel):
    runs: list[RunRow]
    total: int  # runs matching the filters
    next_offset: int | None = None  # pass as offset for the next page; absent on the last page


class LogChunk(BaseModel):
    text: str
    start_offset: int  # byte offset of the first returned byte in the file
    end_offset: int  # byte offset just past the last returned byte
    file_size: int
    lines: int
    truncated: bool = False  # more text existed than the caps allowed
    note: str = ""


# ---- cluster ---------------------------------------------------------------------------------

# local_gpu and cpu_only describe this machine; an engine may claim the type (slurm).
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
    backends: dict[str, dict[str, Any]] = Field(
        default_factory=dict, description="what each engine's probe found (slurm, ray, ...)"
    )
    host: HostView
    cpu_run_limit: int = Field(description="local runs at once on a cpu_only machine")
    queued_runs: list[str] = Field(default_factory=list, description="local runs waiting for GPUs or a slot")
    signals: list[str] = Field(default_factory=list, description="what each probe saw")
    warnings: list[str] = Field(default_factory=list)
    detected_at: str


# ---- monitoring ------------------------------------------------------------------------------


def sig(value: float, digits: int = 6) -> float | int:
    """``value`` to ``digits`` significant digits, never fewer than its integer digits.

    A metric's 7th digit never changes a decision, and printing float noise such as
    0.28374659201036 costs an agent's context on every point."""
    if not math.isfinite(value):
        return value
    if value.is_integer() and abs(value) < 2**53:
        return int(value)  # 4096.0 → 4096: a counter or a step-like value prints as one
    return round(value, max(0, digits - 1 - math.floor(math.log10(abs(value)))))


# A metric value as answers print it (the store keeps the exact value).
Value = Annotated[float, PlainSerializer(sig, when_used="json")]


class AlertView(BaseModel):
    id: str
    run_id: str | None = None
    kind: str  # nonfinite, spike, divergence, stall, failure, lost, judge, contention
    severity: Literal["info", "warning", "critical"] | str
    message: str
    choices: list[str]  # pass one of these to resolve_alert
    status: str  # open or resolved
    resolution: str | None = None  # the choice it was resolved with
    created_at: str
    resolved_at: str | None = None
    data: dict[str, Any] = Field(default_factory=dict)  # evidence: values, steps, log lines


class AlertPage(BaseModel):
    alerts: list[AlertView]
    total: int  # alerts matching the filters
    next_offset: int | None = None  # pass as offset for the next page; absent on the last page


class MetricSummary(BaseModel):
    """One metric key of one run, summarised over all of its points (NaN/Inf counted apart)."""

    key: str
    source: str  # jsonl (metrics.jsonl), log (printed output), tfevents, csv, trainer_state (HF)
    count: int
    first_step: int | None = None
    last_step: int | None = None
    last: Value | None = None  # null when the latest value is NaN/Inf
    min: Value | None = None  # smallest finite value
    max: Value | None = None  # largest finite value
    best: Value | None = None  # min for loss-like keys, max for accuracy-like ones; else null
    best_step: int | None = None
    nonfinite: int = 0  # NaN/Inf points
    first_nonfinite_step: int | None = None


class MetricSeriesOut(MetricSummary):
    # [step, value] in step order, null = NaN/Inf; downsampled: each bucket's min and max
    # point, the first and last point and the first NaN/Inf, so spikes and NaNs survive.
    # Not validated one by one: the points are made by the metrics service from stored
    # numbers, and an answer holds up to 20,000 of them (the schema and JSON are unchanged).
    points: SkipValidation[list[tuple[int, Value | None]]]
    downsampled: bool = False


class MissingKey(BaseModel):
    key: str
    hint: str
    similar: list[str] = Field(default_factory=list)  # existing keys that look like it


class IngestStats(BaseModel):
    """How the sidecar read the run's files; non-zero error counters explain missing numbers."""

    metrics_records: int = 0  # metrics.jsonl lines that carried numbers
    log_records: int = 0  # output lines that carried numbers (no metrics.jsonl)
    points: int = 0
    bad_lines: int = 0  # metrics.jsonl lines that were not JSON objects
    non_numeric: int = 0  # values that looked like metrics but were not numbers
    non_numeric_example: str = ""  # the first such value
    huge_lines: int = 0  # lines over 1 MiB, skipped
    partial_lines: int = 0  # an unterminated last line read at the end of the run
    duplicates: int = 0  # points not stored: a better source's series of that key has them
    log_parsing: bool  # true while output.log is parsed (metrics.jsonl still empty)


class MetricSource(BaseModel):
    """One file the sidecar reads metrics from."""

    kind: str  # jsonl, log (printed output), tfevents, csv or trainer_state
    path: str  # run-dir file, or a path under the run's workdir
    records: int = 0  # lines, events or rows read
    keys: int = 0  # metric keys whose series this kind of source owns
    bad: int = 0  # records or values it could not read


class JudgeUsage(BaseModel):
    calls: int = 0
    errors: int = 0
    prompt_tokens: int = 0
    completion_tokens: int = 0
    cost_usd: float = 0.0


class MonitorInfo(BaseModel):
    """The run's sidecar (monitor process)."""

    alive: bool  # its heartbeat is recent
    pid: int | None = None
    heartbeat_age_s: float | None = None
    starts: int = 0  # how many times a sidecar started for this run
    exited: bool = False
    exit_reason: str = ""
    ingest: IngestStats
    sources: list[MetricSource] = Field(default_factory=list, description="where its metrics come from")
    judge: JudgeUsage


class RunMetrics(BaseModel):
    run_id: str
    name: str
    status: str
    keys: list[str] | None = None  # every key the run has, when not every key is in series
    series: list[MetricSeriesOut]
    missing: list[MissingKey] = Field(default_factory=list)  # asked-for keys this run lacks
    ingest: IngestStats | None = None
    note: str = ""


class MetricsAnswer(BaseModel):
    runs: list[RunMetrics]
    points_per_series: int  # the point budget each series got
    note: str = ""


class AlertResolution(BaseModel):
    alert: AlertView
    action: str  # what resolving did: none, stopped or rerun
    run: RunBrief | None = None  # the run after the action (the new run for rerun)
    closed: list[str] = Field(default_factory=list)  # other alerts this resolution closed
    note: str = ""
