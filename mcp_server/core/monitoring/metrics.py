"""Reading metrics back: summaries per key and series downsampled to a point budget.

Downsampling keeps extremes (``core.monitoring.downsample``): each step bucket contributes its min
and its max point, plus the first, the last and the first NaN/Inf point, so a spike or a
NaN never disappears from a plot. It reads the pre-aggregated buckets the sidecar keeps
(``core.monitoring.metric_buckets``), so a default answer about a 10M-point run costs about what one
about a 1k-point run does.

Reads go through plain sqlite3 (``Store.sql``): every call here is on an agent's or a
dashboard's hot path, and the ORM used to cost more than the queries.

A key that does not exist is never answered with a silent empty list: the answer names
the keys that do exist and the ones that look like it ("loss" → "train/loss").
"""

from __future__ import annotations

import functools
import math
import sqlite3
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, NamedTuple

from sqlmodel import Session

from mcp_server.core.errors import InvalidInput, NotFound
from mcp_server.core.execution.run_status import TERMINAL
from mcp_server.core.execution.sidecars import wait_drained
from mcp_server.core.ids import validate_id
from mcp_server.core.monitoring.downsample import downsample, finite
from mcp_server.core.monitoring.metric_keys import goal, similar_keys
from mcp_server.core.monitoring.metric_sources import describe, sources_of
from mcp_server.core.run_views import MetricsAnswer, MetricSummary, MissingKey
from mcp_server.core.storage.sqlread import driver_of
from mcp_server.core.storage.store import Store

if TYPE_CHECKING:
    from mcp_server.core.execution.runs import RunService

__all__ = ["MetricsService", "SeriesRow", "best_of", "downsample", "finite", "series_of", "summarize"]

MAX_RUNS = 20
TERMINAL_STATUSES = frozenset(s.value for s in TERMINAL)
MAX_KEYS = 50
MIN_POINTS_PER_SERIES = 4
MAX_POINTS = 20_000
# Without max_points a series gets a sketch: up to 20 points, fewer when many series share
# the answer (about 120 in all), so a default answer about a few runs stays a few KB.
SKETCH_POINTS = 20
SKETCH_TOTAL = 120


@dataclass(slots=True)
class SeriesRow:
    """A metric_series row (the summary the sidecar keeps current), read without the ORM (not
    frozen: a frozen dataclass sets each field through object.__setattr__, and one is built
    per series on every read)."""

    id: int
    run_id: str
    key: str
    source: str
    count: int
    nonfinite: int
    first_nonfinite_step: int | None
    first_step: int | None
    last_step: int | None
    last_value: float | None
    min_value: float | None
    min_step: int | None
    max_value: float | None
    max_step: int | None


INF = math.inf
SERIES_SQL = f"SELECT {', '.join(SeriesRow.__dataclass_fields__)} FROM metric_series"


class SidecarProgress(NamedTuple):
    """What get_metrics reads of a run's sidecar row: whether it is done, and its ingest
    counters (from ``metrics_records`` on, in ``IngestStats``' order)."""

    run_id: str
    exited_at: float | None
    metrics_offset: int
    metrics_records: int
    output_records: int
    points: int
    bad_lines: int
    non_numeric: int
    non_numeric_example: str
    huge_lines: int
    partial_lines: int
    duplicates: int
    log_parsing: bool


SIDECAR_FIELDS = SidecarProgress._fields
# IngestStats' fields, named as the answer names them, and where they start in a RUNS_SQL row.
INGEST_KEYS = ("metrics_records", "log_records", *SIDECAR_FIELDS[5:])
INGEST_AT = 3 + SIDECAR_FIELDS.index("metrics_records")
# The runs asked about and their sidecar rows (NULLs when none), in one statement: the
# caller appends "(?, ...)" with one mark per run id.
RUNS_SQL = (
    f"SELECT r.id, r.name, r.status, {', '.join('s.' + f for f in SIDECAR_FIELDS)} "
    "FROM runs r LEFT JOIN sidecars s ON s.run_id = r.id WHERE r.id IN "
)
VALIDATE_ANSWER = MetricsAnswer.__pydantic_validator__.validate_python


def progress_of(run: tuple[Any, ...]) -> SidecarProgress | None:
    """A RUNS_SQL row's sidecar part; None when the run has no sidecar row (its run_id is NULL)."""
    return SidecarProgress._make(run[3:]) if run[3] is not None else None


def summary_fields(s: Any) -> dict[str, Any]:
    """A series summary's fields (``MetricSummary``'s), from a metric_series row."""
    direction = goal(s.key)
    best, best_step = None, None
    if direction == "min":
        best, best_step = s.min_value, s.min_step
    elif direction == "max":
        best, best_step = s.max_value, s.max_step
    return {
        "key": s.key,
        "source": s.source,
        "count": s.count,
        "first_step": s.first_step,
        "last_step": s.last_step,
        # finite(), inlined: this runs for every series of every metrics read
        "last": s.last_value if s.last_value is not None and -INF < s.last_value < INF else None,
        "min": s.min_value if s.min_value is not None and -INF < s.min_value < INF else None,
        "max": s.max_value if s.max_value is not None and -INF < s.max_value < INF else None,
        "best": best if best is not None and -INF < best < INF else None,
        "best_step": best_step,
        "nonfinite": s.nonfinite,
        "first_nonfinite_step": s.first_nonfinite_step,
    }


def summarize(s: Any) -> MetricSummary:
    return MetricSummary(**summary_fields(s))


def best_of(series: Any, direction: str) -> tuple[float, int | None] | None:
    """A series' best finite value and its step, for the given direction ('min' or 'max')."""
    value, step = (
        (series.min_value, series.min_step) if direction == "min" else (series.max_value, series.max_step)
    )
    value = finite(value)
    return None if value is None else (value, step)


def _marks(n: int) -> str:
    return ", ".join("?" * n)


@functools.lru_cache(maxsize=MAX_RUNS)
def _runs_sql(runs: int) -> str:
    """RUNS_SQL for ``runs`` run ids, built once per count (on every metrics read)."""
    return f"{RUNS_SQL}({_marks(runs)})"


@functools.lru_cache(maxsize=64)
def _series_sql(runs: int, by_key: bool) -> str:
    """The series of ``runs`` run ids (and one key), built once per shape: on every metrics read."""
    key = " AND key = ?" if by_key else ""
    return f"{SERIES_SQL} WHERE run_id IN ({_marks(runs)}){key} ORDER BY key, run_id"


def series_of(conn: sqlite3.Connection, run_ids: list[str], key: str | None = None) -> list[SeriesRow]:
    """The runs' series (only ``key``'s when given), by key."""
    if not run_ids:
        return []
    params = [*run_ids, key] if key is not None else run_ids
    return [SeriesRow(*r) for r in conn.execute(_series_sql(len(run_ids), key is not None), params)]


def recent_points(conn: sqlite3.Connection, run_id: str, n: int) -> list[dict[str, Any]]:
    """The last ``n`` points the sidecar stored for a run, newest last, any key.

    Each series' latest ``n`` by step (one indexed read each), the newest ``n`` of those by
    storage order: a long run is not scanned for its tail."""
    rows: list[tuple[int, str, int, float | None]] = []
    for sid, key in conn.execute("SELECT id, key FROM metric_series WHERE run_id = ?", (run_id,)).fetchall():
        rows += [
            (pid, key, step, value)
            for pid, step, value in conn.execute(
                "SELECT id, step, value FROM metric_points WHERE series_id = ? ORDER BY step DESC, id DESC "
                "LIMIT ?",
                (sid, n),
            )
        ]
    rows = sorted(rows)[-n:] if n > 0 else []
    return [{"key": key, "step": int(step), "value": finite(value)} for _, key, step, value in rows]


def summaries(session: Session, run_id: str) -> list[MetricSummary]:
    return [summarize(s) for s in series_of(driver_of(session.connection()), [run_id])]


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
        for run_id in ids:
            validate_id(run_id, "run", "run_id")
        still_reading: list[str] = []
        drained = False
        while True:
            conn = self.store.sql.connection()
            conn.execute("BEGIN")  # one snapshot per answer
            try:
                answer = self._answer(conn, ids, keys, max_points, max_keys, still_reading, drained)
            finally:
                conn.execute("COMMIT")
            if answer is not None:
                return answer
            # An ended run's sidecar is still storing its last lines: let it (at most a few s).
            still_reading, drained = wait_drained(self.store, ids), True

    def _answer(
        self,
        conn: sqlite3.Connection,
        ids: list[str],
        keys: list[str] | None,
        max_points: int | None,
        max_keys: int | None,
        still_reading: list[str],
        drained: bool,
    ) -> MetricsAnswer | None:
        """The answer from one snapshot; None when a run's last lines are still being stored.

        On every call an agent or a dashboard makes, so kept to one pass over plain rows,
        building plain dicts that are validated in one pydantic call (points excepted: see
        MetricSeriesOut)."""
        found = {r[0]: r for r in conn.execute(_runs_sql(len(ids)), ids)}
        if len(found) < len(ids):
            absent = next(run_id for run_id in ids if run_id not in found)
            raise NotFound(f"no run with id {absent!r}; use list_runs to see existing runs.")
        if not drained:
            for r in found.values():
                # An ended run whose sidecar row (r[3]: its run_id) has not exited (r[4]).
                if r[2] in TERMINAL_STATUSES and r[3] is not None and r[4] is None:
                    return None
        by_run: dict[str, list[SeriesRow]] = {run_id: [] for run_id in ids}
        for r in conn.execute(_series_sql(len(ids), False), ids):
            by_run[r[1]].append(SeriesRow(*r))
        if keys is not None:
            chosen = {run_id: [x for x in existing if x.key in keys] for run_id, existing in by_run.items()}
        elif max_keys:
            chosen = {run_id: existing[:max_keys] for run_id, existing in by_run.items()}
        else:
            chosen = by_run
        total = sum(map(len, chosen.values())) or 1
        if max_points is None:
            budget = SKETCH_TOTAL // total
            budget = SKETCH_POINTS if budget > SKETCH_POINTS else max(MIN_POINTS_PER_SERIES, budget)
        else:
            budget = max(MIN_POINTS_PER_SERIES, max_points // total)
        runs_out: list[dict[str, Any]] = []
        for run_id, existing in by_run.items():
            run, shown = found[run_id], chosen[run_id]
            series_out = []
            for series in shown:
                fields = summary_fields(series)
                fields["points"], fields["downsampled"] = downsample(conn, series, budget)
                series_out.append(fields)
            ingest = dict(zip(INGEST_KEYS, run[INGEST_AT:], strict=True)) if run[3] is not None else None
            note = self._note(existing, ingest, run_id in still_reading)
            listed: list[str] | None = None
            missing: list[MissingKey] = []
            if keys is not None or len(shown) < len(existing):
                names = [x.key for x in existing]
                listed = names[:MAX_KEYS]
                note = self._key_note(note, len(shown), len(names), keys is None)
                if keys is not None and len(shown) < len(keys):
                    ended = run[2] in TERMINAL_STATUSES and run_id not in still_reading
                    read = self._read(progress_of(run)) if ended else ""
                    missing = [self._missing(k, names, ended, read) for k in keys if k not in names]
            runs_out.append(
                {
                    "run_id": run_id,
                    "name": run[1],
                    "status": run[2],
                    "keys": listed,
                    "series": series_out,
                    "missing": missing,
                    "ingest": ingest,
                    "note": note,
                }
            )
        # The model's validator called directly (what model_validate calls, less its argument checks).
        return VALIDATE_ANSWER({"runs": runs_out, "points_per_series": budget})  # type: ignore[no-any-return]

    @staticmethod
    def _key_note(note: str, shown: int, existing: int, every_key_asked: bool) -> str:
        """``note`` with what it says when not every key of a run is in its answer."""
        if existing > MAX_KEYS and (not every_key_asked or shown < existing):
            note = "; ".join([*filter(None, [note]), f"the first {MAX_KEYS} of {existing} keys are listed"])
        if every_key_asked and shown < existing:
            shown_note = f"{shown} of {existing} keys shown: name the keys you want"
            note = "; ".join([*filter(None, [note]), shown_note])
        return note

    def _read(self, row: Any) -> str:
        """What an ended run's sidecar read, for a "never logged" hint (a rare path: the ORM is fine)."""
        if row is None:
            return "no sidecar has read this run yet"
        with self.store.read() as s:
            return describe(sources_of(s, row))

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
    def _note(series: list[SeriesRow], ingest: dict[str, Any] | None, reading: bool = False) -> str:
        """What the reader should know about a run's metrics; ``ingest``: its IngestStats fields."""
        skipped = ingest is None or ingest["bad_lines"] or ingest["non_numeric"] or ingest["huge_lines"]
        if not (skipped or reading or not series):
            return ""  # the usual answer, decided first: this is on every metrics read's path
        notes = []
        if reading:
            notes.append("the run ended but its sidecar is still storing its last lines; ask again shortly")
        if not series:
            if ingest is None:
                notes.append("no metrics: no sidecar has read this run's files yet")
            else:
                notes.append(
                    "no metrics: metrics.jsonl is empty, no metric lines were printed and no framework log "
                    "file (TensorBoard events, metrics.csv, trainer_state.json) was found under the workdir; "
                    "have the job append one JSON object per line to $RESEARCH_METRICS_FILE"
                )
        if ingest is None:
            return "; ".join(notes)
        if ingest["bad_lines"]:
            bad = ingest["bad_lines"]
            notes.append(f"{bad} metrics.jsonl line(s) were not JSON objects and were skipped")
        if ingest["non_numeric"]:
            example = f" (e.g. {ingest['non_numeric_example']})" if ingest["non_numeric_example"] else ""
            notes.append(f"{ingest['non_numeric']} non-numeric value(s) were skipped{example}")
        if ingest["huge_lines"]:
            notes.append(f"{ingest['huge_lines']} line(s) over 1 MiB were skipped")
        return "; ".join(notes)
