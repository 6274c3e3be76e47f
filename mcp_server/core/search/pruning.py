"""Early stopping of a sweep's runs: Optuna's pruner decides on the store's metrics.

A run's sidecar asks (``sidecar.pruner``) whenever its sweep's metric reached a new step S.
Everything the pruner needs is rebuilt from the stored metrics, at matching steps (a run's
last point at or before the step asked for, so runs that log at different steps still
compare), so no pruner state is kept between checks:

- ``median`` is Optuna's ``MedianPruner``: the sweep's finished runs are complete trials
  with their value at S, and this run is pruned when its best value so far is worse than
  their median, once ``min_runs`` of them reached S;
- ``halving`` is Optuna's ``SuccessiveHalvingPruner`` (reduction factor 3; rung r at step
  min_resource·3^r, min_resource = the longest finished run's last step / 100, Optuna's own
  rule): every run of the sweep that reached a rung, finished, pruned or running, competes
  there with its value at that rung's step, and this run is judged at the highest rung its
  step S reached.

Plain ``sqlite3`` (the sidecar stays free of SQLAlchemy); Optuna is imported only once
there are finished runs to compare with.
"""

from __future__ import annotations

import json
import statistics
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from mcp_server.core.search.optuna_study import COMPLETE, FAIL, PRUNED, RUNNING, TrialFacts

Execute = Callable[..., Any]
_ACTIVE = ("queued", "launching", "running")
REDUCTION_FACTOR = 3
MAX_RUNGS = 16


@dataclass
class Verdict:
    prune: bool
    reason: str = ""
    step: int | None = None
    value: float | None = None  # the run's value at ``step`` (what a sampler is told of a pruned run)


@dataclass
class _Run:
    facts: TrialFacts
    series_id: int | None
    last_step: int | None  # how far its metric got


def config(execute: Execute, run_id: str) -> tuple[str, dict[str, Any]] | None:
    """(sweep id, search settings) when ``run_id`` belongs to a sweep with a pruner."""
    row = execute(
        "SELECT s.id, s.search FROM runs r JOIN sweeps s ON s.id = r.sweep_id WHERE r.id = ?", (run_id,)
    ).fetchone()
    if row is None:
        return None
    try:
        search = json.loads(row[1] or "{}")
    except ValueError:
        return None
    return (row[0], search) if search.get("pruner") and search.get("metric") else None


def _value_at(execute: Execute, series_id: int, step: int) -> float | None:
    row = execute(
        "SELECT value FROM metric_points WHERE series_id = ? AND step <= ? AND value IS NOT NULL "
        "ORDER BY step DESC LIMIT 1",
        (series_id, step),
    ).fetchone()
    return None if row is None else float(row[0])


def _others(
    execute: Execute, run_id: str, sweep_id: str, metric: str, direction: str, step: int
) -> list[_Run]:
    rows = execute(
        "SELECT r.id, r.status, t.pruned, t.pruned_step, t.pruned_value, ms.id, ms.last_step, "
        "ms.last_value, ms.min_value, ms.max_value FROM runs r "
        "LEFT JOIN sweep_trials t ON t.run_id = r.id "
        "LEFT JOIN metric_series ms ON ms.run_id = r.id AND ms.key = ? "
        "WHERE r.sweep_id = ? AND r.id != ? ORDER BY r.pk",
        (metric, sweep_id, run_id),
    ).fetchall()
    out = []
    for rid, status, pruned, p_step, p_value, sid, last_step, last_value, lo, hi in rows:
        fact = TrialFacts(run_id=rid, params={}, state=FAIL)
        best = lo if direction == "min" else hi
        if pruned:
            fact.state = PRUNED
            if p_step is not None and p_value is not None:
                fact.intermediate = {int(p_step): float(p_value)}
        elif status == "finished" and sid is not None and best is not None and last_step is not None:
            fact.state, fact.value = COMPLETE, float(best)
            if last_value is not None:
                fact.intermediate[int(last_step)] = float(last_value)
            if last_step >= step and (at := _value_at(execute, sid, step)) is not None:
                fact.intermediate[step] = at
        elif status in _ACTIVE:
            fact.state = RUNNING
        out.append(_Run(fact, sid, None if last_step is None else int(last_step)))
    return out


def _rungs(execute: Execute, run: _Run, min_resource: int, below: int | None = None) -> dict[str, float]:
    """The run's value at each rung step it reached (``below``: only rungs under that one)."""
    attrs: dict[str, float] = {}
    if run.series_id is None or run.last_step is None:
        return attrs
    for rung in range(MAX_RUNGS if below is None else below):
        at = min_resource * REDUCTION_FACTOR**rung
        if at > run.last_step or (value := _value_at(execute, run.series_id, at)) is None:
            break
        attrs[f"completed_rung_{rung}"] = value
    return attrs


def check(
    execute: Execute, run_id: str, sweep_id: str, search: dict[str, Any], min_runs: int
) -> Verdict | None:
    """Whether ``run_id`` should stop now; None when it has no value of the metric yet."""
    metric, direction, kind = search["metric"], search.get("direction", "min"), search["pruner"]
    row = execute(
        "SELECT id, last_step, last_value, min_value, min_step, max_value, max_step FROM metric_series "
        "WHERE run_id = ? AND key = ?",
        (run_id, metric),
    ).fetchone()
    if row is None or row[1] is None or row[2] is None:
        return None
    series_id, step, last = int(row[0]), int(row[1]), float(row[2])
    best, best_step = (row[3], row[4]) if direction == "min" else (row[5], row[6])
    others = _others(execute, run_id, sweep_id, metric, direction, step)
    complete = [o.facts for o in others if o.facts.state == COMPLETE]
    at_step = [f.intermediate[step] for f in complete if step in f.intermediate]
    if (kind == "median" and len(at_step) < min_runs) or (kind == "halving" and not complete):
        return Verdict(False, step=step, value=last)
    import optuna

    from mcp_server.core.search.optuna_study import build

    intermediate = {step: last}
    if best is not None and best_step is not None and int(best_step) < step:
        intermediate[int(best_step)] = float(best)
    current = TrialFacts(run_id=run_id, params={}, state=RUNNING, intermediate=intermediate)
    rung = min_resource = 0
    if kind == "median":
        pruner: Any = optuna.pruners.MedianPruner(n_startup_trials=min_runs, n_min_trials=min_runs)
    else:
        longest = max(o.last_step or 0 for o in others if o.facts.state == COMPLETE)
        min_resource = max(longest // 100, 1)
        while rung + 1 < MAX_RUNGS and min_resource * REDUCTION_FACTOR ** (rung + 1) <= step:
            rung += 1
        for other in others:
            other.facts.attrs = _rungs(execute, other, min_resource)
        current.attrs = _rungs(execute, _Run(current, series_id, step), min_resource, below=rung)
        # Judged, like the others, by its value at the rung's step (not a later, better one).
        at_rung = _value_at(execute, series_id, min_resource * REDUCTION_FACTOR**rung)
        current.intermediate = {step: last if at_rung is None else at_rung}
        pruner = optuna.pruners.SuccessiveHalvingPruner(
            min_resource=min_resource, reduction_factor=REDUCTION_FACTOR
        )
    study = build(direction, {}, [*(o.facts for o in others), current], pruner=pruner)
    verdict = Verdict(bool(pruner.prune(study, study.trials[-1])), step=step, value=last)
    if verdict.prune and kind == "median":
        shown = float(best) if best is not None else last
        verdict.reason = (
            f"pruned at step {step}: {metric} {shown:.4g} worse than the median "
            f"{statistics.median(at_step):.4g} of {len(at_step)} finished runs"
        )
    elif verdict.prune:
        key = f"completed_rung_{rung}"
        peers = 1 + sum(1 for o in others if key in o.facts.attrs)
        verdict.reason = (
            f"pruned at step {step}: {metric} {current.intermediate[step]:.4g} not in the best "
            f"1/{REDUCTION_FACTOR} of the {peers} runs that reached rung {rung} (step "
            f"{min_resource * REDUCTION_FACTOR**rung})"
        )
    return verdict


def record(execute: Execute, run_id: str, sweep_id: str, verdict: Verdict, t: float) -> bool:
    """A pruned run's verdict and its stop request, in one transaction.

    Returns whether the stop was requested (False: not pruned, or the run had ended or was
    being stopped already)."""
    if not verdict.prune:
        return False
    cur = execute(
        "UPDATE runs SET stop_requested_at = ?, updated_at = ? WHERE id = ? AND stop_requested_at IS NULL "
        f"AND status IN ({', '.join('?' * len(_ACTIVE))})",
        (t, t, run_id, *_ACTIVE),
    )
    if cur.rowcount != 1:
        return False
    execute(
        "INSERT INTO sweep_trials (run_id, sweep_id, pruned, pruned_step, pruned_value, created_at, "
        "updated_at) VALUES (?, ?, ?, ?, ?, ?, ?) ON CONFLICT(run_id) DO UPDATE SET "
        "pruned = excluded.pruned, pruned_step = excluded.pruned_step, "
        "pruned_value = excluded.pruned_value, updated_at = excluded.updated_at",
        (run_id, sweep_id, verdict.reason, verdict.step, verdict.value, t, t),
    )
    return True
