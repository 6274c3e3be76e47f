"""What the sweep, plan, memory and event tools return (plain pydantic; no sqlmodel).

They are also the tools' output models: see ``mcp_server.core.run_views`` on what a field costs.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, Field

from mcp_server.core.run_views import Value

# The note of a sweep answer that holds one page of its runs.
PAGED = "{total} runs in all: page with offset=next_offset"
# paused: its budget is spent and runs wait for extend_sweep; preview: create_sweep(preview=true)
SweepStatus = Literal["empty", "pending", "running", "paused", "completed", "failed", "stopped", "preview"]
PlanStatus = Literal["draft", "approved", "executing", "completed", "archived"]


class SweepProgress(BaseModel):
    total: int  # runs in the sweep
    ready: int = 0  # created with auto_start=false, not started
    waiting: int = 0  # held back by the parallel cap, launched when a slot frees
    active: int = 0  # submitted and not ended (queued by the backend, launching, running)
    finished: int = 0
    failed: int = 0
    stopped: int = 0
    lost: int = 0
    pruned: int = 0  # of the stopped: stopped early by the sweep's pruner
    done: int = 0  # runs that ended (finished, failed, stopped or lost)
    percent_done: float = 0.0


class BestRun(BaseModel):
    run_id: str
    name: str
    status: str
    params: dict[str, Any]
    value: Value  # the run's best value of the metric over its history
    last: Value | None = None  # the metric's most recent value; null when NaN/Inf
    step: int | None = None  # step at which the best value was logged


class SweepRunRow(BaseModel):
    id: str
    name: str
    status: str
    status_reason: str
    exit_code: int | None = None
    params: dict[str, Any] = Field(default_factory=dict)
    metric_value: Value | None = None  # this run's best value of the ranking metric


class SweepRow(BaseModel):
    id: str
    name: str
    goal: str
    status: SweepStatus
    parallel: int | None = None
    progress: SweepProgress
    created_at: str


class SweepEstimate(BaseModel):
    """What a sweep would cost, from the durations of similar finished runs."""

    runs: int
    per_run_s: float | None = None  # median duration of the similar runs
    wall_s: float | None = None  # with `parallel` runs at once
    gpu_hours: float | None = None
    based_on: str  # which runs the figures come from, or why there is no estimate


class SweepDetail(SweepRow):
    method: Literal["grid", "random", "tpe"]
    base_command: str | None = None
    parameters: dict[str, Any]  # the search space as given
    max_runs: int | None = None
    seed: int | None = None  # random sweeps: the seed used (pass it again to reproduce)
    gpus_per_run: int = 0
    backend: str
    metric: str | None = None  # metric used to rank runs (get_sweep's, else the sweep's own)
    direction: Literal["min", "max"] = "min"
    pruner: str | None = None  # median or halving: stops runs early (SweepRunRow's reason says why)
    budget: dict[str, float] | None = None  # gpu_hours / hours and what was spent of each
    estimate: SweepEstimate | None = None  # preview: the cost, from similar finished runs
    best: BestRun | None = None
    metric_keys: list[str] = Field(default_factory=list)  # metric names the sweep's runs logged
    runs: list[SweepRunRow] = Field(default_factory=list)  # a page of runs, in creation order
    next_offset: int | None = None  # pass as offset for the next page of runs
    note: str = ""


class SweepStopped(BaseModel):
    """What stop_sweep did: held-back and ready runs never start, active runs were stopped."""

    id: str
    name: str
    status: SweepStatus
    progress: SweepProgress
    stopped: list[str] = Field(default_factory=list)  # runs stopped by this call
    note: str = ""


class PlanRow(BaseModel):
    id: str
    title: str
    goal: str
    status: PlanStatus
    sweep_ids: list[str] = Field(default_factory=list)
    run_ids: list[str] = Field(default_factory=list)
    updated_at: str


class PlanSaved(PlanRow):
    """A plan after save_plan or update_plan: its Markdown stays out (get_plan has it)."""

    next_statuses: list[str]  # statuses update_plan may move this plan to


class PlanDetail(PlanSaved):
    raw_markdown: str
    session_id: str | None = None
    created_at: str


class PlanList(BaseModel):
    plans: list[PlanRow]
    total: int
    next_offset: int | None = None


class MemoryRow(BaseModel):
    id: str
    title: str
    content: str
    tags: list[str]
    source: str
    active: bool
    created_at: str  # rules in force when runs started, in reports
    updated_at: str


class MemoryList(BaseModel):
    memories: list[MemoryRow]
    total: int
    next_offset: int | None = None


class EventRow(BaseModel):
    id: int  # position in the event feed
    ts: str
    # run_ended: a run reached finished/failed/stopped/lost; run_status: any other status
    # change; alert: an alert was raised
    kind: Literal["run_ended", "run_status", "alert"]
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
    cursor: int  # pass to the next wait_for_events call to continue after these events
    timed_out: bool  # true when timeout_s passed with no matching event
    more: bool = False  # true when more matching events are ready: call again at once
    waited_s: float
