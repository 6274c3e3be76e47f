"""Alerts: raised deduplicated by signature, listed with filters, resolved with a choice.

Rules (sidecar), gpuwrap (contention) and failure classification all raise alerts
through ``raise_alert`` (or, in the sidecar, the same SQL in ``core.storage.sqlwrites``) so
deduplication and the event feed behave the same for each. Resolving an alert may act:
"Stop run" stops the run, "Rerun" starts it again.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from sqlalchemy import update
from sqlmodel import Session, col, select

from mcp_server.core.errors import Conflict, InvalidInput, NotFound
from mcp_server.core.ids import validate_id
from mcp_server.core.monitoring import alert_list
from mcp_server.core.monitoring.alert_specs import (
    DEFAULT_CHOICES,
    ENDED_CHOICES,
    IGNORE,
    RERUN,
    SEVERITIES,
    STOP_RUN,
    AlertSpec,
    Severity,
)
from mcp_server.core.run_views import AlertPage, AlertResolution, AlertView, RunRecord, iso
from mcp_server.core.storage.models import Alert, Event
from mcp_server.core.storage.sqlwrites import raise_alert_sql
from mcp_server.core.storage.store import Store, now

if TYPE_CHECKING:
    from mcp_server.core.execution.runs import RunService

ALERT_STATUSES = alert_list.ALERT_STATUSES
MAX_ALERT_PAGE = alert_list.MAX_ALERT_PAGE
__all__ = [
    "DEFAULT_CHOICES",
    "ENDED_CHOICES",
    "IGNORE",
    "RERUN",
    "SEVERITIES",
    "STOP_RUN",
    "AlertService",
    "Severity",
    "open_alerts",
    "raise_alert",
    "raise_spec",
]


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
    session.flush()
    row = raise_alert_sql(
        session.connection().exec_driver_sql,
        run_id=run_id,
        kind=kind,
        severity=severity,
        message=message,
        signature=signature,
        choices=choices,
        data=data,
        ttl_s=ttl_s,
    )
    return None if row is None else Alert(**row)


def raise_spec(session: Session, run_id: str | None, spec: AlertSpec) -> Alert | None:
    return raise_alert(session, run_id=run_id, **spec.fields())


def to_view(alert: Alert) -> AlertView:
    return AlertView(
        id=alert.id,
        run_id=alert.run_id,
        kind=alert.kind,
        severity=alert.severity,
        message=alert.message,
        choices=list(alert.choices),
        status=alert.status,
        resolution=alert.resolution,
        created_at=iso(alert.created_at) or "",
        resolved_at=iso(alert.resolved_at),
        data=dict(alert.data),
    )


def open_alerts(session: Session, run_id: str, limit: int = 20) -> list[AlertView]:
    rows = session.exec(
        select(Alert)
        .where(Alert.run_id == run_id, Alert.status == "open")
        .order_by(col(Alert.pk).desc())
        .limit(limit)
    ).all()
    return [to_view(a) for a in rows]


class AlertService:
    def __init__(self, store: Store, runs: RunService) -> None:
        self.store = store
        self.runs = runs

    def load(self, alert_id: str) -> Alert:
        validate_id(alert_id, "alert", "alert_id")
        with self.store.read() as s:
            alert = s.exec(select(Alert).where(Alert.id == alert_id)).first()
        if alert is None:
            raise NotFound(f"no alert with id {alert_id!r}; use list_alerts to see alerts.")
        return alert

    def list(
        self,
        *,
        run_id: str | None = None,
        status: str = "open",
        severity: list[str] | None = None,
        limit: int = 50,
        offset: int = 0,
    ) -> AlertPage:
        with self.store.sql.snapshot() as conn:
            return alert_list.known_page(
                conn, run_id=run_id, status=status, severity=severity, limit=limit, offset=offset
            )

    def resolve(self, alert_id: str, choice: str) -> AlertResolution:
        """Validate ``choice`` against the alert's own choices, act on it, then mark it resolved."""
        alert = self.load(alert_id)
        if alert.status != "open":
            raise Conflict(
                f"alert {alert_id} is already resolved (choice {alert.resolution!r}); nothing to do."
            )
        if choice not in alert.choices:
            valid = ", ".join(repr(c) for c in alert.choices)
            raise InvalidInput(f"choice {choice!r} is not one of this alert's choices: {valid}.")
        action, note, run_id = "none", "", alert.run_id
        run: RunRecord | None
        if choice in (STOP_RUN, RERUN) and run_id is None:
            raise InvalidInput(
                f"alert {alert_id} is not about a run, so {choice!r} cannot act; choose another."
            )
        if choice == STOP_RUN and run_id is not None:
            try:
                run = self.runs.stop(run_id)
                action = "stopped"
            except Conflict as err:  # it ended meanwhile: resolving is still what was asked
                run, note = self.runs.get(run_id), str(err)
        elif choice == RERUN and run_id is not None:
            run = self.runs.rerun(run_id)
            action, note = "rerun", f"started {run.id} as a rerun of {run_id}"
        else:
            run = self.runs.get(run_id) if run_id is not None else None
        t = now()
        closed: list[str] = []
        with self.store.write() as s:
            done = s.execute(
                update(Alert)
                .where(col(Alert.id) == alert_id, col(Alert.status) == "open")
                .values(status="resolved", resolution=choice, resolved_at=t)
            )
            if done.rowcount == 1:  # type: ignore[attr-defined]
                _resolved_event(s, t, run_id, alert_id, choice, action)
                if choice == STOP_RUN and run_id is not None:
                    closed = _close_stop_only(s, t, run_id)
            else:
                note = (note + "; " if note else "") + "another caller resolved it at the same time"
        if closed:
            note = (
                note + "; " if note else ""
            ) + f"closed {len(closed)} other alert(s) whose only action was Stop run"
        return AlertResolution(
            alert=to_view(self.load(alert_id)), action=action, run=run, closed=closed, note=note
        )


def _resolved_event(
    s: Session, t: float, run_id: str | None, alert_id: str, choice: str, action: str
) -> None:
    data = {"alert_id": alert_id, "choice": choice, "action": action}
    s.add(Event(ts=t, kind="alert_resolved", run_id=run_id, data=data))


def _close_stop_only(s: Session, t: float, run_id: str) -> list[str]:
    """Once a run is stopped, its other open alerts that offered only Stop run (or Ignore) have
    nothing left to decide; alerts with another action (Rerun) stay open."""
    stop_only = [
        a.id
        for a in s.exec(select(Alert).where(col(Alert.run_id) == run_id, col(Alert.status) == "open")).all()
        if set(a.choices) <= {IGNORE, STOP_RUN}
    ]
    for other in stop_only:
        s.execute(
            update(Alert)
            .where(col(Alert.id) == other, col(Alert.status) == "open")
            .values(status="resolved", resolution=STOP_RUN, resolved_at=t)
        )
        _resolved_event(s, t, run_id, other, STOP_RUN, "closed: its run was stopped")
    return stop_only
