"""What a report is about, read through the core services the MCP tools use (never private SQL),
so the report says exactly what ``get_sweep``, ``get_run``, ``get_metrics``, ``list_alerts``,
``get_plan`` and ``list_memories`` say."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from mcp_server.core.errors import InvalidInput
from mcp_server.core.monitoring.metric_keys import goal, key_metric, similar_keys
from mcp_server.core.monitoring.metrics import MAX_POINTS
from mcp_server.core.run_views import AlertView, ClusterInfo, MetricSeriesOut, RunDetail
from mcp_server.core.workflow.plans import sections
from mcp_server.core.workflow.workflow_views import MemoryRow, PlanDetail, SweepDetail

if TYPE_CHECKING:
    from mcp_server.core.services import Services

MAX_RUNS = 200
MAX_METRICS = 4
METRICS_PER_CALL = 20  # get_metrics takes at most 20 runs a call
POINTS_PER_SERIES = 400
ALERTS_PER_RUN = 20


@dataclass
class ReportData:
    title: str
    default_name: str
    objective: str
    compute_notes: str
    runs: list[RunDetail]
    metrics: list[str]
    direction: str
    sweep: SweepDetail | None = None
    plan: PlanDetail | None = None
    cluster: ClusterInfo | None = None
    curves: dict[str, dict[str, MetricSeriesOut]] = field(default_factory=dict)  # run id → key → series
    alerts: dict[str, list[AlertView]] = field(default_factory=dict)
    memories: list[MemoryRow] = field(default_factory=list)


def _plan_for_sweep(services: Services, sweep_id: str) -> PlanDetail | None:
    listing = services.plans.list(limit=500)
    for row in listing.plans:
        if sweep_id in row.sweep_ids:
            return services.plans.get(row.id)
    return None


def _choose_metrics(runs: list[RunDetail], wanted: list[str] | None) -> list[str]:
    if wanted:
        keys = list(dict.fromkeys(wanted))
        if len(keys) > MAX_METRICS or any(
            not isinstance(k, str) or not k.strip() or len(k) > 200 for k in keys
        ):
            raise InvalidInput(f"metrics: give 1-{MAX_METRICS} metric names, the first ranks runs.")
        return keys
    existing = list(dict.fromkeys(m.key for r in runs for m in r.metrics))
    chosen: list[str] = []
    while len(chosen) < MAX_METRICS - 1 and (k := key_metric([k for k in existing if k not in chosen])):
        chosen.append(k)
    return chosen


def gather(
    services: Services,
    *,
    sweep_id: str | None = None,
    run_ids: list[str] | None = None,
    plan_id: str | None = None,
    metrics: list[str] | None = None,
    direction: str | None = None,
) -> ReportData:
    given = [x for x in (sweep_id, run_ids, plan_id) if x]
    if len(given) != 1:
        raise InvalidInput("give exactly one of sweep_id, run_ids or plan_id: what the report is about.")
    if direction not in (None, "min", "max"):
        raise InvalidInput(f"direction {direction!r} is not valid; choose 'min' or 'max', or leave it out.")
    sweep = plan = None
    ids: list[str] = []
    if sweep_id:
        sweep = services.sweeps.get(sweep_id, limit=MAX_RUNS)
        if sweep.next_offset is not None:
            raise InvalidInput(
                f"sweep {sweep.name} has more than {MAX_RUNS} runs; report on run_ids instead."
            )
        ids = [r.id for r in sweep.runs]
        plan = _plan_for_sweep(services, sweep_id)
        title, default_name = f"sweep {sweep.name}", sweep.name
    elif plan_id:
        plan = services.plans.get(plan_id)
        ids = list(plan.run_ids)
        for sid in plan.sweep_ids:
            ids += [r.id for r in services.sweeps.get(sid, limit=MAX_RUNS).runs]
        title, default_name = f"plan {plan.title}", plan.id
    else:
        ids = list(run_ids or [])
        title = f"{len(ids)} run(s)"
    ids = list(dict.fromkeys(ids))
    if not 1 <= len(ids) <= MAX_RUNS:
        raise InvalidInput(f"a report covers 1 to {MAX_RUNS} runs; this selection has {len(ids)}.")
    runs = [services.runs.get(run_id) for run_id in ids]
    if run_ids:
        default_name = f"runs-{runs[0].name}"
    chosen = _choose_metrics(runs, metrics)
    logged = sorted({m.key for r in runs for m in r.metrics})
    for key in metrics or []:
        if key not in logged:
            hint = similar_keys(key, logged)
            raise InvalidInput(
                f"no run of this report logged {key!r}"
                + (f"; did you mean {', '.join(map(repr, hint))}?" if hint else "")
                + (
                    f" Logged metrics: {', '.join(logged[:30])}."
                    if logged
                    else " No run has logged metrics yet."
                )
            )
    ranking = chosen[0] if chosen else None
    data = ReportData(
        title=title,
        default_name=default_name[:64],
        objective="",
        compute_notes="",
        runs=runs,
        metrics=chosen,
        direction=direction or (goal(ranking) if ranking else None) or "min",
        sweep=sweep,
        plan=plan,
        cluster=services.cluster.last(),
    )
    if plan is not None:
        parts = sections(plan.raw_markdown)
        data.objective = parts.get("objective", "") or plan.goal
        data.compute_notes = parts.get("compute setup", "")
    elif sweep is not None:
        data.objective = sweep.goal
    if chosen:
        for i in range(0, len(ids), METRICS_PER_CALL):
            batch = ids[i : i + METRICS_PER_CALL]
            budget = min(MAX_POINTS, POINTS_PER_SERIES * len(batch) * len(chosen))
            answer = services.metrics.get(batch, chosen, max_points=budget)
            for rm in answer.runs:
                data.curves[rm.run_id] = {s.key: s for s in rm.series}
    for run in runs:
        data.alerts[run.id] = services.alerts.list(run_id=run.id, status="all", limit=ALERTS_PER_RUN).alerts
    data.memories = services.memory.list(active_only=True, limit=100).memories
    return data
