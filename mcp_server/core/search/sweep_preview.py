"""create_sweep(preview=true): what a sweep would launch and what it would cost, writing nothing.

The estimate comes from similar finished runs: those of earlier sweeps with the same base
command, else runs whose command starts with the same program and script. A configuration
that already ran with the same params is estimated by that run's duration, the others by
the median; the wall-clock time schedules them ``parallel`` at a time in launch order.
"""

from __future__ import annotations

import heapq
import shlex
import statistics
from typing import TYPE_CHECKING, Any

from sqlmodel import col, select

from mcp_server.core.storage.models import Run, Sweep
from mcp_server.core.workflow.workflow_views import SweepDetail, SweepEstimate, SweepProgress, SweepRunRow

if TYPE_CHECKING:
    from mcp_server.core.search.sweep_create import SweepSpec
    from mcp_server.core.search.sweeps import SweepService

SHOWN = 20  # configurations listed (the answer stays small; the count is in progress.total)
SIMILAR_MAX = 500


def _head(command: str) -> list[str]:
    try:
        words = shlex.split(command)
    except ValueError:
        words = command.split()
    return [w for w in words if not w.startswith("-")][:2]


def similar_durations(
    service: SweepService, spec: SweepSpec
) -> tuple[list[tuple[dict[str, Any], float]], str]:
    """(params, seconds) of similar finished runs, and what they are in words."""
    with service.store.read() as s:
        rows = s.exec(
            select(Run, Sweep.base_command)
            .join(Sweep, col(Sweep.id) == col(Run.sweep_id), isouter=True)
            .where(
                col(Run.status) == "finished",
                col(Run.started_at).is_not(None),
                col(Run.ended_at).is_not(None),
            )
            .order_by(col(Run.pk).desc())
            .limit(SIMILAR_MAX)
        ).all()
    same_base = [(r, base) for r, base in rows if spec.base_command and base == spec.base_command]
    if same_base:
        picked, what = [r for r, _ in same_base], "finished runs of earlier sweeps with the same base command"
    else:
        head = _head(spec.base_command or "")
        picked = [r for r, _ in rows if head and _head(r.command) == head]
        what = f"finished runs of {' '.join(head)!r}"
    return [(dict(r.params or {}), float((r.ended_at or 0) - (r.started_at or 0))) for r in picked], what


def _wall(durations: list[float], parallel: int | None) -> float:
    """Finish time of the last run when they start in order, ``parallel`` at a time."""
    slots = [0.0] * min(len(durations), parallel or len(durations))
    heapq.heapify(slots)
    end = 0.0
    for d in durations:
        start = heapq.heappop(slots)
        end = max(end, start + d)
        heapq.heappush(slots, start + d)
    return end


def estimate(service: SweepService, spec: SweepSpec, configs: list[dict[str, Any]], n: int) -> SweepEstimate:
    found, what = similar_durations(service, spec)
    if not found or n == 0:
        return SweepEstimate(runs=n, based_on="no similar finished run yet: no estimate")
    median = statistics.median(d for _, d in found)
    per_config = []
    for i in range(n):
        params = configs[i] if i < len(configs) else None
        same = [d for p, d in found if params is not None and p == params]
        per_config.append(statistics.mean(same) if same else median)
    return SweepEstimate(
        runs=n,
        per_run_s=round(median, 3),
        wall_s=round(_wall(per_config, spec.parallel), 3),
        gpu_hours=round(sum(per_config) * spec.gpus_per_run / 3600.0, 6),
        based_on=f"{len(found)} {what} (median {median:.3g} s)",
    )


def _first_asks(spec: SweepSpec) -> list[dict[str, Any]]:
    """The configurations a TPE sweep would ask for first (its seeded start-up draws)."""
    from mcp_server.core.search.adaptive import startup_trials
    from mcp_server.core.search.optuna_study import RUNNING, TrialFacts, ask

    facts: list[TrialFacts] = []
    for i in range(min(spec.parallel or 1, SHOWN)):
        params = ask(
            spec.search["direction"], spec.space, facts, spec.seed or 0, startup_trials(spec.max_runs or 1)
        )
        facts.append(TrialFacts(run_id=f"preview-{i}", params=params, state=RUNNING, number=i))
    return [f.params for f in facts]


def preview(service: SweepService, spec: SweepSpec) -> SweepDetail:
    if spec.method == "tpe":
        configs, n = _first_asks(spec), spec.max_runs or 0
    else:
        configs, n = spec.configs, len(spec.configs)
    names = spec.run_names() if spec.configs else [f"{spec.name}-{i + 1}" for i in range(len(configs))]
    rows = [
        SweepRunRow(id="", name=name, status="preview", status_reason="not created (preview)", params=cfg)
        for name, cfg in zip(names[:SHOWN], configs[:SHOWN], strict=False)
    ]
    notes = ["preview: nothing was created or launched; call create_sweep without preview to start it"]
    if spec.method == "tpe":
        notes.append(f"TPE asks for the other {max(0, n - len(configs))} configurations as results arrive")
    elif n > SHOWN:
        notes.append(f"the first {SHOWN} of {n} configurations are listed")
    return SweepDetail(
        id="",
        name=spec.name,
        goal=spec.goal,
        status="preview",
        parallel=spec.parallel,
        progress=SweepProgress(total=n),
        created_at="",
        method=spec.method,  # type: ignore[arg-type]
        base_command=spec.base_command,
        parameters=spec.space,
        max_runs=spec.max_runs,
        seed=spec.seed,
        gpus_per_run=spec.gpus_per_run,
        backend=spec.chosen_backend,
        metric=spec.search.get("metric"),
        direction=spec.search["direction"],
        pruner=spec.search.get("pruner"),
        budget=spec.search.get("budget"),
        estimate=estimate(service, spec, configs, n),
        runs=rows,
        note="; ".join(notes),
    )
