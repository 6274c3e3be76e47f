"""Settle runs from what their backends observe; the single place a run's end is decided.

Server processes call ``Reconciler.reconcile`` at start and before answering run
queries; the sidecar applies the same ``decide`` to its own run and records it the same
way (``core.execution.ending``: plain SQL, so it stays free of SQLAlchemy). Every status change goes
through a compare-and-set on the run's current status plus an event row, in one write
transaction, so concurrent lookers cannot record an ending twice.
"""

from __future__ import annotations

import logging
import math
import time
from collections import defaultdict
from collections.abc import Callable, Iterable
from typing import Any

from sqlmodel import Session

from mcp_server.core.backends import registry
from mcp_server.core.backends.registry import Backends
from mcp_server.core.errors import ResearchError
from mcp_server.core.execution import ending
from mcp_server.core.execution.jobfiles import JobFiles
from mcp_server.core.execution.run_status import TERMINAL, Decision, RunStatus, decide_for
from mcp_server.core.execution.watched import CAN_CHANGE, WATCHED, LiveRun, anything_to_watch, watched
from mcp_server.core.paths import StateDir
from mcp_server.core.settings import Settings
from mcp_server.core.storage.models import Run
from mcp_server.core.storage.sqlwrites import transition_sql
from mcp_server.core.storage.store import Store, now

log = logging.getLogger(__name__)

# How often a listing observes every watched run in full (reconcile_for_listing); the
# server's settler does the same on its own clock (core.execution.settler).
LOOK_EVERY_S = 15.0

__all__ = ["CAN_CHANGE", "WATCHED", "Reconciler", "transition"]


def transition(
    session: Session,
    run: Run | LiveRun,
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
        self.after_reconcile: list[Callable[[list[Any]], object]] = []
        # The run dirs of the runs being watched, checked (StateDir.run_dir) once each rather
        # than on every look: every list_runs looks at every live run.
        self._files: dict[str, JobFiles] = {}
        self._looked_at = -math.inf  # when every watched run was last observed (reconcile_for_listing)

    def files(self, run_id: str) -> JobFiles:
        files = self._files.get(run_id)
        if files is None:
            files = self._files[run_id] = JobFiles(self.state.run_dir(run_id))
        return files

    def watched_runs(self, run_ids: Iterable[str] | None = None) -> list[LiveRun]:
        """The runs a reconcile would look at (all that can still change, or ``run_ids``)."""
        with self.store.sql.snapshot() as conn:
            return watched(conn, run_ids)

    def reconcile(self, run_ids: Iterable[str] | None = None) -> list[Any]:
        """Observe watched runs (all that can still change, or ``run_ids``) and apply what they
        imply; returns the runs whose status changed (as read, with the new values set)."""
        with self.store.sql.snapshot() as conn:
            if run_ids is None and not anything_to_watch(conn):
                self._looked_at = time.monotonic()
                return []
            runs = watched(conn, run_ids)
        if run_ids is None:  # every watched run: forget the others' dirs
            self._looked_at = time.monotonic()
            self._files = {r.id: self._files[r.id] for r in runs if r.id in self._files}
        changed = self._settle(runs) if runs else []
        for hook in self.after_reconcile:
            try:
                hook(runs)
            except Exception:  # watching must never break settling
                log.exception("after_reconcile hook failed")
        return changed

    def reconcile_for_listing(self) -> list[Any]:
        """What a listing (list_runs, the context, the dashboard) settles before it answers.

        Every watched run whose exit code is written: its end is certain, and seeing it costs
        one stat. Every watched run in full (the backend asked, sidecars restarted) only once
        per ``LOOK_EVERY_S`` in this process: meanwhile each run's sidecar records a command
        that started or a job that vanished (it looks every 0.25 s, and asks a remote engine
        every ``backend_check_s``), and so does the server's settler. Asking the backend about
        every live run on every listing was most of what a list cost."""
        if time.monotonic() - self._looked_at >= LOOK_EVERY_S:
            return self.reconcile()
        runs = self.watched_runs()
        # A run no sidecar watches (its backend runs jobs in this process) is looked at each time.
        look = [*self.ended(runs), *(r.id for r in runs if not registry.monitored(r.backend))]
        return self.reconcile(look) if look else []

    def ended(self, runs: Iterable[Any]) -> list[str]:
        """The launched runs among ``runs`` whose exit code is written (one stat each)."""
        return [r.id for r in runs if r.launched_at is not None and self.files(r.id).exit_code.is_file()]

    def _settle(self, runs: list[LiveRun]) -> list[Any]:
        by_backend: dict[str, list[Any]] = defaultdict(list)
        for run in runs:
            by_backend[run.backend].append(run)
        decisions: list[tuple[Any, Decision]] = []
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

    def apply(self, decisions: list[tuple[Any, Decision]]) -> list[Any]:
        """Record decisions the way a sidecar does (``core.execution.ending``; a ``Run`` or a ``LiveRun``
        gets what changed set on it), then follow up on endings."""
        changed: list[Any] = []
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

    def follow_up(self, run: Any) -> None:
        """What an ending sets off once it is recorded (a sweep's next run): the same for an ending
        a server recorded and one a sidecar did."""
        for hook in self.on_terminal:
            try:
                hook(run)
            except Exception:  # a follow-up must never break settling
                log.exception("on_terminal hook failed for %s", run.id)
