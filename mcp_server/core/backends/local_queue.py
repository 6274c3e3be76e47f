"""The local backend's admission: gpuwrap's GPU leases and cpu_only's run slots, FIFO.

A local run that needs admission is planned into a pool at create time (``plan``), its launch
script waits for admission (``script_lines``), and its launch is admitted at once when nobody
waits ahead and its resources are free, or queued for the state dir's dispatcher (``ticket``,
``admit``, ``admitted``, ``waiting``). The store's queue and lease tables (``core.scheduling.admission``)
are the rendezvous; everything heavy is imported inside the calls (a sidecar imports the local
backend's module for its watcher).
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from mcp_server.core.backends.base import BackendContext, Plan, ScriptLines
from mcp_server.core.errors import InvalidInput

if TYPE_CHECKING:
    from sqlmodel import Session

    from mcp_server.core.execution.jobfiles import JobFiles
    from mcp_server.core.scheduling.admission import Admission, Outcome
    from mcp_server.core.scheduling.probes import GpuProbe
    from mcp_server.core.storage.models import Run

log = logging.getLogger("mcp_server.core.execution.runs")


@dataclass(frozen=True)
class Ticket:
    """What a launch learned before its transaction: its pool, whether to try now, the GPUs."""

    pool: str
    try_now: bool
    inventory: GpuProbe | None


class LocalQueue:
    def __init__(self, ctx: BackendContext) -> None:
        self.ctx = ctx
        self._admission: Admission | None = None

    @property
    def admission(self) -> Admission:
        if self._admission is None:
            from mcp_server.core.scheduling.admission import Admission

            self._admission = Admission(self.ctx.state, self.ctx.settings)
        return self._admission

    # ---- create time -------------------------------------------------------------------------

    def plan(
        self,
        *,
        cluster_type: str,
        gpus: int,
        options: Mapping[str, Any],
        command: str,
        env: Mapping[str, str],
    ) -> Plan:
        """gpuwrap's decision; refuses GPU counts this machine can never provide."""
        from mcp_server.core.scheduling.admission import POOL_GPU
        from mcp_server.core.scheduling.gpuwrap import parse_options, plan_admission
        from mcp_server.core.scheduling.probes import probe_gpus

        wrap = parse_options(options.get("gpuwrap"))
        plan = plan_admission(cluster_type=cluster_type, gpus=gpus, options=wrap, command=command, env=env)
        if plan.pool == POOL_GPU:
            inventory = probe_gpus(self.ctx.settings.probe_timeout_s)
            if inventory.ok and len(inventory.gpus) < gpus:
                raise InvalidInput(
                    f"gpus={gpus} but this machine has {len(inventory.gpus)} GPU(s) "
                    f"({'; '.join(inventory.signals)}); ask for at most {len(inventory.gpus)}, "
                    "or set options.gpuwrap.enabled=false to run without a GPU lease."
                )
        return Plan(plan.pool, plan.record)

    def script_lines(self, run: Run, pool: str | None) -> ScriptLines:
        if not pool:
            return ScriptLines()
        from mcp_server.core.scheduling import gpuwrap
        from mcp_server.core.scheduling.admission import POOL_GPU

        root = str(self.ctx.state.root)
        settings = self.ctx.settings
        post = gpuwrap.post_lines(root, run.id, settings) if pool == POOL_GPU else []
        return ScriptLines(
            pre=gpuwrap.pre_lines(root, run.id, settings), post=post, on_finish=gpuwrap.finish_lines(root)
        )

    # ---- launch time -------------------------------------------------------------------------

    def ticket(self, run: Run, pool: str | None) -> Ticket | None:
        """A cheap read first: the write claim is taken only when the run may be admitted now."""
        if not pool:
            return None
        from mcp_server.core.scheduling.admission import POOL_GPU
        from mcp_server.core.scheduling.probes import probe_gpus

        try_now = self._may_admit_now(run.id, pool)
        inventory = probe_gpus(self.ctx.settings.probe_timeout_s) if try_now and pool == POOL_GPU else None
        return Ticket(pool, try_now, inventory)

    def admit(self, s: Session, run: Run, ticket: Ticket) -> Outcome:
        """Inside the launch transaction: take the run's place in the queue, and its resources now
        when every gate agrees."""
        from mcp_server.core.scheduling.admission import Outcome
        from mcp_server.core.storage.store import now

        entry = self.admission.enqueue(s, run, ticket.pool)
        entry.enqueued_at = now()  # its launch starts now: the grace runs from here
        s.add(entry)
        if not ticket.try_now:
            return Outcome(False, self._queued_reason(s, run.id))
        outcome = self.admission.try_admit(s, run.id, ticket.inventory)
        if outcome.impossible:
            raise InvalidInput(f"run {run.id} cannot start: {outcome.reason}.")
        return outcome

    def admitted(self, files: JobFiles, outcome: Outcome) -> None:
        from mcp_server.core.scheduling.gpuwrap import write_admission_env

        write_admission_env(files, outcome.gpu_indices)

    def waiting(self, run_id: str) -> None:
        """A queued run's launch script waits for the dispatcher: make sure one runs."""
        from mcp_server.core.scheduling import dispatch
        from mcp_server.core.scheduling.gpuwrap import knobs

        try:
            dispatch.ensure_running(self.ctx.state.root, knobs(self.ctx.settings))
        except OSError:  # the run's own launch script starts one too
            log.exception("could not start the queue dispatcher for %s", run_id)

    def _may_admit_now(self, run_id: str, pool: str) -> bool:
        """Nobody waits ahead in the pool, and (CPU) a run slot looks free."""
        from sqlmodel import col, func, select

        from mcp_server.core.scheduling.admission import POOL_CPU
        from mcp_server.core.storage.models import QueueEntry

        with self.ctx.store.read() as s:
            if self.admission.ahead_of(s, run_id):
                return False
            if pool != POOL_CPU:
                return True
            taken = s.exec(
                select(func.count())
                .select_from(QueueEntry)
                .where(QueueEntry.pool == POOL_CPU, col(QueueEntry.admitted_at).is_not(None))
            ).one()
        return int(taken) < self.ctx.settings.cpu_run_limit

    def _queued_reason(self, s: Session, run_id: str) -> str:
        from sqlmodel import col, select

        from mcp_server.core.scheduling.admission import POOL_CPU, slot_reason
        from mcp_server.core.storage.models import QueueEntry

        ahead = self.admission.ahead_of(s, run_id)
        if ahead:
            return f"waiting behind {len(ahead)} earlier queued run(s) (next: {ahead[0]})"
        running = s.exec(
            select(QueueEntry.run_id)
            .where(QueueEntry.pool == POOL_CPU, col(QueueEntry.admitted_at).is_not(None))
            .order_by(col(QueueEntry.seq))
        ).all()
        return slot_reason(list(running), self.ctx.settings.cpu_run_limit) or "waiting for a run slot"
