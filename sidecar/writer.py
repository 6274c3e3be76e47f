"""Commit one poll: points, series summaries, alerts and every source's advanced offsets in ONE
transaction, so a sidecar killed at any instant resumes exactly where the last commit ended.

Each key has one series, owned by one source kind. When a higher-ranked source (a log file
the framework writes, or metrics.jsonl) brings a key that printed output already gave,
the file's series wins: the printed points are deleted and replaced, and from then on a
printed value is stored only when its step is exact and lies beyond the file's last step
(a file is written later than the line is printed: HF saves trainer_state.json only at
checkpoints); the file replaces those points when it reaches their steps. Anything else
is a duplicate: counted, not stored. Two files of the same rank giving one key: the first
keeps it.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import math
import sqlite3
from collections import deque
from typing import Any

from mcp_server.core.monitoring import metric_buckets as buckets
from mcp_server.core.monitoring.alert_specs import AlertSpec
from mcp_server.core.monitoring.metric_keys import is_loss_like
from mcp_server.core.storage.sqlwrites import raise_alert_sql
from sidecar import rules
from sidecar.batch import FILE_KINDS, RANK, Batch, FileProgress, Progress
from sidecar.db import SeriesState, SidecarDB

log = logging.getLogger("sidecar")

RECENT = 10  # latest values per key kept for the judge's digest

SQL_ADVANCE = (
    "UPDATE sidecars SET metrics_offset = ?, metrics_records = ?, metrics_skipping = ?, "
    "output_offset = ?, output_records = ?, output_skipping = ?, log_parsing = ?, output_state = ?, "
    "bad_lines = bad_lines + ?, non_numeric = non_numeric + ?, huge_lines = huge_lines + ?, "
    "partial_lines = partial_lines + ?, points = points + ?, duplicates = duplicates + ?, "
    "non_numeric_example = CASE WHEN non_numeric_example = '' THEN ? ELSE non_numeric_example END, "
    "last_data_at = COALESCE(?, last_data_at), heartbeat_at = ? "
    "WHERE run_id = ? AND pid = ? AND metrics_offset = ? AND output_offset = ?"
)
SQL_NEW_FILE = (
    "INSERT INTO metric_files (run_id, path, kind, offset, records, state, points, bad, example, "
    "found_at, updated_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
)
SQL_FILE = (
    "UPDATE metric_files SET offset = ?, records = ?, state = ?, points = points + ?, bad = bad + ?, "
    "example = CASE WHEN example = '' THEN ? ELSE example END, updated_at = ? "
    "WHERE run_id = ? AND path = ? AND offset = ? AND records = ?"
)
SQL_NEW_SERIES = "INSERT INTO metric_series (run_id, key, source, updated_at) VALUES (?, ?, ?, ?)"
SQL_POINT = "INSERT INTO metric_points (series_id, step, value, ts) VALUES (?, ?, ?, ?)"
SQL_SERIES = (
    "UPDATE metric_series SET source = ?, count = ?, nonfinite = ?, first_nonfinite_step = ?, "
    "first_step = ?, last_step = ?, last_value = ?, min_value = ?, min_step = ?, max_value = ?, "
    "max_step = ?, exact_through = ?, updated_at = ? WHERE id = ?"
)
_FINITE = "value IS NOT NULL AND abs(value) <= 1.7976931348623157e308"


class OwnershipLost(Exception):
    """Another sidecar owns this run now (or the row changed under us)."""


Context = tuple[SeriesState, deque[tuple[int, float]], Any, Any]


class Writer:
    """The run's series as stored, their rule windows, and the one way to add to them."""

    def __init__(self, db: SidecarDB, run_id: str, pid: int, alert_ttl_s: float) -> None:
        self.db = db
        self.run_id = run_id
        self.pid = pid
        self.alert_ttl_s = alert_ttl_s
        self.series: dict[str, SeriesState] = {}
        self.windows: dict[str, rules.RecentWindow] = {}
        self.window_steps: dict[str, deque[int]] = {}
        self.recent: dict[str, deque[tuple[int, float]]] = {}
        self.nonfinite_raised = False

    def load(self) -> None:
        """Reload series and rule windows from the store (at start, and after a failed commit)."""
        self.series = self.db.load_series(self.run_id)
        self.windows.clear()
        self.window_steps.clear()
        self.recent.clear()
        for key, s in self.series.items():
            if s.nonfinite:
                self.nonfinite_raised = True
            n = rules.TREND_WINDOW if is_loss_like(key) else RECENT
            for step, value in self.db.recent_points(s.id, n):
                if value is not None:
                    self._remember(key, step, value, track=is_loss_like(key))

    def _remember(self, key: str, step: int, value: float, track: bool) -> None:
        recent = self.recent.get(key)
        if recent is None:
            recent = self.recent[key] = deque(maxlen=RECENT)
        recent.append((step, value))
        if track:
            window = self.windows.get(key)
            if window is None:
                window = self.windows[key] = rules.RecentWindow()
                self.window_steps[key] = deque(maxlen=rules.TREND_WINDOW)
            window.push(value)
            self.window_steps[key].append(step)

    def _context(self, key: str, source: str) -> Context:
        """Per-key state for one commit: a copy of the series summary and the rule windows."""
        old = self.series.get(key)
        series = (
            dataclasses.replace(old)
            if old
            else SeriesState(id=0, key=key, source=source, provisional=False, inexact=False)
        )
        recent = self.recent.setdefault(key, deque(maxlen=RECENT))
        if not is_loss_like(key):
            return series, recent, None, None
        window = self.windows.setdefault(key, rules.RecentWindow())
        steps = self.window_steps.setdefault(key, deque(maxlen=rules.TREND_WINDOW))
        return series, recent, window, steps

    # ---- one commit -------------------------------------------------------------------------

    def commit(
        self, batch: Batch, before: Progress, files_before: dict[str, FileProgress], t: float
    ) -> list[tuple[AlertSpec, dict[str, Any] | None]]:
        """Store the batch; returns the alerts its points raised (and their rows, None if deduplicated)."""
        # The per-point loop is the ingest hot path (a million-line backlog runs through it).
        ctx: dict[str, Context] = {}
        rows: list[tuple[SeriesState, int, float]] = []
        specs: dict[str, AlertSpec] = {}
        wipe: dict[int, bool] = {}  # series a higher-ranked source takes over → delete all its points?
        started: dict[str, int | None] = {}  # exact_through when the batch began, per key
        ttl = self.alert_ttl_s
        isfinite = math.isfinite
        for key, step, value, kind, exact in batch.points:
            c = ctx.get(key)
            if c is None:
                c = ctx[key] = self._context(key, kind)
                started[key] = c[0].exact_through
            s, recent, window, steps = c
            if kind != s.source:
                if not self._admit(s, kind, step, exact, rows, wipe):
                    batch.duplicates += 1
                    continue
            elif kind in FILE_KINDS:  # (not for metrics.jsonl: nothing below it keeps a point it has)
                if s.exact_through is None or step > s.exact_through:
                    s.exact_through = step
            elif not exact:
                s.inexact = True
            rows.append((s, step, value))
            recent.append((step, value))
            s.count += 1
            if s.first_step is None:
                s.first_step = step
            s.last_step, s.last_value = step, value
            if not isfinite(value):
                s.nonfinite += 1
                if s.first_nonfinite_step is None:
                    s.first_nonfinite_step = step
                if not self.nonfinite_raised and "nonfinite" not in specs:
                    specs["nonfinite"] = rules.nonfinite_alert(key, step, value)
                continue
            if s.min_value is None or value < s.min_value:
                s.min_value, s.min_step = value, step
            if s.max_value is None or value > s.max_value:
                s.max_value, s.max_step = value, step
            if window is not None:
                spike = rules.spike_alert(key, step, value, window, ttl)
                if spike is not None and spike.signature not in specs:
                    specs[spike.signature] = spike
                window.push(value)
                steps.append(step)
        for key, (_, _, window, steps) in ctx.items():
            if window is not None:
                div = rules.divergence_alert(key, list(steps), window, ttl)
                if div is not None:
                    specs.setdefault(div.signature, div)
        touched = {key: c[0] for key, c in ctx.items()}
        try:
            with self.db.write() as conn:
                self._advance(conn, batch, before, files_before, len(rows), t)
                for s in touched.values():
                    if not s.id:
                        s.id = conn.execute(SQL_NEW_SERIES, (self.run_id, s.key, s.source, t)).lastrowid or 0
                trimmed = self._delete_replaced(conn, touched, started, wipe)
                conn.executemany(SQL_POINT, [(s.id, step, value, t) for s, step, value in rows])
                self._bucket(conn, rows, trimmed)
                for s, _, _ in trimmed.values():
                    self._recount(conn, s)
                conn.executemany(
                    SQL_SERIES,
                    [
                        (s.source, s.count, s.nonfinite, s.first_nonfinite_step, s.first_step,
                         s.last_step, s.last_value, s.min_value, s.min_step, s.max_value, s.max_step,
                         s.exact_through, t, s.id)
                        for s in touched.values()
                    ],
                )  # fmt: skip
                execute: Any = conn.execute  # the DB-API signature is wider than sqlwrites' Cursor protocol
                raised = [
                    (spec, raise_alert_sql(execute, run_id=self.run_id, **spec.fields()))
                    for spec in specs.values()
                ]
        except BaseException:
            self.load()  # the in-memory windows already saw these points; start again from the store
            raise
        self.series.update(touched)
        if "nonfinite" in specs:
            self.nonfinite_raised = True
        return raised

    @staticmethod
    def _admit(
        s: SeriesState,
        kind: str,
        step: int,
        exact: bool,
        rows: list[tuple[SeriesState, int, float]],
        wipe: dict[int, bool],
    ) -> bool:
        """A point of another source than the key's owner: does it enter the series?"""
        rank, owner = RANK[kind], RANK.get(s.source, 1)
        if rank > owner:  # the better source takes the key over
            rows[:] = [r for r in rows if r[0] is not s]
            if s.id:
                # What the other source gave up to this source's steps goes; beyond them it stays
                # (as provisional points) unless some step was only inferred: then all of it goes.
                wipe[s.id] = s.inexact
            s.source, s.count, s.nonfinite, s.first_nonfinite_step = kind, 0, 0, None
            s.first_step = s.last_step = s.last_value = s.min_value = s.min_step = None
            s.max_value = s.max_step = s.exact_through = None
            s.provisional = bool(s.id) and not s.inexact
            s.inexact = False
            return True
        if rank < owner and exact and s.exact_through is not None and step > s.exact_through:
            s.provisional = True  # ahead of the file: kept until the file reaches this step
            return True
        return False  # a duplicate: the owner has (or will have) this step

    @staticmethod
    def _bucket(
        c: sqlite3.Connection,
        rows: list[tuple[SeriesState, int, float]],
        trimmed: dict[int, tuple[SeriesState, int | None, int]],
    ) -> None:
        """Keep each series' buckets in step with its points (core.monitoring.metric_buckets), in
        this transaction."""
        by_series: dict[int, list[tuple[int, float]]] = {}
        for s, step, value in rows:
            pts = by_series.get(s.id)
            if pts is None:
                pts = by_series[s.id] = []
            pts.append((step, value))
        for series_id, (_, low, high) in trimmed.items():
            # Points were deleted in (low, high]: rebuild that stretch and this batch's, from the points.
            steps = [step for step, _ in by_series.pop(series_id, [])]
            lo = None if low is None else min([low + 1, *steps])
            buckets.rebuild(c, series_id, lo, max([high, *steps]))
        for series_id, pts in by_series.items():
            buckets.add_points(c, series_id, pts)

    def _delete_replaced(
        self,
        c: sqlite3.Connection,
        touched: dict[str, SeriesState],
        started: dict[str, int | None],
        wipe: dict[int, bool],
    ) -> dict[int, tuple[SeriesState, int | None, int]]:
        """Delete points a better source now gives; returns series whose summary must be recounted,
        with the steps deleted (above the first, None: from the series' start, up to the second)."""
        trimmed: dict[int, tuple[SeriesState, int | None, int]] = {}
        for key, s in touched.items():
            old, new = started[key], s.exact_through
            if s.id in wipe:
                if wipe[s.id] or new is None:
                    c.execute("DELETE FROM metric_points WHERE series_id = ?", (s.id,))
                    buckets.delete_series(c, s.id)  # this batch's points are all it keeps
                    continue
                old = None  # every step up to the new owner's
            if s.provisional and s.id and new is not None and (old is None or new > old):
                # Printed points the file has now reached are replaced by the file's own.
                low = -(1 << 63) if old is None else old
                cur = c.execute(
                    "DELETE FROM metric_points WHERE series_id = ? AND step > ? AND step <= ?",
                    (s.id, low, new),
                )
                if cur.rowcount or s.id in wipe:
                    trimmed[s.id] = (s, old, new)
        return trimmed

    @staticmethod
    def _recount(c: sqlite3.Connection, s: SeriesState) -> None:
        one = c.execute
        sid = (s.id,)
        s.count, s.first_step = one(
            "SELECT COUNT(*), MIN(step) FROM metric_points WHERE series_id = ?", sid
        ).fetchone()
        bad = f"series_id = ? AND NOT ({_FINITE})"
        s.nonfinite, s.first_nonfinite_step = one(
            f"SELECT COUNT(*), MIN(step) FROM metric_points WHERE {bad}", sid
        ).fetchone()
        last = one(
            "SELECT step, value FROM metric_points WHERE series_id = ? ORDER BY step DESC, id DESC LIMIT 1",
            sid,
        ).fetchone()
        s.last_step, s.last_value = last if last else (None, None)
        for order, names in (("ASC", ("min_value", "min_step")), ("DESC", ("max_value", "max_step"))):
            where = f"series_id = ? AND {_FINITE}"
            row = one(
                f"SELECT value, step FROM metric_points WHERE {where} ORDER BY value {order}, id LIMIT 1", sid
            )
            row = row.fetchone()
            setattr(s, names[0], row[0] if row else None)
            setattr(s, names[1], row[1] if row else None)

    def _advance(
        self,
        c: sqlite3.Connection,
        batch: Batch,
        old: Progress,
        files_before: dict[str, FileProgress],
        points: int,
        t: float,
    ) -> None:
        p = batch.progress
        advance = (
            p.metrics_offset, p.metrics_records, p.metrics_skipping,
            p.output_offset, p.output_records, p.output_skipping, p.log_parsing, p.output_state,
            *batch.counters(), points, batch.duplicates, batch.example, t if points else None, t,
            self.run_id, self.pid, old.metrics_offset, old.output_offset,
        )  # fmt: skip
        if c.execute(SQL_ADVANCE, advance).rowcount != 1:
            raise OwnershipLost("the progress row changed under this sidecar (another one took over)")
        for rel, fp in batch.files.items():
            state = json.dumps(fp.state, separators=(",", ":")) if fp.state else ""
            was = files_before.get(rel)
            if was is None or not was.stored:
                c.execute(
                    SQL_NEW_FILE,
                    (
                        self.run_id,
                        rel,
                        fp.kind,
                        fp.offset,
                        fp.records,
                        state,
                        fp.points,
                        fp.bad,
                        fp.example,
                        t,
                        t,
                    ),
                )
                continue
            values = (fp.offset, fp.records, state, fp.points, fp.bad, fp.example, t)
            if c.execute(SQL_FILE, (*values, self.run_id, rel, was.offset, was.records)).rowcount != 1:
                raise OwnershipLost(f"the progress of {rel} changed under this sidecar")
