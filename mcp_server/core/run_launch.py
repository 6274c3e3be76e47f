"""Handing a run to its backend: the launch script, admission, submission.

Split from ``core.runs`` (RunService inherits it): ``launch`` renders the run's launch
script, admits it now when it may be (the write claim is taken only when a slot or GPUs
are plausibly free) or queues it for the state dir's dispatcher, records the tmux handle
with the launch when it is known beforehand, and submits the job.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from sqlalchemy import func, update
from sqlmodel import Session, col, select

from mcp_server.core import dispatch
from mcp_server.core.admission import POOL_CPU, POOL_GPU, Admission, Outcome, slot_reason
from mcp_server.core.errors import Conflict, InvalidInput, ResearchError
from mcp_server.core.gpuwrap import finish_lines as gpuwrap_finish_lines
from mcp_server.core.gpuwrap import knobs as gpuwrap_knobs
from mcp_server.core.gpuwrap import post_lines as gpuwrap_post_lines
from mcp_server.core.gpuwrap import pre_lines as gpuwrap_pre_lines
from mcp_server.core.gpuwrap import write_admission_env
from mcp_server.core.jobfiles import JobFiles
from mcp_server.core.launch import render_launch_script, write_launch_script, write_private
from mcp_server.core.lifecycle import RunStatus
from mcp_server.core.models import QueueEntry, Run
from mcp_server.core.probes import GpuProbe, probe_gpus
from mcp_server.core.reconcile import transition
from mcp_server.core.store import now

if TYPE_CHECKING:
    from mcp_server.core.backends.registry import Backends
    from mcp_server.core.paths import StateDir
    from mcp_server.core.settings import Settings
    from mcp_server.core.store import Store

log = logging.getLogger("mcp_server.core.runs")


def launch_reason(backend: str) -> str:
    return f"submitting to the {backend} backend"


class LaunchMixin:
    state: StateDir
    store: Store
    backends: Backends
    settings: Settings
    admission: Admission
    after_launch: list[Callable[[Run], None]]

    def files(self, run_id: str) -> JobFiles:
        return JobFiles(self.state.run_dir(run_id))

    def launch(self, run: Run, *, claimed: bool = False) -> None:
        """Render the launch script and hand the run to its backend.

        A run that needs admission (gpuwrap's GPU lease, a cpu_only run slot) is admitted
        here when nobody is ahead of it and its resources are free; otherwise it is
        submitted anyway, ``queued``, and its launch script waits its turn (``core.admit``).
        ``claimed``: the caller already moved the run to ``launching`` (a sweep claims a slot
        and the run in one transaction, so two processes cannot both fill the last slot).
        """
        backend = self.backends.get(run.backend)
        files = self.files(run.id)
        files.clear_outcome()
        pool = self._write_script(run)
        inventory: GpuProbe | None = None
        # The write claim is taken only when the run may be admitted now: with others
        # waiting ahead (or every CPU slot taken) it is queued without one.
        try_now = pool is not None and self._may_admit_now(run.id, pool)
        if try_now and pool == POOL_GPU:
            inventory = probe_gpus(self.settings.probe_timeout_s)
        outcome = None
        extras: list[str] = []
        reason = launch_reason(backend.name)
        planned = backend.planned_ref(run)
        ref_field: dict[str, Any] = {"backend_ref": planned} if planned else {}
        with self.store.write() as s:
            if pool:
                entry = self.admission.enqueue(s, run, pool)
                entry.enqueued_at = now()  # its launch starts now: the grace runs from here
                s.add(entry)
                if try_now:
                    outcome = self.admission.try_admit(s, run.id, inventory)
                    if outcome.impossible:
                        raise InvalidInput(f"run {run.id} cannot start: {outcome.reason}.")
                else:
                    outcome = Outcome(False, self._queued_reason(s, run.id))
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
            write_admission_env(files, outcome.gpu_indices)
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
            try:
                dispatch.ensure_running(self.state.root, gpuwrap_knobs(self.settings))
            except OSError:  # the run's own launch script starts one too
                log.exception("could not start the queue dispatcher for %s", run.id)
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
        """Render and write the run's launch script; returns its admission pool."""
        backend = self.backends.get(run.backend)
        pool = (run.options or {}).get("queue")
        pre, post = backend.pre_command(run), backend.post_command(run)
        on_finish: list[str] = []
        root = str(self.state.root)
        if pool:
            pre = [*gpuwrap_pre_lines(root, run.id, self.settings), *pre]
            on_finish = gpuwrap_finish_lines(root)
            if pool == POOL_GPU:
                post = [*gpuwrap_post_lines(root, run.id, self.settings), *post]
        script = render_launch_script(
            run_id=run.id,
            workdir=run.workdir,
            files=self.files(run.id),
            pre_command=pre,
            post_command=post,
            on_finish=on_finish,
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
            dispatch.ensure_running(self.state.root, gpuwrap_knobs(self.settings))
        for hook in self.after_launch:
            try:
                hook(run)
            except Exception:
                log.exception("after_launch hook failed for %s", run.id)

    def _keep_ref(self, run_id: str, ref: str) -> None:
        """The backend's handle, kept in the run dir too (doctor --repair rebuilds rows from it)."""
        with contextlib.suppress(OSError):
            write_private(self.files(run_id).run_dir / "backend_ref", ref + "\n")

    def _may_admit_now(self, run_id: str, pool: str) -> bool:
        """A cheap read: nobody waits ahead in the pool, and (CPU) a run slot looks free."""
        with self.store.read() as s:
            if self.admission.ahead_of(s, run_id):
                return False
            if pool != POOL_CPU:
                return True
            taken = s.exec(
                select(func.count())
                .select_from(QueueEntry)
                .where(QueueEntry.pool == POOL_CPU, col(QueueEntry.admitted_at).is_not(None))
            ).one()
        return int(taken) < self.settings.cpu_run_limit

    def _queued_reason(self, s: Session, run_id: str) -> str:
        ahead = self.admission.ahead_of(s, run_id)
        if ahead:
            return f"waiting behind {len(ahead)} earlier queued run(s) (next: {ahead[0]})"
        running = s.exec(
            select(QueueEntry.run_id)
            .where(QueueEntry.pool == POOL_CPU, col(QueueEntry.admitted_at).is_not(None))
            .order_by(col(QueueEntry.seq))
        ).all()
        return slot_reason(list(running), self.settings.cpu_run_limit) or "waiting for a run slot"

    # ---- stop / rerun --------------------------------------------------------------------
