"""What each dashboard page shows, read through the core services the MCP tools use.

Every number here comes from the same service call an agent's tool answer comes from
(``runs.list``/``get_run``, ``sweeps.get``, ``alerts.list``, ``metrics``), so the human
and the agent never see two versions of a run. These functions only choose, sort and
shape; they hold no SQL.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

from mcp_server.core.monitoring.metric_keys import goal
from mcp_server.core.run_views import RunRow
from mcp_server.core.services import Services
from mcp_server.core.workflow.overview import MetricGlance, glance, metric_keys, run_params

RUN_PAGE = 200
SORTS = ("newest", "name", "status", "best", "last")
ACTIVE = frozenset({"ready", "queued", "launching", "running"})
STATUSES = ("running", "queued", "finished", "failed", "stopped", "lost", "ready", "launching")


@dataclass
class RunLine:
    run: RunRow
    params: dict[str, Any]
    sweep_name: str | None
    metric: MetricGlance | None


@dataclass
class RunsView:
    lines: list[RunLine]
    total: int
    keys: list[str]
    metric: str | None
    sort: str
    status: str
    q: str
    sweep: str | None
    sweeps: dict[str, str] = field(default_factory=dict)


def _ordered(lines: list[RunLine], sort: str, direction: str) -> list[RunLine]:
    if sort in ("best", "last"):
        sign = 1.0 if direction == "min" else -1.0

        def value(line: RunLine) -> float:
            v = None if line.metric is None else getattr(line.metric, sort)
            return math.inf if v is None else sign * v

        return sorted(lines, key=value)
    if sort == "name":
        return sorted(lines, key=lambda line: line.run.name)
    if sort == "status":
        return sorted(lines, key=lambda line: (line.run.status not in ACTIVE, line.run.status))
    return lines  # newest first, as runs.list answers


def runs_view(
    sv: Services, *, metric: str | None, sort: str, status: str, q: str, sweep: str | None
) -> RunsView:
    statuses = [status] if status in STATUSES else None
    page = sv.runs.list(status=statuses, name_contains=q or None, sweep_id=sweep, limit=RUN_PAGE)
    ids = [r.id for r in page.runs]
    keys = metric_keys(sv.store, ids)
    chosen = metric if metric in keys else (keys[0] if keys else None)
    glances = glance(sv.store, ids, chosen) if chosen else {}
    params = run_params(sv.store, ids)
    sweeps = {s.id: s.name for s in sv.sweeps.list(limit=200)}
    lines = [
        RunLine(r, params.get(r.id, {}), sweeps.get(r.sweep_id or ""), glances.get(r.id)) for r in page.runs
    ]
    sort = sort if sort in SORTS else "newest"
    lines = _ordered(lines, sort, goal(chosen or "") or "min")
    return RunsView(lines, page.total, keys, chosen, sort, status, q, sweep, sweeps)


@dataclass
class CompareRow:
    id: str
    name: str
    status: str
    params: dict[str, Any]
    best: float | None
    last: float | None


@dataclass
class CompareView:
    run_ids: list[str]
    rows: list[CompareRow]
    keys: list[str]
    key: str | None
    direction: str
    best_run: str | None
    param_names: list[str]
    sweep_id: str | None
    sweep_name: str | None
    sweeps: dict[str, str]


def compare_view(sv: Services, *, sweep: str | None, runs: list[str], key: str | None) -> CompareView:
    """A sweep's runs by default (the newest sweep when none is named); else the chosen runs."""
    sweeps = {s.id: s.name for s in sv.sweeps.list(limit=200)}
    if not runs and sweep is None and sweeps:
        sweep = next(iter(sweeps))
    if runs:
        chosen = list(dict.fromkeys(runs))[:20]
        for run_id in chosen:
            sv.runs.load(run_id)
        sweep = None
    elif sweep is not None:
        chosen = [r.id for r in sv.sweeps.get(sweep).runs][:20]
    else:
        chosen = [r.id for r in sv.runs.list(limit=5).runs]
    keys = metric_keys(sv.store, chosen)
    key = key if key in keys else (keys[0] if keys else None)
    direction = goal(key or "") or "min"
    glances = glance(sv.store, chosen, key) if key else {}
    best_run = None
    if sweep is not None and key is not None:
        # The agent's own ranking (get_sweep), so both name the same best run.
        ranked = sv.sweeps.get(sweep, metric=key, direction=direction)
        best_run = ranked.best.run_id if ranked.best else None
    elif glances:
        pick = min if direction == "min" else max
        finite = {r: g.best for r, g in glances.items() if g.best is not None}
        best_run = pick(finite, key=lambda r: finite[r]) if finite else None
    params = run_params(sv.store, chosen)
    rows = []
    for run_id in chosen:
        record = sv.runs.load(run_id)
        g = glances.get(run_id)
        rows.append(
            CompareRow(run_id, record.name, record.status, params.get(run_id, {}),
                       g.best if g else None, g.last if g else None)
        )  # fmt: skip
    names = sorted({p for r in rows for p in r.params})
    varying = [p for p in names if len({repr(r.params.get(p)) for r in rows}) > 1] or names
    return CompareView(
        chosen, rows, keys, key, direction, best_run, varying, sweep, sweeps.get(sweep or ""), sweeps
    )
