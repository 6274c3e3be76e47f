"""A sweep in detail (get_sweep): status and progress, a page of its runs, the best run.

The best run is ranked from the metrics the runs' sidecars stored (the one reader of
metrics.jsonl and logs), after letting the sidecars of just-ended runs store their last
lines, so a sweep is never ranked on a truncated series.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from sqlmodel import col, select

from mcp_server.core.admission import POOL_CPU
from mcp_server.core.errors import InvalidInput
from mcp_server.core.lifecycle import TERMINAL, RunStatus
from mcp_server.core.metric_sources import describe_runs
from mcp_server.core.metrics import best_of, finite, series_of
from mcp_server.core.models import Run, Sweep, SweepTrial
from mcp_server.core.reconcile import WATCHED
from mcp_server.core.sidecars import wait_drained
from mcp_server.core.store import now
from mcp_server.core.sweep_search import budget_view, spent_reason
from mcp_server.core.workflow_views import PAGED, BestRun, SweepDetail, SweepRunRow

if TYPE_CHECKING:
    from mcp_server.core.sweeps import SweepService

MAX_PAGE = 200


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
    sweep = service.load(sweep_id)
    search = sweep.search or {}
    if metric is None and search.get("metric"):
        metric, direction = search["metric"], search.get("direction", "min")
    runs = service.runs_of(sweep_id)
    watched = [r.id for r in runs if r.status in WATCHED]
    if watched and service.reconciler.reconcile(watched):
        runs = service.runs_of(sweep_id)
    keys: set[str] = set()
    values: dict[str, tuple[float, float | None, int | None]] = {}
    if metric is not None:
        wait_drained(service.store, [r.id for r in runs])
    with service.store.read() as s:
        series = series_of(s, [r.id for r in runs])
    for row in series:
        keys.add(row.key)
        if row.key == metric and (found := best_of(row, direction)) is not None:
            values[row.run_id] = (found[0], finite(row.last_value), found[1])
    best = None
    if values:
        pick = min if direction == "min" else max
        best_id = pick(values, key=lambda rid: values[rid][0])
        run = next(r for r in runs if r.id == best_id)
        value, last, step = values[best_id]
        best = BestRun(
            run_id=run.id,
            name=run.name,
            status=run.status,
            params=run.params,
            value=value,
            last=last,
            step=step,
        )
    notes = []
    if metric is None and keys:
        notes.append("pass metric (one of metric_keys) and direction to rank runs and get the best run")
    elif metric is not None and not values:
        if runs and all(RunStatus(r.status) in TERMINAL for r in runs):
            with service.store.read() as s:
                read = describe_runs(s, [r.id for r in runs])
            missing = f"no run of this sweep logged {metric!r} (read: {read})"
        else:
            missing = f"no run of this sweep has logged {metric!r} yet"
        notes.append(missing + (f"; logged metrics: {', '.join(sorted(keys))}" if keys else ""))
    if (slots := cpu_slots_note(service, sweep, runs)) is not None:
        notes.append(slots)
    t = now()
    if (spent := spent_reason(sweep, runs, t)) is not None:
        notes.append(f"{spent}: nothing more is launched; extend_sweep adds budget, stop_sweep ends it")
    elif sweep.method == "tpe" and not search.get("stopped") and not service.may_ask(sweep, runs):
        notes.append(f"all {sweep.max_runs} trials asked (max_runs); extend_sweep adds more")
    with service.store.read() as s:
        pruned = list(
            s.exec(
                select(SweepTrial.run_id).where(
                    col(SweepTrial.sweep_id) == sweep_id, col(SweepTrial.pruned).is_not(None)
                )
            ).all()
        )
    page = runs[offset : offset + limit]
    rows = [
        SweepRunRow(
            id=r.id,
            name=r.name,
            status=r.status,
            status_reason=r.status_reason,
            exit_code=r.exit_code,
            params=r.params,
            metric_value=values[r.id][0] if r.id in values else None,
        )
        for r in page
    ]
    if offset + len(page) < len(runs):
        notes.append(PAGED.format(total=len(runs)))
    head = service.row(sweep, runs)
    head.progress.pruned = sum(1 for r in runs if r.id in pruned and r.status == RunStatus.STOPPED.value)
    return SweepDetail(
        **head.model_dump(),
        method=sweep.method,  # type: ignore[arg-type]
        base_command=sweep.base_command,
        parameters=sweep.parameters,
        max_runs=sweep.max_runs,
        seed=sweep.seed,
        gpus_per_run=sweep.gpus_per_run,
        backend=sweep.backend,
        metric=metric,
        direction=direction,  # type: ignore[arg-type]
        pruner=search.get("pruner"),
        budget=budget_view(sweep, runs, t),
        best=best,
        metric_keys=sorted(keys),
        runs=rows,
        next_offset=offset + len(page) if offset + len(page) < len(runs) else None,
        note="; ".join(notes),
    )


def cpu_slots_note(service: SweepService, sweep: Sweep, runs: list[Run]) -> str | None:
    """Say so when the machine's CPU run limit, not the sweep's ``parallel``, sets the pace.

    On a cpu_only machine at most RESEARCH_MCP_CPU_RUN_LIMIT local runs run at once; a sweep
    asking for more parallelism than that would otherwise run serially without a word."""
    pending = [r for r in runs if r.status not in ("finished", "failed", "stopped", "lost")]
    if not pending or not any((r.options or {}).get("queue") == POOL_CPU for r in pending):
        return None
    limit = service.runs.settings.cpu_run_limit
    wanted = sweep.parallel if sweep.parallel is not None else len(runs)
    if wanted <= limit:
        return None
    asked = f"parallel={sweep.parallel}" if sweep.parallel is not None else f"{len(runs)} runs with no cap"
    return (
        f"{asked}, but this cpu_only machine runs at most {limit} local run(s) at once "
        "(RESEARCH_MCP_CPU_RUN_LIMIT): the others wait their turn"
    )
