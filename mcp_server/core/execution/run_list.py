"""A page of runs (list_runs, the dashboard, ``research-mcp status``) in plain SQL.

With 10,000 runs the ORM made a 20-row page cost 40× its own query; here the page is one
indexed query, the total one count, timestamps are formatted by SQLite, and the rows
become models in one validation call. Stdlib sqlite3 only (``core.storage.sqlread``), so a
server can answer its first ``list_runs`` before the ORM is loaded.
"""

from __future__ import annotations

import sqlite3
import time
from typing import Any

from mcp_server.core.errors import InvalidInput
from mcp_server.core.execution.run_status import ACTIVE, RunStatus
from mcp_server.core.execution.watched import anything_to_watch
from mcp_server.core.ids import validate_id
from mcp_server.core.run_views import RunPage

# Seconds since the epoch → '2026-01-02T03:04:05Z', as ``views.iso`` writes them (truncated).
_ISO = "strftime('%Y-%m-%dT%H:%M:%SZ', CAST({} AS INTEGER), 'unixepoch')"
ROW_FIELDS = (
    "id", "name", "status", "status_reason", "exit_code", "backend", "gpus", "sweep_id",
    "created_at", "started_at", "ended_at",
)  # fmt: skip
_COLUMNS = ", ".join(
    [*ROW_FIELDS[:8], *(_ISO.format(c) for c in ROW_FIELDS[8:]), "started_at", "ended_at"]
)
# Statuses whose runs may hold GPU leases (reconcile's WATCHED: a lost run's job may still run).
LEASING = tuple(s.value for s in (*ACTIVE, RunStatus.LOST))


MAX_PAGE = 500
STATUS_CHOICES = ", ".join(s.value for s in RunStatus)


def check(status: list[str] | None, sweep_id: str | None, limit: int, offset: int) -> None:
    """The arguments of a page of runs, or a clear error (nothing is read)."""
    if not 1 <= limit <= MAX_PAGE:
        raise InvalidInput(f"limit={limit} is out of range; give 1 to {MAX_PAGE}.")
    if offset < 0:
        raise InvalidInput(f"offset={offset} must be ≥ 0.")
    for value in status or []:
        if value not in RunStatus._value2member_map_:
            raise InvalidInput(f"status {value!r} is not a run status; valid: {STATUS_CHOICES}.")
    if sweep_id is not None:
        validate_id(sweep_id, "sweep", "sweep_id")


def settled_page(
    conn: sqlite3.Connection | None,
    *,
    status: list[str] | None = None,
    name_contains: str | None = None,
    sweep_id: str | None = None,
    limit: int = 50,
    offset: int = 0,
) -> RunPage | None:
    """The page when no run can change (nothing to settle first), else None.

    What a server answers before its services have loaded (core.storage.sqlread): no store yet is
    no runs; a live run needs the liveness check, which needs the services."""
    check(status, sweep_id, limit, offset)
    if conn is None:
        return RunPage(runs=[], total=0)
    if anything_to_watch(conn):
        return None
    kwargs = {"name_contains": name_contains, "sweep_id": sweep_id, "limit": limit, "offset": offset}
    return page(conn, status=status, **kwargs)  # type: ignore[arg-type]


def _where(
    status: list[str] | None, name_contains: str | None, sweep_id: str | None
) -> tuple[str, list[Any]]:
    clauses: list[str] = []
    params: list[Any] = []
    if status:
        clauses.append(f"status IN ({', '.join('?' * len(status))})")
        params += status
    if name_contains:
        escaped = name_contains.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
        clauses.append("name LIKE ? ESCAPE '\\'")
        params.append(f"%{escaped}%")
    if sweep_id:
        clauses.append("sweep_id = ?")
        params.append(sweep_id)
    return (" WHERE " + " AND ".join(clauses)) if clauses else "", params


def leased_gpus(conn: sqlite3.Connection, run_ids: list[str]) -> dict[str, list[int]]:
    if not run_ids:
        return {}
    out: dict[str, list[int]] = {}
    for run_id, index in conn.execute(
        f"SELECT run_id, gpu_index FROM gpu_leases WHERE run_id IN ({', '.join('?' * len(run_ids))}) "
        "ORDER BY gpu_index",
        run_ids,
    ):
        out.setdefault(run_id, []).append(index)
    return out


def page(
    conn: sqlite3.Connection,
    *,
    status: list[str] | None = None,
    name_contains: str | None = None,
    sweep_id: str | None = None,
    limit: int = 50,
    offset: int = 0,
) -> RunPage:
    """Newest first; the arguments are already validated (``RunService.list``)."""
    where, params = _where(status, name_contains, sweep_id)
    (total,) = conn.execute(f"SELECT COUNT(*) FROM runs{where}", params).fetchone()
    rows = conn.execute(
        f"SELECT {_COLUMNS} FROM runs{where} ORDER BY pk DESC LIMIT ? OFFSET ?", [*params, limit, offset]
    ).fetchall()
    leased = leased_gpus(conn, [r[0] for r in rows if r[2] in LEASING])
    now = time.time()
    runs = []
    for r in rows:
        row = dict(zip(ROW_FIELDS, r, strict=False))
        started, ended = r[11], r[12]
        if started is not None:
            row["duration_s"] = round((ended or now) - started, 3)
        row["leased_gpus"] = leased.get(r[0])
        runs.append(row)
    next_offset = offset + len(rows) if offset + len(rows) < total else None
    return RunPage.model_validate({"runs": runs, "total": total, "next_offset": next_offset})
