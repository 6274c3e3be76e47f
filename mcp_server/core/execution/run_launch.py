"""Handing a run to its backend: the launch script, admission, submission.

Split from ``core.execution.runs`` (RunService inherits it): ``launch`` renders the run's launch
script with the backend's lines, lets the backend admit it (the local backend's GPU leases
and run slots: at once when free, else queued for the state dir's dispatcher), records the
backend's handle with the launch when it is known beforehand, and submits the job.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from sqlalchemy import update
from sqlmodel import col

from mcp_server.core.errors import Conflict, ResearchError
from mcp_server.core.execution.jobfiles import JobFiles
from mcp_server.core.execution.launch import render_launch_script, write_launch_script, write_private
from mcp_server.core.execution.reconcile import transition
from mcp_server.core.execution.run_status import RunStatus
from mcp_server.core.storage.models import Run
from mcp_server.core.storage.store import now

if TYPE_CHECKING:
    from mcp_server.core.backends.registry import Backends
    from mcp_server.core.paths import StateDir
    from mcp_server.core.scheduling.admission import Admission
    from mcp_server.core.settings import Settings
    from mcp_server.core.storage.store import Store

log = logging.getLogger("mcp_server.core.execution.runs")


def launch_reason(backend: str) -> str:
    return f"submitting to the {backend} backend"


class LaunchMixin:
    state: StateDir
    store: Store
    backends: Backends
    settings: Settings
    admission: Admission
    before_submit: list[Callable[[Run, JobFiles], None]]
    after_launch: list[Callable[[Run], None]]

    def files(self, run_id: str) -> JobFiles:
        return JobFiles(self.state.run_dir(run_id))

    def launch(self, run: Run, *, claimed: bool = False) -> None:
        """Render the launch script and hand the run to its backend.

        A run the backend admits (the local backend: a GPU lease, a cpu_only run slot) is
        admitted here when nobody is ahead of it and its resources are free; otherwise it is
        submitted anyway, ``queued``, and its launch script waits its turn (``core.scheduling.dispatch``).
        ``claimed``: the caller already moved the run to ``launching`` (a sweep claims a slot
        and the run in one transaction, so two processes cannot both fill the last slot).
        """
        backend = self.backends.get(run.backend)
        files = self.files(run.id)
        files.clear_outcome()
        pool = self._write_script(run)
        ticket = backend.ticket(run, pool)  # a read (and a GPU probe) before the write claim
        outcome = None
        extras: list[str] = []
        reason = launch_reason(backend.name)
        planned = backend.planned_ref(run)
        ref_field: dict[str, Any] = {"backend_ref": planned} if planned else {}
        with self.store.write() as s:
            if ticket is not None:
                outcome = backend.admit(s, run, ticket)
            t = now()
            if outcome is None or outcome.admitted:
                extras = [outcome.reason] if outcome else []
                if note := (run.options or {}).get("gpuwrap", {}).get("note"):
                    extras.append(note)
                if planned:
                    reason = "; ".join([f"submitted: {planned}", *extras])
                # A claimed run is already 'launching' (set by its sweep).
                ok = claimed or transition(s, run, RunStatus.LAUNCHING, reason, launched_at=t, **ref_field)
                if claimed and planned:
                    done = {"backend_ref": planned, "status_reason": reason}
                    s.execute(update(Run).where(col(Run.id) == run.id).values(**done))
            else:
                reason = outcome.reason
                ok = transition(s, run, RunStatus.QUEUED, reason, launched_at=t, queued_at=t, **ref_field)
            if not ok:
                raise Conflict(f"run {run.id} changed status to {run.status} while starting; not launched.")
        if outcome is not None and outcome.admitted:
            backend.admitted(files, outcome)
        for before in self.before_submit:
            try:
                before(run, files)
            except Exception:  # a record about the run must never keep it from running
                log.exception("before_submit hook failed for %s", run.id)
        try:
            ref = backend.submit(run, files)
        except ResearchError:
            raise
        except Exception as err:  # an unexpected backend failure still must not strand the run
            raise ResearchError(f"the {backend.name} backend failed to submit {run.id}: {err}") from err
        # From here the job exists: nothing may raise, or a caller would discard (or fail) the
        # run of a live job.
        self._keep_ref(run.id, ref)
        if ref != planned:  # else it was recorded with the launch
            self._record_ref(run, ref, reason, extras)
        if outcome is not None and not outcome.admitted:
            backend.waiting(run.id)
        for hook in self.after_launch:
            try:
                hook(run)
            except Exception:  # the job runs; a missing watcher is restarted by reconcile
                log.exception("after_launch hook failed for %s", run.id)

    def _record_ref(self, run: Run, ref: str, reason: str, extras: list[str]) -> None:
        try:
            with self.store.write() as s:
                s.execute(update(Run).where(col(Run.id) == run.id).values(backend_ref=ref))
                # Say where it went, unless the reason moved on (a queued run's says what it waits for).
                s.execute(
                    update(Run)
                    .where(
                        col(Run.id) == run.id,
                        col(Run.status_reason) == reason,
                        col(Run.status) == "launching",
                    )
                    .values(status_reason="; ".join([f"submitted: {ref}", *extras]))
                )
        except Exception:
            log.exception("%s was submitted as %s, but recording that failed", run.id, ref)

    def _write_script(self, run: Run) -> str | None:
        """Render and write the run's launch script with its backend's lines; returns its pool."""
        backend = self.backends.get(run.backend)
        pool = (run.options or {}).get("queue")
        lines = backend.script_lines(run, self.files(run.id), pool)
        script = render_launch_script(
            run_id=run.id,
            workdir=run.workdir,
            files=self.files(run.id),
            pre_command=lines.pre,
            post_command=lines.post,
            on_finish=lines.on_finish,
            echo_output=backend.echo_output,
            end_leftovers=self.settings.end_leftovers,
        )
        write_launch_script(self.files(run.id), script)
        return pool

    def submit(self, run: Run) -> None:
        """Hand a run already moved to launching/queued to its backend (recovery of a launch
        a killed server interrupted before tmux had it)."""
        backend = self.backends.get(run.backend)
        pool = self._write_script(run)
        try:
            ref = backend.submit(run, self.files(run.id))
        except ResearchError:
            raise
        except Exception as err:
            raise ResearchError(f"the {backend.name} backend failed to submit {run.id}: {err}") from err
        self._keep_ref(run.id, ref)
        with self.store.write() as s:
            s.execute(update(Run).where(col(Run.id) == run.id).values(backend_ref=ref))
        if pool and run.status == RunStatus.QUEUED.value:
            backend.waiting(run.id)
        for hook in self.after_launch:
            try:
                hook(run)
            except Exception:
                log.exception("after_launch hook failed for %s", run.id)

    def _keep_ref(self, run_id: str, ref: str) -> None:
        """The backend's handle, kept in the run dir too (doctor --repair rebuilds rows from it)."""
        with contextlib.suppress(OSError):
            write_private(self.files(run_id).run_dir / "backend_ref", ref + "\n")
