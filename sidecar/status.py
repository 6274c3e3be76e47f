"""The run's status as its sidecar sees it: settle it from its files, rarely from its backend.

Status follows the same ``decide()`` as the server's reconcile, applied with the same
compare-and-set. How the run is looked at is its backend's ``Watcher``: stat-based on every
poll (the local backend also checks the job's process group), asking the engine only rarely,
when the job has not started or vanished without an exit code (→ lost). A mixin of
``Monitor`` (sidecar/monitor.py).
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

from mcp_server.core.backends.base import observe_files
from mcp_server.core.execution import ending
from mcp_server.core.execution.run_status import TERMINAL, Observation, RunStatus, decide_for
from mcp_server.core.monitoring.alert_specs import AlertSpec
from sidecar import rules
from sidecar.sources.io import stat_of

if TYPE_CHECKING:
    from mcp_server.core.backends.base import Backend, Watcher
    from mcp_server.core.execution.jobfiles import JobFiles
    from mcp_server.core.monitoring.monitor_settings import MonitorSettings
    from mcp_server.core.paths import StateDir
    from sidecar.db import RunState, SidecarDB

log = logging.getLogger("sidecar")


class StatusMixin:
    state: StateDir
    run_id: str
    settings: MonitorSettings
    launch_grace_s: float
    files: JobFiles
    db: SidecarDB
    run: RunState | None
    _watcher: Watcher | None
    _backend: Backend | None
    raised_stall: str | None
    last_points_at: float
    settled_end: bool

    if TYPE_CHECKING:  # provided by Monitor

        def refresh_run(self) -> None: ...
        def _raise(self, execute: Any, spec: AlertSpec) -> dict[str, Any] | None: ...
        def raise_now(self, spec: AlertSpec) -> None: ...

    def backend(self) -> Backend:
        """The run's backend, made once the run row is known (the pruner stops the run through it)."""
        assert self.run is not None
        if self._backend is None:
            from mcp_server.core.backends.registry import Backends
            from mcp_server.core.settings import Settings

            # The store is opened only if the backend needs it (Slurm's shared poll): a local
            # run's sidecar stays free of SQLAlchemy.
            self._backend = Backends(self.state, None, Settings.from_env()).get(self.run.backend)
        return self._backend

    @property
    def watcher(self) -> Watcher | None:
        """The run's backend's way of looking at it (made once the run row is known)."""
        if self._watcher is None and self.run is not None:
            try:
                backend = self.backend()
            except Exception as err:  # an engine this process cannot load: watch the files alone
                log.warning("no %s backend here (%s); watching its files only", self.run.backend, err)
                return None
            self._watcher = backend.watcher(self.files, self.settings.backend_check_s)
        return self._watcher

    def observe(self, t: float) -> Observation | None:
        """What the run's files (and, rarely, its backend) say now; None when nothing new."""
        watcher = self.watcher
        if watcher is None or self.run is None:
            return observe_files(self.files, present=None) if self.files.exit_code.exists() else None
        return watcher.look(self.run, t)

    def check_status(self, t: float) -> None:
        if self.run is None or RunStatus(self.run.status) in TERMINAL | {RunStatus.READY}:
            return
        obs = self.observe(t)
        if obs is None:
            return
        if obs.present is True and obs.exit_code is None and self.run.status == RunStatus.RUNNING:
            return  # the common idle case: nothing to decide
        self.refresh_run()  # decide on the freshest row (a stop request changes the ending)
        run = self.run
        if run is None:
            return
        d = decide_for(run, obs, now=t, launch_grace_s=self.launch_grace_s)
        if d is None:
            return
        end = ending.prepare(run, d, self.files)
        with self.db.write() as c:
            execute: Any = c.execute  # the DB-API signature is wider than sqlwrites' Cursor protocol
            values = ending.record(execute, end)
        if values is not None:
            log.info("%s: %s → %s (%s)", run.id, run.status, d.status.value, d.reason)
            self.settled_end = d.status in TERMINAL
        self.refresh_run()

    def check_stall(self, t: float) -> None:
        run = self.run
        if run is None or run.status != RunStatus.RUNNING or self.settings.stall_s <= 0:
            return
        if self.watcher is not None and not self.watcher.command_running(run):
            return  # not started, or ended: not a stall
        times = [run.started_at or 0.0, self.last_points_at]  # a job may only write event files
        for path in (self.files.output, self.files.metrics):
            st = stat_of(path)
            if st is not None:
                times.append(st.st_mtime)
        last = max(times)
        spec = rules.stall_alert(t - last, self.settings.stall_s, last)
        if spec is None or spec.signature == self.raised_stall:
            return
        self.raised_stall = spec.signature
        self.raise_now(spec)

    def after_end(self, drained: bool = False) -> None:
        """Follow up on the ending this sidecar recorded, as a server would after its own
        (``Reconciler.follow_up``: a sweep launches its next held-back run). That needs the full
        services (SQLAlchemy), loaded only now, as this sidecar is about to exit, and only for a
        sweep's run: the lease and the alert were written with the ending, so a burst of short
        runs does not hold a 70 MB interpreter per ended run. ``drained``: the run's files are
        read to the end (its result counts for an adaptive sweep's next ask)."""
        row = self.db.one("SELECT sweep_id FROM runs WHERE id = ?", (self.run_id,))
        if row is None or row[0] is None:
            return
        from mcp_server.core.services import Services

        services = Services(self.state.root)
        try:
            if drained:
                services.sweeps.drained.add(self.run_id)
            services.reconciler.follow_up(services.runs.load(self.run_id))
        finally:
            services.close()
