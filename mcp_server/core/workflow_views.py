"""What the sweep, plan, memory and event tools return (plain pydantic; no sqlmodel).

These double as the tools' output schemas, so field descriptions are written for the
model reading them.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, Field

SweepStatus = Literal["empty", "pending", "running", "completed", "failed", "stopped"]
PlanStatus = Literal["draft", "approved", "executing", "completed", "archived"]


class SweepProgress(BaseModel):
    total: int = Field(description="runs in the sweep")
    ready: int = Field(description="created with auto_start=false, not started")
    waiting: int = Field(description="held back by the parallel cap, launched when a slot frees")
    active: int = Field(description="submitted and not ended (queued by the backend, launching, running)")
    finished: int
    failed: int
    stopped: int
    lost: int
    done: int = Field(description="runs that ended (finished, failed, stopped or lost)")
    percent_done: float


class BestRun(BaseModel):
    run_id: str
    name: str
    status: str
    params: dict[str, Any]
    metric: str
    direction: Literal["min", "max"]
    value: float = Field(description="the run's best value of the metric over its history")
    last: float | None = Field(None, description="the metric's most recent value; null when NaN/Inf")
    step: int | None = Field(None, description="step at which the best value was logged")


class SweepRunRow(BaseModel):
    id: str
    name: str
    status: str
    status_reason: str
    exit_code: int | None = None
    params: dict[str, Any] = Field(default_factory=dict)
    metric_value: float | None = Field(None, description="this run's best value of the ranking metric")


class SweepRow(BaseModel):
    id: str
    name: str
    goal: str
    status: SweepStatus
    parallel: int | None = None
    progress: SweepProgress
    created_at: str


class SweepDetail(SweepRow):
    method: Literal["grid", "random"]
    base_command: str | None = None
    parameters: dict[str, Any] = Field(description="the search space as given")
    max_runs: int | None = None
    seed: int | None = Field(None, description="random sweeps: the seed used (pass it again to reproduce)")
    gpus_per_run: int
    backend: str
    workdir: str | None = None
    metric: str | None = Field(None, description="metric used to rank runs (get_sweep's metric argument)")
    direction: Literal["min", "max"] = "min"
    best: BestRun | None = None
    metric_keys: list[str] = Field(
        default_factory=list, description="numeric metric names the sweep's runs have logged"
    )
    runs: list[SweepRunRow] = Field(default_factory=list, description="runs in creation order")
    runs_truncated: bool = False
    note: str = ""


class PlanRow(BaseModel):
    id: str
    title: str
    goal: str
    status: PlanStatus
    session_id: str | None = None
    sweep_ids: list[str] = Field(default_factory=list)
    run_ids: list[str] = Field(default_factory=list)
    created_at: str
    updated_at: str


class PlanDetail(PlanRow):
    raw_markdown: str
    next_statuses: list[str] = Field(description="statuses update_plan may move this plan to")


class PlanList(BaseModel):
    plans: list[PlanRow]
    total: int


class MemoryRow(BaseModel):
    id: str
    title: str
    content: str
    tags: list[str]
    source: str
    active: bool
    created_at: str
    updated_at: str


class MemoryList(BaseModel):
    memories: list[MemoryRow]
    total: int


class EventRow(BaseModel):
    id: int = Field(description="position in the event feed")
    ts: str
    kind: Literal["run_ended", "run_status", "alert"] = Field(
        description="run_ended: a run reached finished/failed/stopped/lost; run_status: any other "
        "status change; alert: an alert was raised"
    )
    run_id: str | None = None
    run_name: str | None = None
    sweep_id: str | None = None
    status: str | None = None
    previous: str | None = None
    reason: str | None = None
    exit_code: int | None = None
    alert_id: str | None = None
    severity: str | None = None
    message: str | None = None


class EventBatch(BaseModel):
    events: list[EventRow]
    cursor: int = Field(description="pass to the next wait_for_events call to continue after these events")
    timed_out: bool = Field(description="true when timeout_s passed with no matching event")
    more: bool = Field(False, description="true when more matching events are ready: call again at once")
    waited_s: float
