"""Settle runs from what their backends observe; the single place a run's end is decided.

Server processes call ``Reconciler.reconcile`` at start and before answering run
queries; the sidecar applies the same ``decide`` to its own run and records it the same
way (``core.ending``: plain SQL, so it stays free of SQLAlchemy). Every status change goes
through a compare-and-set on the run's current status plus an event row, in one write
transaction, so concurrent lookers cannot record an ending twice.
"""

from __future__ import annotations

import logging
from collections import defaultdict
from collections.abc import Callable, Iterable
from typing import Any

from sqlmodel import Session, col, select

from mcp_server.core import ending
from mcp_server.core.backends.registry import Backends
from mcp_server.core.errors import ResearchError
from mcp_server.core.jobfiles import JobFiles
from mcp_server.core.lifecycle import ACTIVE, TERMINAL, Decision, RunStatus, decide_for
from mcp_server.core.models import Run
from mcp_server.core.paths import StateDir
from mcp_server.core.settings import Settings
from mcp_server.core.sqlwrites import transition_sql
from mcp_server.core.store import Store, now

log = logging.getLogger(__name__)

WATCHED: tuple[str, ...] = tuple(s.value for s in (*ACTIVE, RunStatus.LOST))


def transition(
    session: Session,
    run: Run,
    new: RunStatus,
    reason: str,
    *,
    expected: RunStatus | None = None,
    **fields: Any,
) -> bool:
    """Move ``run`` from ``expected`` (default: its status as read) to ``new``; False if it had moved on."""
    session.flush()  # keep event ids in call order when the ORM has pending rows
    values = transition_sql(
        session.connection().exec_driver_sql,
        run_id=run.id,
        run_name=run.name,
        current=RunStatus(expected or run.status),
        new=new,
        reason=reason,
        fields=fields,
    )
    if values is None:
        return False
    for key, value in values.items():
        setattr(run, key, value)
    return True


class Reconciler:
    def __init__(self, state: StateDir, store: Store, backends: Backends, settings: Settings) -> None:
        self.state = state
        self.store = store
        self.backends = backends
        self.settings = settings
        # Called with each run that reached a terminal status (queues use it to admit the next).
        self.on_terminal: list[Callable[[Run], None]] = []
        # Called after every reconcile with the runs it looked at, as they are now (the sidecar
        # supervisor restarts missing sidecars from here).
        self.after_reconcile: list[Callable[[list[Run]], object]] = []

    def files(self, run_id: str) -> JobFiles:
        return JobFiles(self.state.run_dir(run_id))

    def watched_runs(self, run_ids: Iterable[str] | None = None) -> list[Run]:
        query = select(Run).where(col(Run.status).in_(WATCHED))
        if run_ids is not None:
            ids = list(run_ids)
            if not ids:
                return []
            query = query.where(col(Run.id).in_(ids))
        with self.store.read() as s:
            return list(s.exec(query.order_by(col(Run.pk))).all())

    def reconcile(self, run_ids: Iterable[str] | None = None) -> list[Run]:
        """Observe watched runs (all, or ``run_ids``) and apply what they imply; returns changed runs."""
        runs = self.watched_runs(run_ids)
        changed = self._settle(runs) if runs else []
        for hook in self.after_reconcile:
            try:
                hook(runs)
            except Exception:  # watching must never break settling
                log.exception("after_reconcile hook failed")
        return changed

    def _settle(self, runs: list[Run]) -> list[Run]:
        by_backend: dict[str, list[Run]] = defaultdict(list)
        for run in runs:
            by_backend[run.backend].append(run)
        decisions: list[tuple[Run, Decision]] = []
        t = now()
        for name, group in by_backend.items():
            files = {r.id: self.files(r.id) for r in group}
            try:
                observed = self.backends.get(name).observe(group, files)
            except ResearchError as err:
                log.warning("could not observe %d %s run(s): %s", len(group), name, err)
                continue
            for run in group:
                obs = observed.get(run.id)
                if obs is None:
                    continue
                d = decide_for(run, obs, now=t, launch_grace_s=self.settings.launch_grace_s)
                if d is not None:
                    decisions.append((run, d))
        return self.apply(decisions)

    def apply(self, decisions: list[tuple[Run, Decision]]) -> list[Run]:
        """Record decisions the way a sidecar does (``core.ending``), then follow up on endings."""
        changed: list[Run] = []
        if not decisions:
            return changed
        endings = [(run, ending.prepare(run, d, self.files(run.id))) for run, d in decisions]
        with self.store.write() as s:
            execute = s.connection().exec_driver_sql
            for run, e in endings:
                values = ending.record(execute, e)
                if values is not None:
                    for key, value in values.items():
                        setattr(run, key, value)
                    changed.append(run)
        for run in changed:
            if RunStatus(run.status) in TERMINAL:
                self.follow_up(run)
        return changed

    def follow_up(self, run: Run) -> None:
        """What an ending sets off once it is recorded (a sweep's next run): the same for an ending
        a server recorded and one a sidecar did."""
        for hook in self.on_terminal:
            try:
                hook(run)
            except Exception:  # a follow-up must never break settling
                log.exception("on_terminal hook failed for %s", run.id)
