"""The sidecar's connection to the store: the standard library's sqlite3, same tables.

The schema is declared in ``mcp_server.core.storage.models`` and created by the store's
migrations; shared writes (status transitions, alerts, events) go through
``mcp_server.core.storage.sqlwrites`` so they are the same statements the server runs. Only the
sidecar's own rows (its progress, metric series and points) are written here.
"""

from __future__ import annotations

import dataclasses
import sqlite3
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from mcp_server.core.storage import sqlite_open

BUSY_TIMEOUT_S = 60.0
REQUIRED_TABLES = (
    "runs", "alerts", "events", "sidecars", "metric_series", "metric_points", "metric_files", "metric_buckets"
)


@dataclass
class RunState:
    """The run columns the sidecar reads (duck-types the few attributes backends use)."""

    id: str
    name: str
    command: str
    workdir: str
    status: str
    status_reason: str
    backend: str
    backend_ref: str | None
    exit_code: int | None
    launched_at: float | None
    started_at: float | None
    stop_requested_at: float | None


RUN_COLUMNS = ", ".join(RunState.__dataclass_fields__)


@dataclass
class SeriesState:
    """A metric series' summary, mirrored in memory so a poll updates it without reading it."""

    id: int
    key: str
    source: str
    count: int = 0
    nonfinite: int = 0
    first_nonfinite_step: int | None = None
    first_step: int | None = None
    last_step: int | None = None
    last_value: float | None = None
    min_value: float | None = None
    min_step: int | None = None
    max_value: float | None = None
    max_step: int | None = None
    exact_through: int | None = None  # a file source's highest step (it owns the key)
    # Lower-ranked (printed) points may lie beyond exact_through; unknown after a restart.
    provisional: bool = dataclasses.field(default=True, compare=False)
    # Some stored point's step was inferred (not the framework's); unknown after a restart.
    inexact: bool = dataclasses.field(default=True, compare=False)


SERIES_COLUMNS = ", ".join(f for f in SeriesState.__dataclass_fields__ if f not in ("provisional", "inexact"))


def connect(db_path: Path) -> sqlite3.Connection:
    return sqlite_open.connect(db_path, BUSY_TIMEOUT_S)


def ensure_schema(db_path: Path) -> None:
    """Create missing tables through the store's own migrations (rare: an old state dir)."""
    conn = connect(db_path)
    try:
        have = {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type='table'")}
    finally:
        conn.close()
    if not set(REQUIRED_TABLES) <= have:
        from mcp_server.core.storage.store import Store  # heavy; only for a store that predates the sidecar

        Store(db_path).close()


class SidecarDB:
    def __init__(self, db_path: Path) -> None:
        ensure_schema(db_path)
        self.conn = connect(db_path)

    def close(self) -> None:
        self.conn.close()

    @contextmanager
    def write(self) -> Iterator[sqlite3.Connection]:
        """One ``BEGIN IMMEDIATE`` transaction (the store's rule for every writer)."""
        self.conn.execute("BEGIN IMMEDIATE")
        try:
            yield self.conn
        except BaseException:
            self.conn.execute("ROLLBACK")
            raise
        self.conn.execute("COMMIT")

    def one(self, sql: str, params: tuple[Any, ...] = ()) -> Any:
        return self.conn.execute(sql, params).fetchone()

    def load_run(self, run_id: str) -> RunState | None:
        row = self.one(f"SELECT {RUN_COLUMNS} FROM runs WHERE id = ?", (run_id,))
        return None if row is None else RunState(*row)

    def sweep_method(self, run_id: str) -> str | None:
        sql = "SELECT s.method FROM runs r JOIN sweeps s ON s.id = r.sweep_id WHERE r.id = ?"
        row = self.one(sql, (run_id,))
        return None if row is None else str(row[0])

    def load_progress(self, run_id: str) -> dict[str, Any] | None:
        cur = self.conn.execute("SELECT * FROM sidecars WHERE run_id = ?", (run_id,))
        row = cur.fetchone()
        if row is None:
            return None
        return dict(zip([d[0] for d in cur.description], row, strict=True))

    def load_series(self, run_id: str) -> dict[str, SeriesState]:
        rows = self.conn.execute(f"SELECT {SERIES_COLUMNS} FROM metric_series WHERE run_id = ?", (run_id,))
        return {r[1]: SeriesState(*r) for r in rows}

    def runs_sharing_workdir(self, run: RunState, until: float) -> int:
        """Other runs in ``run``'s workdir that ran at some time between its start and ``until``."""
        started = run.started_at or run.launched_at or 0.0
        row = self.one(
            "SELECT COUNT(*) FROM runs WHERE workdir = ? AND id != ? "
            "AND COALESCE(started_at, launched_at) <= ? AND (ended_at IS NULL OR ended_at >= ?)",
            (run.workdir, run.id, until, started),
        )
        return int(row[0])

    def load_files(self, run_id: str) -> dict[str, dict[str, Any]]:
        cur = self.conn.execute("SELECT * FROM metric_files WHERE run_id = ?", (run_id,))
        names = [d[0] for d in cur.description]
        return {row[1]: dict(zip(names, row, strict=True)) for row in cur}

    def recent_points(self, series_id: int, n: int) -> list[tuple[int, float | None]]:
        rows = self.conn.execute(
            "SELECT step, value FROM metric_points WHERE series_id = ? ORDER BY step DESC, id DESC LIMIT ?",
            (series_id, n),
        ).fetchall()
        return [(int(s), v) for s, v in reversed(rows)]
