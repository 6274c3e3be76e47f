"""The runs a reconcile looks at, read in plain SQL (``core.storage.sqlread``).

Every run query (list_runs, get_sweep, experiment://context) settles first what can still
change. With a long history that look must cost the runs that are live, not the rows that
are stored: one indexed read says whether anything is live at all, and the live runs come
back as light rows rather than ORM objects (the backends and ``lifecycle.decide`` read a
few attributes; ``transition`` sets the ones it changes).
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

from mcp_server.core.execution.run_status import ACTIVE, RunStatus

WATCHED: tuple[str, ...] = tuple(s.value for s in (*ACTIVE, RunStatus.LOST))
# What a full reconcile looks at: runs whose status a look can still change. A local run is
# declared lost only once neither its job nor its launch script lives to write an exit
# code, so it never changes again; a run a scheduler lost track of may still end with one.
# (A run asked for by id is looked at whenever it is WATCHED.)
# (Sorted: the partial index that serves it is used only where the query's text matches it.)
_LIVE = ", ".join(sorted(repr(s.value) for s in ACTIVE))
CAN_CHANGE = f"(status IN ({_LIVE}) OR (status = 'lost' AND backend != 'local'))"


@dataclass
class LiveRun:
    """A watched run's columns, as the backends, ``decide_for`` and the settle hooks read them."""

    id: str
    name: str
    command: str
    workdir: str
    status: str
    status_reason: str
    backend: str
    backend_ref: str | None
    exit_code: int | None
    gpus: int
    sweep_id: str | None
    launched_at: float | None
    started_at: float | None
    ended_at: float | None
    stop_requested_at: float | None
    options: dict[str, Any] = field(default_factory=dict)


COLUMNS = ", ".join(LiveRun.__dataclass_fields__)


# The planner prefers scanning every lost run by status to this small partial index, which
# holds the live runs only: name it. (A store not yet upgraded lacks it: read without.)
_INDEXED = "runs INDEXED BY ix_runs_can_change"


def _execute(conn: sqlite3.Connection, sql: str, params: Sequence[Any] = ()) -> sqlite3.Cursor:
    try:
        return conn.execute(sql.format(runs=_INDEXED), params)
    except sqlite3.OperationalError as err:
        if "ix_runs_can_change" not in str(err):
            raise
        return conn.execute(sql.format(runs="runs"), params)


def anything_to_watch(conn: sqlite3.Connection) -> bool:
    """A run that can still change, or a sidecar that never finished (restarted to read its
    run's last lines): one indexed read, whatever the history holds."""
    row = _execute(
        conn,
        f"SELECT EXISTS (SELECT 1 FROM {{runs}} WHERE {CAN_CHANGE}) "
        "OR EXISTS (SELECT 1 FROM sidecars WHERE exited_at IS NULL)",
    ).fetchone()
    return bool(row[0])


def watched(conn: sqlite3.Connection, run_ids: Iterable[str] | None = None) -> list[LiveRun]:
    """Runs that can still change (``run_ids``: those of them that are WATCHED), oldest first."""
    source = "{runs}"
    if run_ids is None:
        where, params = CAN_CHANGE, []
    else:
        source = "runs"
        ids = list(run_ids)
        if not ids:
            return []
        where = f"status IN ({', '.join('?' * len(WATCHED))}) AND id IN ({', '.join('?' * len(ids))})"
        params = [*WATCHED, *ids]
    out = []
    for row in _execute(conn, f"SELECT {COLUMNS} FROM {source} WHERE {where} ORDER BY pk", params):
        run = LiveRun(*row)
        run.options = json.loads(run.options) if isinstance(run.options, str) else dict(run.options or {})
        out.append(run)
    return out
