"""Recording what a look at a run decided: the one path for servers and sidecars alike.

Whoever looks at a run first (a server's reconcile, the run's sidecar) applies the decision
with ``record`` inside its own write transaction: the status compare-and-set and its event,
and for an ending also what must not wait — the run's GPU lease and run slot go back (not a
lost run's: its job may still hold the GPUs; the queue reclaims those when its process group
is gone) and the failed or lost run gets its alert, so whoever reads 'failed' also finds why.
What may wait for the commit (a sweep launching its next held-back run) is the caller's
``Reconciler.follow_up``, which a sidecar runs through the same services as a server.

Plain SQL over any DB-API ``execute`` (``core.storage.sqlwrites``): the sidecar stays free of SQLAlchemy.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from mcp_server.core.execution.jobfiles import JobFiles
from mcp_server.core.execution.logs import tail_lines
from mcp_server.core.execution.run_status import TERMINAL, Decision, RunStatus, decision_fields
from mcp_server.core.monitoring.alert_specs import AlertSpec, ending_alert
from mcp_server.core.storage.sqlwrites import Execute, raise_alert_sql, release_admission_sql, transition_sql

TAIL_LINES = 200
TAIL_BYTES = 64 * 1024


@dataclass(frozen=True)
class Ending:
    """A decision ready to record: read everything it needs (the output's tail) before the
    transaction, so the write lock is held for statements only."""

    run_id: str
    run_name: str
    current: RunStatus
    decision: Decision
    fields: dict[str, Any]
    alert: AlertSpec | None


def prepare(run: Any, decision: Decision, files: JobFiles) -> Ending:
    """``run`` is a store row or the sidecar's copy (id, name, status, started_at)."""
    alert = None
    if decision.status in TERMINAL:
        tail = tail_lines(files.output, TAIL_LINES, TAIL_BYTES).text
        alert = ending_alert(
            status=decision.status.value,
            exit_code=decision.exit_code,
            reason=decision.reason,
            output_tail=tail,
        )
    return Ending(
        run_id=run.id,
        run_name=run.name,
        current=RunStatus(run.status),
        decision=decision,
        fields=decision_fields(decision, run.started_at),
        alert=alert,
    )


def record(execute: Execute, ending: Ending) -> dict[str, Any] | None:
    """Apply ``ending`` in the caller's write transaction; the values written, or None when the
    run had moved on (another looker decided first) or the transition is not allowed."""
    d = ending.decision
    values = transition_sql(
        execute,
        run_id=ending.run_id,
        run_name=ending.run_name,
        current=ending.current,
        new=d.status,
        reason=d.reason,
        fields=ending.fields,
    )
    if values is None or d.status not in TERMINAL:
        return values
    if d.status is not RunStatus.LOST:
        release_admission_sql(execute, ending.run_id)
    if ending.alert is not None:
        raise_alert_sql(execute, run_id=ending.run_id, **ending.alert.fields())
    return values
