"""Status changes, events and alerts as plain SQL over any DB-API style ``execute``.

The sidecar must stay small (its idle RSS budget is 60 MB and SQLAlchemy + pydantic
alone take about 45), so it talks to the store through the standard library's sqlite3.
These functions are the single implementation of the writes both worlds share: the
sqlmodel services call them through ``session.connection().exec_driver_sql`` and the
sidecar through ``sqlite3.Connection.execute``. The tables are still declared in
``core.storage.models`` and created by the store's migrations; only the statements live here.
"""

from __future__ import annotations

import json
import re
import time
from collections.abc import Callable, Sequence
from typing import Any, Protocol

from mcp_server.core.execution.run_status import TERMINAL, RunStatus, can_transition
from mcp_server.core.ids import new_id


class Cursor(Protocol):
    @property
    def rowcount(self) -> int: ...

    def fetchone(self) -> Any: ...


# sqlite3's Connection.execute and SQLAlchemy's exec_driver_sql: a statement and its parameters.
Execute = Callable[[str, Any], Cursor]

_COLUMN = re.compile(r"^[a-z_][a-z0-9_]*$")


def insert_event(execute: Execute, *, ts: float, kind: str, run_id: str | None, data: dict[str, Any]) -> None:
    execute(
        "INSERT INTO events (ts, kind, run_id, data) VALUES (?, ?, ?, ?)",
        (ts, kind, run_id, json.dumps(data)),
    )


def transition_sql(
    execute: Execute,
    *,
    run_id: str,
    run_name: str,
    current: RunStatus,
    new: RunStatus,
    reason: str,
    fields: dict[str, Any] | None = None,
) -> dict[str, Any] | None:
    """Compare-and-set a run's status from ``current`` to ``new`` plus a run_status event.

    Returns the column values written, or None when the transition is not allowed or the
    run had already moved on (another process decided first).
    """
    if not can_transition(current, new):
        return None
    t = time.time()
    extra = dict(fields or {})
    values: dict[str, Any] = {"status": new.value, "status_reason": reason, "updated_at": t, **extra}
    if new in TERMINAL and "ended_at" not in extra:
        values["ended_at"] = t
    for name in values:
        if not _COLUMN.match(name):
            raise ValueError(f"not a column name: {name!r}")
    assignments = ", ".join(f"{name} = ?" for name in values)
    cur = execute(
        f"UPDATE runs SET {assignments} WHERE id = ? AND status = ?",
        (*values.values(), run_id, current.value),
    )
    if cur.rowcount != 1:
        return None
    data: dict[str, Any] = {
        "status": new.value,
        "previous": current.value,
        "reason": reason,
        "name": run_name,
    }
    if "exit_code" in values:
        data["exit_code"] = values["exit_code"]
    insert_event(execute, ts=t, kind="run_status", run_id=run_id, data=data)
    return values


def raise_alert_sql(
    execute: Execute,
    *,
    run_id: str | None,
    kind: str,
    severity: str,
    message: str,
    signature: str,
    choices: Sequence[str],
    data: dict[str, Any] | None = None,
    ttl_s: float = 3600.0,
) -> dict[str, Any] | None:
    """Insert an alert (and its event) unless the same run+signature was raised within ``ttl_s``.

    Returns the inserted row as a dict, or None for a duplicate. Run it inside a write
    transaction so the check and the insert are atomic across processes.
    """
    t = time.time()
    recent = execute(
        "SELECT pk FROM alerts WHERE signature = ? AND run_id IS ? AND created_at >= ? LIMIT 1",
        (signature, run_id, t - ttl_s),
    ).fetchone()
    if recent is not None:
        return None
    row: dict[str, Any] = {
        "id": new_id("alert"),
        "run_id": run_id,
        "kind": kind,
        "severity": severity,
        "message": message,
        "choices": list(choices),
        "signature": signature,
        "status": "open",
        "data": data or {},
        "created_at": t,
    }
    execute(
        "INSERT INTO alerts (id, run_id, kind, severity, message, choices, signature, status, data, "
        "created_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
        (
            row["id"],
            run_id,
            kind,
            severity,
            message,
            json.dumps(row["choices"]),
            signature,
            "open",
            json.dumps(row["data"]),
            t,
        ),
    )
    insert_event(
        execute,
        ts=t,
        kind="alert",
        run_id=run_id,
        data={"alert_id": row["id"], "kind": kind, "severity": severity, "message": message},
    )
    return row


def release_admission_sql(execute: Execute, run_id: str) -> None:
    """End a run's GPU lease and queue entry (tables ``gpu_leases`` / ``run_queue``)."""
    execute("DELETE FROM gpu_leases WHERE run_id = ?", (run_id,))
    execute("DELETE FROM run_queue WHERE run_id = ?", (run_id,))
