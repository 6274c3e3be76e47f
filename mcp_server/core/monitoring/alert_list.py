"""A page of alerts (list_alerts, the dashboard, experiment://context) in plain SQL.

Each row is written as JSON by SQLite (its JSON columns pass through as stored) and the
page is validated in one call (``core.storage.sqlpage``): with 1,000 open alerts a page costs its
indexed query (``ix_alerts_status_pk``) and little more. Stdlib sqlite3 only, so a server
answers its first list_alerts before the ORM is loaded.
"""

from __future__ import annotations

import sqlite3
from typing import Any

from mcp_server.core.errors import InvalidInput, NotFound
from mcp_server.core.ids import validate_id
from mcp_server.core.monitoring.alert_specs import SEVERITIES
from mcp_server.core.run_views import AlertPage
from mcp_server.core.storage import sqlpage

ALERT_STATUSES: tuple[str, ...] = ("open", "resolved", "all")
MAX_ALERT_PAGE = 200

# One AlertView as a JSON object (the same fields; json() keeps stored JSON as JSON).
ROW_JSON = (
    "json_object('id', id, 'run_id', run_id, 'kind', kind, 'severity', severity, 'message', message, "
    "'choices', json(choices), 'status', status, 'resolution', resolution, "
    f"'created_at', {sqlpage.ISO.format('created_at')}, 'resolved_at', {sqlpage.ISO.format('resolved_at')}, "
    "'data', json(data))"
)


def check(run_id: str | None, status: str, severity: list[str] | None, limit: int, offset: int) -> None:
    """The arguments of a page of alerts, or a clear error (nothing is read)."""
    if status not in ALERT_STATUSES:
        raise InvalidInput(f"status {status!r} is not valid; choose one of {', '.join(ALERT_STATUSES)}.")
    for value in severity or []:
        if value not in SEVERITIES:
            raise InvalidInput(f"severity {value!r} is not valid; choose from {', '.join(SEVERITIES)}.")
    if not 1 <= limit <= MAX_ALERT_PAGE:
        raise InvalidInput(f"limit={limit} is out of range; give 1 to {MAX_ALERT_PAGE}.")
    if offset < 0:
        raise InvalidInput(f"offset={offset} must be ≥ 0.")
    if run_id is not None:
        validate_id(run_id, "run", "run_id")


def known_page(
    conn: sqlite3.Connection | None,
    *,
    run_id: str | None = None,
    status: str = "open",
    severity: list[str] | None = None,
    limit: int = 50,
    offset: int = 0,
) -> AlertPage:
    """The page after checking the arguments and that ``run_id`` exists (no store: no alerts)."""
    check(run_id, status, severity, limit, offset)
    known = run_id is None or (
        conn is not None and conn.execute("SELECT 1 FROM runs WHERE id = ?", (run_id,)).fetchone()
    )
    if not known:
        raise NotFound(f"no run with id {run_id!r}; use list_runs to see existing runs.")
    if conn is None:
        return AlertPage(alerts=[], total=0)
    return page(conn, run_id=run_id, status=status, severity=severity, limit=limit, offset=offset)


def page(
    conn: sqlite3.Connection,
    *,
    run_id: str | None = None,
    status: str = "open",
    severity: list[str] | None = None,
    limit: int = 50,
    offset: int = 0,
) -> AlertPage:
    """Newest first; the arguments are already validated (``AlertService.list``)."""
    clauses: list[str] = []
    params: list[Any] = []
    if run_id is not None:
        clauses.append("run_id = ?")
        params.append(run_id)
    if status != "all":
        clauses.append("status = ?")
        params.append(status)
    if severity:
        clauses.append(f"severity IN ({', '.join('?' * len(severity))})")
        params += severity
    return sqlpage.page(
        conn, AlertPage, "alerts", ROW_JSON, "alerts", clauses, params, limit=limit, offset=offset
    )
