"""Metric points as they arrive: every point stored after a cursor, for live views.

The sidecar is the one writer of points, in commit order, and ``metric_points.id`` is
SQLite's rowid: so "points with id > N" is a cursor that neither misses nor repeats a
point, across every process that shares the state dir. One reader per process (the
dashboard's feed) polls it and fans the points out to every open page.

Stdlib sqlite3 like ``core.monitoring.events``: a poll is one indexed range scan.
"""

from __future__ import annotations

import math
import os
import sqlite3
from contextlib import closing
from dataclasses import dataclass
from pathlib import Path

from mcp_server.core.storage import sqlite_open

MAX_POINTS_PER_READ = 5000
FEED_BUSY_TIMEOUT_S = 10.0


@dataclass(frozen=True)
class LivePoint:
    run_id: str
    key: str
    step: int
    value: float | None  # None: NaN/Inf


class PointFeed:
    def __init__(self, db_path: Path) -> None:
        self.db_path = db_path

    def _connect(self) -> sqlite3.Connection | None:
        return sqlite_open.connect_if_present(self.db_path, FEED_BUSY_TIMEOUT_S)

    def latest_id(self) -> int:
        con = self._connect()
        if con is None:
            return 0
        with closing(con):
            try:
                return int(con.execute("SELECT coalesce(max(id), 0) FROM metric_points").fetchone()[0])
            except sqlite3.OperationalError:  # the store is being created right now
                return 0

    def read(self, after: int, limit: int = MAX_POINTS_PER_READ) -> tuple[list[LivePoint], int, bool]:
        """Points stored after ``after`` (oldest first), the new cursor, and whether more remain."""
        con = self._connect()
        if con is None:
            return [], after, False
        with closing(con):
            try:
                rows = con.execute(
                    "SELECT p.id, s.run_id, s.key, p.step, p.value FROM metric_points p "
                    "JOIN metric_series s ON s.id = p.series_id WHERE p.id > ? ORDER BY p.id LIMIT ?",
                    (after, limit + 1),
                ).fetchall()
            except sqlite3.OperationalError:
                return [], after, False
        more = len(rows) > limit
        rows = rows[:limit]
        points = [
            LivePoint(run_id, key, int(step), value if value is not None and math.isfinite(value) else None)
            for _, run_id, key, step, value in rows
        ]
        return points, (rows[-1][0] if rows else after), more


def active_run_ids(db_path: Path) -> list[str]:
    """Runs not yet ended (their logs may grow): what a page watching every run follows."""
    con = sqlite_open.connect_if_present(db_path, FEED_BUSY_TIMEOUT_S)
    if con is None:
        return []
    with closing(con):
        try:
            rows = con.execute(
                "SELECT id FROM runs WHERE status IN ('queued', 'launching', 'running')"
            ).fetchall()
        except sqlite3.OperationalError:
            return []
    return [r[0] for r in rows]


def file_size(path: Path) -> int:
    """Size of a run's log, 0 when it does not exist yet (a live view's cue to read more)."""
    try:
        return os.stat(path).st_size
    except OSError:
        return 0
