"""A sweep in detail (get_sweep): status and progress, a page of its runs, the best run.

The best run is ranked from the metrics the runs' sidecars stored (the one reader of
metrics.jsonl and logs), after letting the sidecars of just-ended runs store their last
lines, so a sweep is never ranked on a truncated series.

Everything is read with plain SQL in one snapshot (``core.storage.sqlread``): progress is counted
by the store, the best run is one ordered lookup, and only the page's runs are loaded, so
a sweep of thousands of runs answers at the cost of its page.
"""

from __future__ import annotations

import json
import sqlite3
from typing import TYPE_CHECKING, Any

from mcp_server.core.errors import InvalidInput, NotFound
from mcp_server.core.execution.reconcile import CAN_CHANGE
from mcp_server.core.execution.run_status import TERMINAL
from mcp_server.core.execution.sidecars import wait_drained
from mcp_server.core.ids import validate_id
from mcp_server.core.monitoring.metric_sources import describe_runs
from mcp_server.core.monitoring.metrics import finite
from mcp_server.core.scheduling.admission import POOL_CPU
from mcp_server.core.search.sweep_list import counts_of, load, sweep_row
from mcp_server.core.search.sweep_search import budget_view, spent_reason
from mcp_server.core.storage.store import now
from mcp_server.core.workflow.workflow_views import PAGED, BestRun, SweepDetail, SweepRunRow

if TYPE_CHECKING:
    from mcp_server.core.search.sweeps import SweepService

MAX_PAGE = 200
_ENDED = tuple(s.value for s in TERMINAL)
_FINITE = "{0} IS NOT NULL AND abs({0}) <= 1.7976931348623157e308"


def _marks(n: int) -> str:
    return ", ".join("?" * n)


def sweep_detail(
    service: SweepService,
    sweep_id: str,
    metric: str | None = None,
    direction: str = "min",
    *,
    offset: int = 0,
    limit: int = MAX_PAGE,
) -> SweepDetail:
    if direction not in ("min", "max"):
        raise InvalidInput(f"direction {direction!r} is not valid; choose 'min' or 'max'.")
    if metric is not None and (not metric or len(metric) > 128):
        raise InvalidInput("metric must be a metric name of 1-128 characters, e.g. 'val_loss'.")
    if not 1 <= limit <= MAX_PAGE or offset < 0:
        raise InvalidInput(f"limit must be 1-{MAX_PAGE} and offset ≥ 0 (got limit={limit}, offset={offset}).")
    validate_id(sweep_id, "sweep", "sweep_id")
    sql = service.store.sql
    with sql.snapshot() as conn:
        found = conn.execute("SELECT search FROM sweeps WHERE id = ?", (sweep_id,)).fetchone()
        watched = [
            r[0]
            for r in conn.execute(f"SELECT id FROM runs WHERE sweep_id = ? AND {CAN_CHANGE}", (sweep_id,))
        ]
    search = json.loads(found[0] or "{}") if found is not None else {}
    if metric is None and search.get("metric"):  # an adaptive sweep ranks by its own objective
        metric, direction = search["metric"], search.get("direction", "min")
    if watched:  # only runs that can still change are looked at
        service.reconciler.reconcile(watched)
    if metric is not None:
        with sql.snapshot() as conn:
            ended = [
                r[0]
                for r in conn.execute(
                    "SELECT s.run_id FROM sidecars s JOIN runs r ON r.id = s.run_id WHERE r.sweep_id = ? "
                    f"AND s.exited_at IS NULL AND r.status IN ({_marks(len(_ENDED))})",
                    (sweep_id, *_ENDED),
                )
            ]
        if ended:
            wait_drained(service.store, ended)
    with sql.snapshot() as conn:
        detail = _detail(service, conn, sweep_id, metric, direction, offset, limit)
    # Every sweep's search holds its direction and backend: only an adaptive, budgeted or
    # pruned one has more to show (reading its runs as rows costs about 1.5 ms per 100 runs).
    if detail.method == "tpe" or search.get("budget") or search.get("pruner"):
        _add_search(service, detail, search)
    return detail


def _add_search(service: SweepService, detail: SweepDetail, search: dict[str, Any]) -> None:
    """An adaptive or budgeted sweep's pruner, budget and why it launches no more: these read the
    sweep's runs as rows (spent GPU-hours, trials asked), so plain grid sweeps skip them."""
    sweep = service.load(detail.id)
    runs = service.runs_of(detail.id)
    t = now()
    notes = [detail.note] if detail.note else []
    if (spent := spent_reason(sweep, runs, t)) is not None:
        notes.append(f"{spent}: nothing more is launched; extend_sweep adds budget, stop_sweep ends it")
    elif sweep.method == "tpe" and not search.get("stopped") and not service.may_ask(sweep, runs):
        notes.append(f"all {sweep.max_runs} trials asked (max_runs); extend_sweep adds more")
    with service.store.sql.snapshot() as conn:
        detail.progress.pruned = conn.execute(
            "SELECT COUNT(*) FROM sweep_trials t JOIN runs r ON r.id = t.run_id "
            "WHERE t.sweep_id = ? AND t.pruned IS NOT NULL AND r.status = 'stopped'",
            (detail.id,),
        ).fetchone()[0]
    detail.status = service.row(sweep, runs).status  # paused by its budget, or between asks
    detail.pruner = search.get("pruner")
    detail.budget = budget_view(sweep, runs, t)
    detail.note = "; ".join(notes)


def _detail(
    service: SweepService,
    conn: sqlite3.Connection,
    sweep_id: str,
    metric: str | None,
    direction: str,
    offset: int,
    limit: int,
) -> SweepDetail:
    sweep = load(conn, sweep_id)
    if sweep is None:
        raise NotFound(
            f"no sweep with id {sweep_id!r}; experiment://context lists sweeps (and list_runs each "
            "run's sweep_id), or create one with create_sweep."
        )
    counts, waiting = counts_of(conn, [sweep_id])[sweep_id]
    total = sum(counts.values())
    in_sweep = "SELECT id FROM runs WHERE sweep_id = ?"
    keys = [
        r[0]
        for r in conn.execute(
            f"SELECT DISTINCT key FROM metric_series WHERE run_id IN ({in_sweep}) ORDER BY key", (sweep_id,)
        )
    ]
    best = None
    if metric is not None:
        value_col, step_col = ("min_value", "min_step") if direction == "min" else ("max_value", "max_step")
        row = conn.execute(
            f"SELECT r.id, r.name, r.status, r.params, m.{value_col}, m.last_value, m.{step_col} "
            "FROM metric_series m JOIN runs r ON r.id = m.run_id "
            f"WHERE r.sweep_id = ? AND m.key = ? AND {_FINITE.format('m.' + value_col)} "
            f"ORDER BY m.{value_col} {'ASC' if direction == 'min' else 'DESC'}, m.run_id LIMIT 1",
            (sweep_id, metric),
        ).fetchone()
        if row is not None:
            run_id, name, status, params, value, last, step = row
            best = BestRun(
                run_id=run_id,
                name=name,
                status=status,
                params=json.loads(params or "{}"),
                value=value,
                last=finite(last),
                step=step,
            )
    page = conn.execute(
        "SELECT id, name, status, status_reason, exit_code, params FROM runs WHERE sweep_id = ? "
        "ORDER BY pk LIMIT ? OFFSET ?",
        (sweep_id, limit, offset),
    ).fetchall()
    values: dict[str, float] = {}
    if metric is not None and page:
        value_col = "min_value" if direction == "min" else "max_value"
        values = dict(
            conn.execute(
                f"SELECT run_id, {value_col} FROM metric_series WHERE key = ? "
                f"AND run_id IN ({_marks(len(page))}) AND {_FINITE.format(value_col)}",
                (metric, *(r[0] for r in page)),
            ).fetchall()
        )
    notes = []
    if metric is None and keys:
        notes.append("pass metric (one of metric_keys) and direction to rank runs and get the best run")
    elif metric is not None and best is None:
        if total and sum(counts.get(s, 0) for s in _ENDED) == total:
            run_ids = [r[0] for r in conn.execute(in_sweep, (sweep_id,))]
            with service.store.read() as s:  # a rare path: say what the sidecars read
                read = describe_runs(s, run_ids)
            missing = f"no run of this sweep logged {metric!r} (read: {read})"
        else:
            missing = f"no run of this sweep has logged {metric!r} yet"
        notes.append(missing + (f"; logged metrics: {', '.join(keys)}" if keys else ""))
    if (slots := cpu_slots_note(service, conn, sweep, total)) is not None:
        notes.append(slots)
    rows = [
        SweepRunRow(
            id=run_id,
            name=name,
            status=status,
            status_reason=reason,
            exit_code=code,
            params=json.loads(params or "{}"),
            metric_value=values.get(run_id),
        )
        for run_id, name, status, reason, code, params in page
    ]
    more = offset + len(page) < total
    if more:
        notes.append(PAGED.format(total=total))
    return SweepDetail(
        **sweep_row(sweep, counts, waiting).model_dump(),
        method=sweep["method"],
        base_command=sweep["base_command"],
        parameters=sweep["parameters"],
        max_runs=sweep["max_runs"],
        seed=sweep["seed"],
        gpus_per_run=sweep["gpus_per_run"],
        backend=sweep["backend"],
        metric=metric,
        direction=direction,  # type: ignore[arg-type]
        best=best,
        metric_keys=keys,
        runs=rows,
        next_offset=offset + len(page) if more else None,
        note="; ".join(notes),
    )


def cpu_slots_note(
    service: SweepService, conn: sqlite3.Connection, sweep: dict[str, Any], total: int
) -> str | None:
    """Say so when the machine's CPU run limit, not the sweep's ``parallel``, sets the pace.

    On a cpu_only machine at most RESEARCH_MCP_CPU_RUN_LIMIT local runs run at once; a sweep
    asking for more parallelism than that would otherwise run serially without a word."""
    limit = service.runs.settings.cpu_run_limit
    wanted = sweep["parallel"] if sweep["parallel"] is not None else total
    if wanted <= limit:
        return None
    (cpu_pending,) = conn.execute(
        f"SELECT EXISTS (SELECT 1 FROM runs WHERE sweep_id = ? AND status NOT IN ({_marks(len(_ENDED))}) "
        "AND json_extract(options, '$.queue') = ?)",
        (sweep["id"], *_ENDED, POOL_CPU),
    ).fetchone()
    if not cpu_pending:
        return None
    asked = f"parallel={sweep['parallel']}" if sweep["parallel"] is not None else f"{total} runs with no cap"
    return (
        f"{asked}, but this cpu_only machine runs at most {limit} local run(s) at once "
        "(RESEARCH_MCP_CPU_RUN_LIMIT): the others wait their turn"
    )
