"""Tables of the store (sqlmodel on SQLite).

Timestamps are epoch seconds (REAL): cheap to compare in SQL and across processes;
views turn them into ISO strings for people and models.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import JSON, Column, Index, text
from sqlmodel import Field, SQLModel

from mcp_server.core.execution.watched import CAN_CHANGE


def _default(value: Any) -> Any:
    """A field default the database knows too, so the sidecar's plain-SQL inserts may omit it."""
    if isinstance(value, bool):
        sql = "1" if value else "0"
    elif isinstance(value, str):
        sql = "'" + value.replace("'", "''") + "'"
    else:
        sql = repr(value)
    return Field(default=value, sa_column_kwargs={"server_default": text(sql)})


class Meta(SQLModel, table=True):
    __tablename__ = "meta"
    key: str = Field(primary_key=True)
    value: str


class Run(SQLModel, table=True):
    __tablename__ = "runs"
    __table_args__ = (
        Index("ix_runs_status_pk", "status", "pk"),
        # A sweep's progress is counted from this index alone (core.search.sweep_list).
        Index("ix_runs_sweep_status", "sweep_id", "status", "launched_at"),
        # The runs a reconcile looks at, however long the history (core.execution.watched).
        Index("ix_runs_can_change", "pk", sqlite_where=text(CAN_CHANGE)),
    )

    # Integer key: insertion (commit) order, which is the FIFO order of queues.
    pk: int | None = Field(default=None, primary_key=True)
    id: str = Field(unique=True)
    name: str = Field(index=True)
    command: str
    workdir: str
    status: str
    status_reason: str = ""
    error: str | None = None
    exit_code: int | None = None
    backend: str = "local"
    backend_ref: str | None = None
    sweep_id: str | None = Field(default=None, index=True)
    parent_run_id: str | None = None
    gpus: int = 0
    params: dict[str, Any] = Field(default_factory=dict, sa_column=Column(JSON, nullable=False))
    env_keys: list[str] = Field(default_factory=list, sa_column=Column(JSON, nullable=False))
    options: dict[str, Any] = Field(default_factory=dict, sa_column=Column(JSON, nullable=False))
    created_at: float
    updated_at: float
    queued_at: float | None = None
    launched_at: float | None = None
    started_at: float | None = None
    ended_at: float | None = None
    stop_requested_at: float | None = None


class Event(SQLModel, table=True):
    """Append-only feed of things an agent waits for (run endings, alerts).

    AUTOINCREMENT keeps ids strictly increasing even after deletes, so an id is a cursor.
    """

    __tablename__ = "events"
    __table_args__ = {"sqlite_autoincrement": True}

    id: int | None = Field(default=None, primary_key=True)
    ts: float
    kind: str = Field(index=True)
    run_id: str | None = Field(default=None, index=True)
    data: dict[str, Any] = Field(default_factory=dict, sa_column=Column(JSON, nullable=False))


class Alert(SQLModel, table=True):
    """Something a person (or the agent) should look at, with the choices it offers.

    ``signature`` identifies "the same problem" so a rule firing every poll raises one
    alert, not hundreds; see ``core.monitoring.alerts.raise_alert``.
    """

    __tablename__ = "alerts"
    __table_args__ = (
        Index("ix_alerts_run_status", "run_id", "status"),
        # list_alerts' default (open ones, newest first) and their count.
        Index("ix_alerts_status_pk", "status", "pk"),
    )

    pk: int | None = Field(default=None, primary_key=True)
    id: str = Field(unique=True)
    run_id: str | None = Field(default=None, index=True)
    kind: str
    severity: str
    message: str
    choices: list[str] = Field(default_factory=list, sa_column=Column(JSON, nullable=False))
    signature: str = Field(index=True)
    status: str = "open"
    resolution: str | None = None
    data: dict[str, Any] = Field(default_factory=dict, sa_column=Column(JSON, nullable=False))
    created_at: float
    resolved_at: float | None = None


class ClusterState(SQLModel, table=True):
    """The last ``detect_cluster`` result (one row per state dir) and the user's preferred type."""

    __tablename__ = "cluster_state"

    key: str = Field(primary_key=True)
    type: str
    detected_type: str
    preferred_type: str | None = None
    status: str
    detected_at: float
    data: dict[str, Any] = Field(default_factory=dict, sa_column=Column(JSON, nullable=False))


class QueueEntry(SQLModel, table=True):
    """A local run that needs admission (GPU lease or CPU run slot) before its command starts.

    ``seq`` (AUTOINCREMENT, never reused) is the FIFO order. For auto-started runs the entry
    is written in the same transaction as the run, so queue order is creation order.
    """

    __tablename__ = "run_queue"
    __table_args__ = {"sqlite_autoincrement": True}

    seq: int | None = Field(default=None, primary_key=True)
    run_id: str = Field(unique=True)
    pool: str  # gpu | cpu
    gpus: int = 0
    enqueued_at: float
    waiting_since: float
    admitted_at: float | None = None
    not_before: float | None = None  # back-off after GPU contention
    contentions: int = 0
    output_offset: int = 0  # where this attempt's output starts in output.log


class GpuLease(SQLModel, table=True):
    """One GPU held by one run. The primary key makes sharing a GPU impossible, not just avoided."""

    __tablename__ = "gpu_leases"

    gpu_uuid: str = Field(primary_key=True)
    gpu_index: int
    run_id: str = Field(index=True)
    leased_at: float


class Sweep(SQLModel, table=True):
    """A named group of runs with a goal; its status and progress are derived from its runs.

    ``parameters`` is the search space as given (lists, ranges, log-ranges); the runs hold
    the concrete values they were launched with. ``parallel`` caps how many of its runs may
    be active at once (None: no cap).
    """

    __tablename__ = "sweeps"

    pk: int | None = Field(default=None, primary_key=True)
    id: str = Field(unique=True)
    name: str = Field(index=True)
    goal: str
    base_command: str | None = None
    parameters: dict[str, Any] = Field(default_factory=dict, sa_column=Column(JSON, nullable=False))
    method: str = "grid"
    max_runs: int | None = None
    seed: int | None = None
    parallel: int | None = None
    gpus_per_run: int = 0
    backend: str = "auto"
    workdir: str | None = None
    # How the sweep searches and what it may spend (core.search.sweep_search): metric, direction,
    # pruner, budget {gpu_hours, hours}, and what adaptive asks need to create runs later.
    search: dict[str, Any] = Field(
        default_factory=dict,
        sa_column=Column(JSON, nullable=False, server_default=text("'{}'")),
    )
    created_at: float
    updated_at: float


class SweepTrial(SQLModel, table=True):
    """A run as a trial of its sweep's search.

    An adaptive sweep claims each trial number here in the transaction that creates its run:
    (sweep_id, number) is unique, so two processes asking at once never launch one trial
    twice. A pruner's verdict is kept here too, for runs of any sweep with a pruner.
    """

    __tablename__ = "sweep_trials"
    __table_args__ = (Index("ux_sweep_trials_number", "sweep_id", "number", unique=True),)

    run_id: str = Field(primary_key=True)
    sweep_id: str = Field(index=True)
    number: int | None = None  # adaptive sweeps: the order in which configurations were asked
    pruned: str | None = None  # why the pruner stopped the run
    pruned_step: int | None = None
    pruned_value: float | None = None  # its value at that step
    created_at: float
    updated_at: float


class Plan(SQLModel, table=True):
    """An experiment plan in the plan-mode format, with its approval status and links."""

    __tablename__ = "plans"

    pk: int | None = Field(default=None, primary_key=True)
    id: str = Field(unique=True)
    title: str
    goal: str
    raw_markdown: str
    status: str = Field(default="draft", index=True)
    session_id: str | None = None
    sweep_ids: list[str] = Field(default_factory=list, sa_column=Column(JSON, nullable=False))
    run_ids: list[str] = Field(default_factory=list, sa_column=Column(JSON, nullable=False))
    created_at: float
    updated_at: float


class Memory(SQLModel, table=True):
    """A heuristic rule that steers the agent (e.g. "lr > 1e-3 diverges for this model")."""

    __tablename__ = "memories"

    pk: int | None = Field(default=None, primary_key=True)
    id: str = Field(unique=True)
    title: str
    content: str
    tags: list[str] = Field(default_factory=list, sa_column=Column(JSON, nullable=False))
    source: str = "agent"
    active: bool = Field(default=True, index=True)
    created_at: float
    updated_at: float


class MetricSeries(SQLModel, table=True):
    """One metric key of one run, with the summary tools answer from without scanning points.

    The sidecar is the only writer of a run's series; it keeps the summary current in the
    same transaction that inserts the points.
    """

    __tablename__ = "metric_series"
    __table_args__ = (Index("ux_metric_series_run_key", "run_id", "key", unique=True),)

    id: int | None = Field(default=None, primary_key=True)
    run_id: str
    key: str
    source: str = _default("jsonl")  # jsonl | log | tfevents | csv | trainer_state
    count: int = _default(0)
    nonfinite: int = _default(0)  # NaN/±Inf points (NaN is stored as NULL by SQLite)
    first_nonfinite_step: int | None = None
    first_step: int | None = None
    last_step: int | None = None
    last_value: float | None = None
    min_value: float | None = None
    min_step: int | None = None
    max_value: float | None = None
    max_step: int | None = None
    updated_at: float = _default(0.0)
    # When a log file owns the key: the highest step it gave. Printed points beyond it are
    # kept until the file reaches their step (then the file's replace them).
    exact_through: int | None = None


class MetricPoint(SQLModel, table=True):
    """A compact row per logged number; ``id`` is SQLite's rowid, so it costs nothing extra."""

    __tablename__ = "metric_points"
    __table_args__ = (Index("ix_metric_points_series_step", "series_id", "step"),)

    id: int | None = Field(default=None, primary_key=True)
    series_id: int
    step: int
    value: float | None = None
    ts: float


class MetricBucket(SQLModel, table=True):
    """Count, min, max and last of a series over one bucket of ``2**shift`` steps, per level.

    Maintained by the sidecar in the transaction that stores the points; reads of a
    downsampled series merge a few of these rows instead of scanning every point
    (``core.monitoring.metric_buckets``). Clustered on its key (WITHOUT ROWID): a level of a series
    is one contiguous range.
    """

    __tablename__ = "metric_buckets"
    __table_args__ = {"sqlite_with_rowid": False}

    series_id: int = Field(primary_key=True)
    level: int = Field(primary_key=True)
    bucket: int = Field(primary_key=True)  # step >> shift of the level
    n: int  # points, NaN/Inf included
    min_step: int | None = None  # None: every point in the bucket is NaN
    min_value: float | None = None
    max_step: int | None = None
    max_value: float | None = None
    last_step: int  # the highest step (the latest stored point among equal steps)
    last_value: float | None = None


class Sidecar(SQLModel, table=True):
    """The monitor of one run: who runs it, its heartbeat, and how far it has read.

    Offsets advance in the same transaction as the metric rows they account for, so a
    sidecar killed at any point resumes without losing or repeating a line.
    """

    __tablename__ = "sidecars"
    # Reconcile looks for sidecars that never finished on every pass: keep that lookup small.
    __table_args__ = (Index("ix_sidecars_unfinished", "run_id", sqlite_where=text("exited_at IS NULL")),)

    run_id: str = Field(primary_key=True)
    pid: int | None = None
    host: str = _default("")
    claimed_at: float = _default(0.0)
    started_at: float | None = None
    heartbeat_at: float | None = None
    exited_at: float | None = None
    exit_reason: str = _default("")
    starts: int = _default(0)
    # metrics.jsonl
    metrics_offset: int = _default(0)
    metrics_records: int = _default(0)
    metrics_skipping: bool = _default(False)  # inside a line longer than the cap: skip to its end
    bad_lines: int = _default(0)
    non_numeric: int = _default(0)
    huge_lines: int = _default(0)
    partial_lines: int = _default(0)
    # output.log (parsed for metrics only while metrics.jsonl is empty)
    output_offset: int = _default(0)
    output_records: int = _default(0)
    output_skipping: bool = _default(False)
    log_parsing: bool = _default(True)
    output_state: str = _default("")  # the printed-output parser's state (JSON) at output_offset
    points: int = _default(0)
    duplicates: int = _default(0)  # points not stored: another source's series has them
    non_numeric_example: str = _default("")  # the first value that looked like a metric but was not a number
    last_data_at: float | None = None
    # LLM judge usage
    judge_calls: int = _default(0)
    judge_errors: int = _default(0)
    judge_prompt_tokens: int = _default(0)
    judge_completion_tokens: int = _default(0)
    judge_cost_usd: float = _default(0.0)
    judge_last_at: float | None = None


class MetricFile(SQLModel, table=True):
    """A framework log file the sidecar found under the run's workdir, and how far it read it.

    TensorBoard event files, Lightning's metrics.csv and Hugging Face's trainer_state.json
    (all checkpoints of one run count as one history). The offset (and the reader's state)
    advances in the same transaction as the points it read, like metrics.jsonl's.
    """

    __tablename__ = "metric_files"

    run_id: str = Field(primary_key=True)
    path: str = Field(primary_key=True)  # relative to the run's workdir
    kind: str  # tfevents | csv | trainer_state
    offset: int = _default(0)
    records: int = _default(0)
    state: str = _default("")  # reader state (JSON): csv header, the history's cursor
    points: int = _default(0)
    bad: int = _default(0)  # records that could not be read
    example: str = _default("")
    found_at: float = _default(0.0)
    updated_at: float = _default(0.0)


class NotifyTarget(SQLModel, table=True):
    """A notification URL some process knows, by its hash: the URL (a secret) is never stored here.

    ``cursor`` is how far in the event feed this target's notifications were queued; the
    ``sender_*`` columns are a lease, so one sender process at a time serves a target
    (see ``core.workflow.notifications``).
    """

    __tablename__ = "notify_targets"

    id: str = Field(primary_key=True)
    label: str = _default("")
    cursor: int = _default(0)
    created_at: float = _default(0.0)
    sender_token: str | None = None
    sender_pid: int | None = None
    sender_host: str = _default("")
    sender_heartbeat: float | None = None


class NotifyDelivery(SQLModel, table=True):
    """One message for one target. (target_id, key) is unique: an event is queued once per URL;
    ``state`` moves pending → sending → sent | failed by compare-and-set, so it is sent once."""

    __tablename__ = "notify_deliveries"
    __table_args__ = (
        Index("ux_notify_deliveries_target_key", "target_id", "key", unique=True),
        Index("ix_notify_deliveries_target_state", "target_id", "state", "id"),
        Index("ix_notify_deliveries_run", "run_id"),
    )

    id: int | None = Field(default=None, primary_key=True)
    target_id: str
    key: str
    kind: str  # run_finished | run_failed | run_lost | run_stopped | alert | sweep_done
    event_id: int | None = None
    run_id: str | None = None
    sweep_id: str | None = None
    alert_id: str | None = None
    state: str = _default("pending")  # pending | sending | sent | failed
    attempts: int = _default(0)
    next_at: float = _default(0.0)
    claimed_by: str | None = None
    claim_until: float | None = None
    title: str | None = None
    body: str | None = None
    level: str = _default("info")  # apprise's notify type: info | success | warning | failure
    last_error: str = _default("")
    created_at: float = _default(0.0)
    sent_at: float | None = None
