"""A glance at one metric across many runs: last, best and a tiny series for a sparkline.

Tables of runs (the dashboard's runs view, ``research-mcp demo``) show one number and a
curve per row. They read the same stored series and the same min/max-per-bucket
downsampling as ``get_metrics``, so a row never disagrees with what the agent reads; a
sparkline reads a few pre-aggregated buckets per run, whatever the series' length.
"""

from __future__ import annotations

import json
from collections import Counter
from typing import Any

from pydantic import BaseModel, Field

from mcp_server.core.monitoring.metric_keys import goal
from mcp_server.core.monitoring.metrics import downsample, series_of, summarize
from mcp_server.core.storage.store import Store

SPARK_POINTS = 32
MAX_GLANCE_RUNS = 500


class MetricGlance(BaseModel):
    """One run's view of one metric key."""

    key: str
    count: int
    last: float | None = None
    best: float | None = Field(None, description="min for loss-like keys, max for accuracy-like; else last")
    best_step: int | None = None
    nonfinite: int = 0
    spark: list[float | None] = Field(default_factory=list, description="values in step order; null = NaN")


def metric_keys(store: Store, run_ids: list[str]) -> list[str]:
    """Keys the runs have, the most widespread first, loss-like keys ahead of equally common ones."""
    with store.sql.snapshot() as conn:
        series = series_of(conn, run_ids[:MAX_GLANCE_RUNS])
    counts = Counter(x.key for x in series)
    return sorted(counts, key=lambda k: (-counts[k], goal(k) != "min", k))


def glance(store: Store, run_ids: list[str], key: str, points: int = SPARK_POINTS) -> dict[str, MetricGlance]:
    """For each run that has ``key``: its summary and up to ``points`` values, extremes kept."""
    with store.sql.snapshot() as conn:
        rows = series_of(conn, run_ids[:MAX_GLANCE_RUNS], key)
        out: dict[str, MetricGlance] = {}
        for series in rows:
            summary = summarize(series)
            values, _ = downsample(conn, series, max(points, 10))
            best, best_step = summary.best, summary.best_step
            if best is None:  # a key whose name says neither min nor max: show its last value
                best, best_step = summary.last, summary.last_step
            out[series.run_id] = MetricGlance(
                key=key,
                count=summary.count,
                last=summary.last,
                best=best,
                best_step=best_step,
                nonfinite=summary.nonfinite,
                spark=[v for _, v in values],
            )
    return out


def run_params(store: Store, run_ids: list[str]) -> dict[str, dict[str, Any]]:
    """The params each run recorded (a table of runs shows them beside the numbers)."""
    ids = run_ids[:MAX_GLANCE_RUNS]
    if not ids:
        return {}
    with store.sql.snapshot() as conn:
        rows = conn.execute(f"SELECT id, params FROM runs WHERE id IN ({', '.join('?' * len(ids))})", ids)
        return {run_id: dict(json.loads(params) or {}) for run_id, params in rows}


def run_names(store: Store, run_ids: list[str]) -> dict[str, str]:
    ids = list(dict.fromkeys(run_ids))[:MAX_GLANCE_RUNS]
    if not ids:
        return {}
    with store.sql.snapshot() as conn:
        rows = conn.execute(f"SELECT id, name FROM runs WHERE id IN ({', '.join('?' * len(ids))})", ids)
        return dict(rows.fetchall())
