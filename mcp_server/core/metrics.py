"""Reading metrics back: summaries per key and series downsampled to a point budget.

Downsampling keeps extremes: a series over its budget is cut into step buckets and each
bucket contributes its min and its max point (plus the first, the last and the first
NaN/Inf point), so a spike or a NaN never disappears from a plot the way it would with
every-k-th sampling. It runs in SQL over the (series_id, step) index, so a million-point
series costs two grouped scans, not a million rows shipped to Python.

A key that does not exist is never answered with a silent empty list: the answer names
the keys that do exist and the ones that look like it ("loss" → "train/loss").
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any

from sqlalchemy import Connection
from sqlmodel import Session, col, select

from mcp_server.core.errors import InvalidInput
from mcp_server.core.lifecycle import TERMINAL
from mcp_server.core.metric_keys import goal, similar_keys
from mcp_server.core.metric_sources import describe, sources_of
from mcp_server.core.models import MetricSeries, Sidecar
from mcp_server.core.sidecars import ingest_stats, wait_drained
from mcp_server.core.store import Store
from mcp_server.core.views import MetricsAnswer, MetricSeriesOut, MetricSummary, MissingKey, RunMetrics

if TYPE_CHECKING:
    from mcp_server.core.runs import RunService

MAX_RUNS = 20
TERMINAL_STATUSES = frozenset(s.value for s in TERMINAL)
MAX_KEYS = 50
MIN_POINTS_PER_SERIES = 4
MAX_POINTS = 20_000
# Without max_points a series gets a sketch: up to 20 points, fewer when many series share
# the answer (about 120 in all), so a default answer about a few runs stays a few KB.
SKETCH_POINTS = 20
SKETCH_TOTAL = 120


def finite(value: float | None) -> float | None:
    return value if value is not None and math.isfinite(value) else None


def summarize(s: MetricSeries) -> MetricSummary:
    direction = goal(s.key)
    best, best_step = None, None
    if direction == "min":
        best, best_step = s.min_value, s.min_step
    elif direction == "max":
        best, best_step = s.max_value, s.max_step
    return MetricSummary(
        key=s.key,
        source=s.source,
        count=s.count,
        first_step=s.first_step,
        last_step=s.last_step,
        last=finite(s.last_value),
        min=finite(s.min_value),
        max=finite(s.max_value),
        best=finite(best),
        best_step=best_step,
        nonfinite=s.nonfinite,
        first_nonfinite_step=s.first_nonfinite_step,
    )


def best_of(series: MetricSeries, direction: str) -> tuple[float, int | None] | None:
    """A series' best finite value and its step, for the given direction ('min' or 'max')."""
    value, step = (
        (series.min_value, series.min_step) if direction == "min" else (series.max_value, series.max_step)
    )
    value = finite(value)
    return None if value is None else (value, step)


def series_of(session: Session, run_ids: list[str]) -> list[MetricSeries]:
    if not run_ids:
        return []
    query = select(MetricSeries).where(col(MetricSeries.run_id).in_(run_ids)).order_by(col(MetricSeries.key))
    return list(session.exec(query).all())


def recent_points(session: Session, run_id: str, n: int) -> list[dict[str, Any]]:
    """The last ``n`` points the sidecar stored for a run, newest last, any key."""
    rows = (
        session.connection()
        .exec_driver_sql(
            "SELECT s.key, p.step, p.value FROM metric_points p JOIN metric_series s ON s.id = p.series_id "
            "WHERE s.run_id = ? ORDER BY p.id DESC LIMIT ?",
            (run_id, n),
        )
        .fetchall()
    )
    return [{"key": key, "step": int(step), "value": finite(value)} for key, step, value in reversed(rows)]


def summaries(session: Session, run_id: str) -> list[MetricSummary]:
    rows = session.exec(
        select(MetricSeries).where(MetricSeries.run_id == run_id).order_by(col(MetricSeries.key))
    )
    return [summarize(s) for s in rows]


def downsample(conn: Connection, series: MetricSeries, budget: int) -> tuple[list[tuple[int, Any]], bool]:
    """Up to ``budget`` [step, value] points of a series, extremes kept; True when reduced."""
    sid = series.id
    if series.count <= budget:
        rows = conn.exec_driver_sql(
            "SELECT step, value FROM metric_points WHERE series_id = ? ORDER BY step, id", (sid,)
        ).fetchall()
        return [(int(step), finite(value)) for step, value in rows], False
    lo, hi = conn.exec_driver_sql(
        "SELECT MIN(step), MAX(step) FROM metric_points WHERE series_id = ?", (sid,)
    ).one()
    buckets = max(1, (budget - 3) // 2)
    span = max(1, int(hi) - int(lo) + 1)
    chosen: dict[tuple[int, float | None], None] = {}
    for agg in ("MIN", "MAX"):
        # SQLite returns the row's other columns from the row holding the MIN/MAX.
        rows = conn.exec_driver_sql(
            f"SELECT CAST((step - ?) * 1.0 * ? / ? AS INTEGER) AS b, {agg}(value), step "
            "FROM metric_points WHERE series_id = ? AND value IS NOT NULL GROUP BY b",
            (lo, buckets, span, sid),
        ).fetchall()
        for _b, value, step in rows:
            chosen[(int(step), finite(value))] = None
    for order in ("step, id", "step DESC, id DESC"):
        row = conn.exec_driver_sql(
            f"SELECT step, value FROM metric_points WHERE series_id = ? ORDER BY {order} LIMIT 1", (sid,)
        ).first()
        if row is not None:
            chosen[(int(row[0]), finite(row[1]))] = None
    if series.first_nonfinite_step is not None:
        chosen[(series.first_nonfinite_step, None)] = None
    points = sorted(chosen, key=lambda p: (p[0], p[1] is None, p[1] or 0.0))
    return points, True


class MetricsService:
    def __init__(self, store: Store, runs: RunService) -> None:
        self.store = store
        self.runs = runs

    def get(
        self,
        run_ids: list[str],
        keys: list[str] | None = None,
        max_points: int | None = None,
        max_keys: int | None = None,
    ) -> MetricsAnswer:
        """Summaries and downsampled series; ``max_keys`` caps the keys per run when ``keys`` is
        None (the rest are listed by name, so an answer about a run with hundreds of keys
        stays small)."""
        ids = list(dict.fromkeys(run_ids or []))
        if not 1 <= len(ids) <= MAX_RUNS:
            raise InvalidInput(f"give 1 to {MAX_RUNS} run ids in run_ids (got {len(ids)}).")
        if keys is not None:
            keys = list(dict.fromkeys(keys))
            if not 1 <= len(keys) <= MAX_KEYS:
                raise InvalidInput(f"give 1 to {MAX_KEYS} keys, or leave keys out for every key.")
            for key in keys:
                if not isinstance(key, str) or not key.strip() or len(key) > 200:
                    raise InvalidInput(f"key {key!r} is not valid: give a metric name such as 'loss'.")
        if max_points is not None and not MIN_POINTS_PER_SERIES <= max_points <= MAX_POINTS:
            raise InvalidInput(
                f"max_points={max_points} is out of range; give {MIN_POINTS_PER_SERIES} to {MAX_POINTS}."
            )
        runs = [self.runs.load(run_id) for run_id in ids]
        still_reading = wait_drained(self.store, ids)
        run_status = {run.id: run.status for run in runs}
        with self.store.read() as s:
            all_series = s.exec(
                select(MetricSeries).where(col(MetricSeries.run_id).in_(ids)).order_by(col(MetricSeries.key))
            ).all()
            progress = {
                row.run_id: row for row in s.exec(select(Sidecar).where(col(Sidecar.run_id).in_(ids)))
            }
            by_run: dict[str, list[MetricSeries]] = {run_id: [] for run_id in ids}
            for series in all_series:
                by_run[series.run_id].append(series)
            plan: list[tuple[str, list[MetricSeries], list[MissingKey]]] = []
            for run_id in ids:
                existing = by_run[run_id]
                names = [x.key for x in existing]
                if keys is None:
                    plan.append((run_id, existing[:max_keys] if max_keys else existing, []))
                    continue
                wanted = [x for x in existing if x.key in keys]
                missing = []
                if any(k not in names for k in keys):
                    ended = run_status[run_id] in TERMINAL_STATUSES and run_id not in still_reading
                    row = progress.get(run_id)
                    read = (
                        describe(sources_of(s, row))
                        if row is not None
                        else "no sidecar has read this run yet"
                    )
                    missing = [self._missing(k, names, ended, read) for k in keys if k not in names]
                plan.append((run_id, wanted, missing))
            total = sum(len(chosen) for _, chosen, _ in plan)
            if max_points is None:
                budget = max(MIN_POINTS_PER_SERIES, min(SKETCH_POINTS, SKETCH_TOTAL // max(1, total)))
            else:
                budget = max(MIN_POINTS_PER_SERIES, max_points // max(1, total))
            conn = s.connection()
            answers = []
            for run, (run_id, chosen, missing) in zip(runs, plan, strict=True):
                series_out = []
                for series in chosen:
                    points, reduced = downsample(conn, series, budget)
                    series_out.append(
                        MetricSeriesOut(**summarize(series).model_dump(), points=points, downsampled=reduced)
                    )
                row = progress.get(run_id)
                names = [x.key for x in by_run[run_id]]
                note = self._note(by_run[run_id], row, run_id in still_reading)
                if len(names) > MAX_KEYS and (keys is not None or len(chosen) < len(names)):
                    note = "; ".join(
                        [*filter(None, [note]), f"the first {MAX_KEYS} of {len(names)} keys are listed"]
                    )
                if keys is None and len(chosen) < len(names):
                    note = "; ".join(
                        [
                            *filter(None, [note]),
                            f"{len(chosen)} of {len(names)} keys shown: name the keys you want",
                        ]
                    )
                answers.append(
                    RunMetrics(
                        run_id=run_id,
                        name=run.name,
                        status=run.status,
                        keys=None if keys is None and len(chosen) == len(names) else names[:MAX_KEYS],
                        series=series_out,
                        missing=missing,
                        ingest=ingest_stats(row) if row is not None else None,
                        note=note,
                    )
                )
        return MetricsAnswer(runs=answers, points_per_series=budget)

    @staticmethod
    def _missing(key: str, names: list[str], ended: bool = False, read: str = "") -> MissingKey:
        """Why ``key`` is absent: an ended run *never logged* it (and we say what was read)."""
        said = f"this run never logged {key!r} (read: {read})" if ended else f"no key {key!r} in this run yet"
        if not names:
            hint = said if ended else f"no key {key!r}: this run has no metrics yet"
            return MissingKey(key=key, hint=hint)
        similar = similar_keys(key, names)
        if similar:
            hint = f"{said}; did you mean {', '.join(repr(x) for x in similar)}?"
        else:
            shown = ", ".join(repr(x) for x in names[:20]) + (" ..." if len(names) > 20 else "")
            hint = f"{said}; its keys are: {shown}"
        return MissingKey(key=key, hint=hint, similar=similar)

    @staticmethod
    def _note(series: list[MetricSeries], row: Sidecar | None, reading: bool = False) -> str:
        notes = []
        if reading:
            notes.append("the run ended but its sidecar is still storing its last lines; ask again shortly")
        if not series:
            if row is None:
                notes.append("no metrics: no sidecar has read this run's files yet")
            else:
                notes.append(
                    "no metrics: metrics.jsonl is empty, no metric lines were printed and no framework log "
                    "file (TensorBoard events, metrics.csv, trainer_state.json) was found under the workdir; "
                    "have the job append one JSON object per line to $RESEARCH_METRICS_FILE"
                )
        if row is not None and row.bad_lines:
            notes.append(f"{row.bad_lines} metrics.jsonl line(s) were not JSON objects and were skipped")
        if row is not None and row.non_numeric:
            example = f" (e.g. {row.non_numeric_example})" if row.non_numeric_example else ""
            notes.append(f"{row.non_numeric} non-numeric value(s) were skipped{example}")
        if row is not None and row.huge_lines:
            notes.append(f"{row.huge_lines} line(s) over 1 MiB were skipped")
        return "; ".join(notes)
