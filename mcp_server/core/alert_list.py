"""A page of alerts (list_alerts, the dashboard, experiment://context) in plain SQL.

Each row is written as JSON by SQLite (its JSON columns pass through as stored) and the
page is validated in one call (``core.sqlpage``): with 1,000 open alerts a page costs its
indexed query (``ix_alerts_status_pk``) and little more. Stdlib sqlite3 only, so a server
answers its first list_alerts before the ORM is loaded.
"""

from __future__ import annotations

import sqlite3
from typing import Any

from mcp_server.core import sqlpage
from mcp_server.core.views import AlertPage

# One AlertView as a JSON object (the same fields; json() keeps stored JSON as JSON).
ROW_JSON = (
    "json_object('id', id, 'run_id', run_id, 'kind', kind, 'severity', severity, 'message', message, "
    "'choices', json(choices), 'status', status, 'resolution', resolution, "
    f"'created_at', {sqlpage.ISO.format('created_at')}, 'resolved_at', {sqlpage.ISO.format('resolved_at')}, "
    "'data', json(data))"
)


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
