"""How a sweep searches and what it may spend: its search settings and its budget.

``Sweep.search`` holds the metric and direction that adaptive asks and pruners optimise,
the pruner, and the budget: GPU-hours (a run's GPUs × its time from its command's start to
its end, or to now while it runs) and wall-clock hours since the sweep was created; the
run budget is the sweep's ``max_runs``. A spent budget launches nothing more: held-back
runs keep waiting with the reason (``extend_sweep`` adds budget), adaptive sweeps ask for
nothing. Pure functions over a sweep and its runs, so every reader (fill, get_sweep,
preview) computes the same answer.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from typing import Any

from mcp_server.core.errors import InvalidInput
from mcp_server.core.storage.models import Run, Sweep

PRUNERS = ("none", "median", "halving")
BUDGET_KEYS = ("gpu_hours", "hours")
MAX_BUDGET = 1e6


def validate_budget(budget: Mapping[str, Any] | None) -> dict[str, float]:
    if not budget:
        return {}
    unknown = set(budget) - set(BUDGET_KEYS)
    if unknown:
        raise InvalidInput(f"unknown budget keys {sorted(unknown)}; valid: {', '.join(BUDGET_KEYS)}.")
    out: dict[str, float] = {}
    for key, value in budget.items():
        if value is None:
            continue
        ok = isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)
        if not ok or not 0 < value <= MAX_BUDGET:
            raise InvalidInput(f"budget.{key}={value!r} must be a number above 0 (at most {MAX_BUDGET:g}).")
        out[key] = float(value)
    return out


def validate_search(
    *,
    method: str,
    space: Mapping[str, Any],
    metric: str | None,
    direction: str,
    pruner: str,
    budget: Mapping[str, Any] | None,
    max_runs: int | None,
    parallel: int | None,
    auto_start: bool,
) -> dict[str, Any]:
    """The ``Sweep.search`` of a new sweep, or a clear error naming what is missing."""
    if direction not in ("min", "max"):
        raise InvalidInput(f"direction {direction!r} is not valid; choose 'min' or 'max'.")
    if pruner not in PRUNERS:
        raise InvalidInput(f"pruner {pruner!r} is not known; valid: {', '.join(PRUNERS)}.")
    if metric is not None and (not isinstance(metric, str) or not 1 <= len(metric) <= 128):
        raise InvalidInput("metric must be a metric name of 1-128 characters, e.g. 'val_loss'.")
    if pruner != "none" and metric is None:
        raise InvalidInput(f"pruner={pruner!r} needs metric (and direction): what it compares at each step.")
    if method == "tpe":
        missing = [
            what
            for what, given in (
                ("parameters (the space to search)", bool(space)),
                ("metric (what to optimise)", metric is not None),
                ("max_runs (how many configurations to try)", max_runs is not None),
                ("parallel (TPE asks for a configuration each time a slot frees)", parallel is not None),
            )
            if not given
        ]
        if missing:
            raise InvalidInput("method='tpe' needs " + ", ".join(missing) + ".")
        if not auto_start:
            raise InvalidInput(
                "method='tpe' asks for configurations as runs end; auto_start=false is for grid/random."
            )
    search: dict[str, Any] = {"direction": direction}
    if metric is not None:
        search["metric"] = metric
    if pruner != "none":
        search["pruner"] = pruner
    if clean := validate_budget(budget):
        search["budget"] = clean
    return search


def gpu_hours(runs: Iterable[Run], now: float) -> float:
    """GPU-hours the runs used: GPUs × time from each command's start to its end (or now)."""
    total = 0.0
    for run in runs:
        if run.started_at is not None and run.gpus:
            total += run.gpus * max(0.0, (run.ended_at or now) - run.started_at)
    return total / 3600.0


def spent_reason(sweep: Sweep, runs: Iterable[Run], now: float) -> str | None:
    """Why the sweep may launch nothing more, or None while its budget lasts."""
    budget = (sweep.search or {}).get("budget") or {}
    if hours := budget.get("hours"):
        elapsed = (now - sweep.created_at) / 3600.0
        if elapsed >= hours:
            return f"wall-clock budget spent ({elapsed:.3g} of {hours:g} hours)"
    if limit := budget.get("gpu_hours"):
        used = gpu_hours(runs, now)
        if used >= limit:
            return f"GPU budget spent ({used:.3g} of {limit:g} GPU-hours)"
    return None


def budget_view(sweep: Sweep, runs: Iterable[Run], now: float) -> dict[str, float] | None:
    """The budget and what was spent of it, for a sweep's answer."""
    budget = (sweep.search or {}).get("budget") or {}
    if not budget:
        return None
    out = dict(budget)
    if "gpu_hours" in budget:
        out["gpu_hours_spent"] = round(gpu_hours(runs, now), 6)
    if "hours" in budget:
        out["hours_spent"] = round((now - sweep.created_at) / 3600.0, 6)
    return out
