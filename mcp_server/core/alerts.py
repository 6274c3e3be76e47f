"""Raising alerts: deduplicated by signature, each one also an event agents can wait for.

Rules (sidecar), gpuwrap (contention) and failure classification all raise alerts
through ``raise_alert`` so deduplication and the event feed behave the same for each.
"""

from __future__ import annotations

from typing import Any, Literal

from sqlmodel import Session, col, select

from mcp_server.core.ids import new_id
from mcp_server.core.models import Alert, Event
from mcp_server.core.store import now

Severity = Literal["info", "warning", "critical"]
SEVERITIES: tuple[str, ...] = ("info", "warning", "critical")
IGNORE = "Ignore"
STOP_RUN = "Stop run"
DEFAULT_CHOICES: tuple[str, ...] = (IGNORE, STOP_RUN)


def raise_alert(
    session: Session,
    *,
    run_id: str | None,
    kind: str,
    severity: Severity,
    message: str,
    signature: str,
    choices: tuple[str, ...] | list[str] = DEFAULT_CHOICES,
    data: dict[str, Any] | None = None,
    ttl_s: float = 3600.0,
) -> Alert | None:
    """Insert an alert unless one with the same run and signature was raised within ``ttl_s``.

    Returns the new alert, or None when it was a duplicate. Runs inside the caller's write
    transaction, so the check and the insert are atomic across processes.
    """
    t = now()
    recent = session.exec(
        select(Alert.pk)
        .where(Alert.signature == signature, Alert.run_id == run_id, col(Alert.created_at) >= t - ttl_s)
        .limit(1)
    ).first()
    if recent is not None:
        return None
    alert = Alert(
        id=new_id("alert"),
        run_id=run_id,
        kind=kind,
        severity=severity,
        message=message,
        choices=list(choices),
        signature=signature,
        data=data or {},
        created_at=t,
    )
    session.add(alert)
    session.add(
        Event(
            ts=t,
            kind="alert",
            run_id=run_id,
            data={"alert_id": alert.id, "kind": kind, "severity": severity, "message": message},
        )
    )
    return alert
