"""Admission of local runs: GPU leases and CPU run slots, FIFO, without a daemon.

A run that needs admission has a ``QueueEntry``. Whoever looks — the server launching
the run (fast path) or the run's own launch script polling through ``core.scheduling.gpu_attempt`` —
calls ``try_admit`` inside one ``BEGIN IMMEDIATE`` transaction: it reclaims entries and
leases whose holders are dead, asks each gate in ``GATES`` for a reason to wait, and
when none objects leases the GPUs (rows keyed by GPU uuid, so two runs can never hold
one GPU even if a gate were wrong). Gates are plain functions of a ``Snapshot``; another
limit (e.g. a sweep's ``parallel`` cap) is one more function appended to ``GATES``.

An entry's holder is alive while its run has not ended, its command has not written an
exit code, and its launch script (``launcher.pid``) or its job's process group lives;
before the launch script starts, the launch grace period applies. So a run whose launch
script and job were killed -9 loses its lease at the next look, and no queue can stall
because nobody cleaned up.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Iterable
from dataclasses import dataclass

from sqlalchemy import delete
from sqlmodel import Session, col, select

from mcp_server.core.execution.jobfiles import JobFiles
from mcp_server.core.execution.run_status import TERMINAL, RunStatus
from mcp_server.core.paths import StateDir
from mcp_server.core.scheduling.gpufree import GpuState, assess, own_sessions
from mcp_server.core.scheduling.probes import GpuProbe
from mcp_server.core.scheduling.procs import job_lives
from mcp_server.core.settings import Settings
from mcp_server.core.storage.models import GpuLease, QueueEntry, Run
from mcp_server.core.storage.sqlwrites import release_admission_sql
from mcp_server.core.storage.store import now

log = logging.getLogger(__name__)

# Runs that certainly hold nothing any more. A lost run may still have a live job, so it
# keeps its lease until its process group is gone.
ENDED = frozenset(s.value for s in TERMINAL - {RunStatus.LOST})

POOL_GPU = "gpu"
POOL_CPU = "cpu"


@dataclass(frozen=True)
class Snapshot:
    """What gates decide on, read inside the admission transaction."""

    entry: QueueEntry
    queue: list[QueueEntry]  # live entries, FIFO order
    gpus: list[GpuState] | None  # assessed inventory (GPU pool only; None when unreadable)
    inventory_error: str | None
    settings: Settings
    now: float


Gate = Callable[[Snapshot], "str | None"]


def backoff_gate(snap: Snapshot) -> str | None:
    nb = snap.entry.not_before
    if nb is not None and snap.now < nb:
        return f"backing off after GPU contention; next try in {nb - snap.now:.1f} s"
    return None


def fifo_gate(snap: Snapshot) -> str | None:
    """Strict FIFO within a pool: nobody overtakes an earlier waiting run (no backfill)."""
    ahead = [
        e
        for e in snap.queue
        if e.pool == snap.entry.pool and e.admitted_at is None and e.seq < snap.entry.seq  # type: ignore[operator]
    ]
    if ahead:
        return f"waiting behind {len(ahead)} earlier queued run(s) (next: {ahead[0].run_id})"
    return None


def slot_gate(snap: Snapshot) -> str | None:
    if snap.entry.pool != POOL_CPU:
        return None
    running = [e.run_id for e in snap.queue if e.pool == POOL_CPU and e.admitted_at is not None]
    return slot_reason(running, snap.settings.cpu_run_limit)


def slot_reason(running: list[str], limit: int) -> str | None:
    """Why a CPU-pool run waits, or None when a slot is free."""
    if len(running) < limit:
        return None
    names = ", ".join(running[:4]) + (" …" if len(running) > 4 else "")
    return (
        f"waiting for a CPU run slot: {len(running)} of {limit} in use ({names}); "
        "raise RESEARCH_MCP_CPU_RUN_LIMIT to run more at once"
    )


def gpu_gate(snap: Snapshot) -> str | None:
    if snap.entry.pool != POOL_GPU:
        return None
    need = snap.entry.gpus
    if snap.gpus is None:
        return f"waiting for {need} GPU(s): the GPU inventory is unavailable ({snap.inventory_error})"
    free = [g for g in snap.gpus if g.free]
    if len(free) >= need:
        return None
    busy = "; ".join(r for g in snap.gpus if (r := g.busy_reason()))
    return f"waiting for {need} GPU(s), {len(free)} free: {busy}"


# Asked in order; the first reason to wait wins. Append a gate to add a limit.
GATES: list[Gate] = [backoff_gate, fifo_gate, slot_gate, gpu_gate]


@dataclass(frozen=True)
class Outcome:
    admitted: bool
    reason: str
    gpu_indices: tuple[int, ...] = ()
    impossible: bool = False  # waiting can never succeed (more GPUs asked than exist)


class Admission:
    def __init__(self, state: StateDir, settings: Settings) -> None:
        self.state = state
        self.settings = settings

    def files(self, run_id: str) -> JobFiles:
        return JobFiles(self.state.run_dir(run_id))

    # ---- queue entries -------------------------------------------------------------------

    def enqueue(self, session: Session, run: Run, pool: str) -> QueueEntry:
        entry = session.exec(select(QueueEntry).where(QueueEntry.run_id == run.id)).first()
        if entry is None:
            t = now()
            entry = QueueEntry(
                run_id=run.id,
                pool=pool,
                gpus=run.gpus if pool == POOL_GPU else 0,
                enqueued_at=t,
                waiting_since=t,
            )
            session.add(entry)
            session.flush()
        return entry

    def entry(self, session: Session, run_id: str) -> QueueEntry | None:
        return session.exec(select(QueueEntry).where(QueueEntry.run_id == run_id)).first()

    def release(self, session: Session, run_id: str) -> None:
        """End a run's lease and queue entry (the run ended, or its launch was refused).

        The same statements as the sidecar's, which releases in the transaction that records
        a run's end."""
        session.flush()
        release_admission_sql(session.connection().exec_driver_sql, run_id)

    def requeue(self, session: Session, entry: QueueEntry, backoff_s: float) -> None:
        """Give the GPUs back and wait again, keeping the entry's place in the queue."""
        t = now()
        session.execute(delete(GpuLease).where(col(GpuLease.run_id) == entry.run_id))
        entry.admitted_at = None
        entry.contentions += 1
        entry.waiting_since = t
        entry.not_before = t + backoff_s
        session.add(entry)

    def ahead_of(self, session: Session, run_id: str) -> list[str]:
        """Run ids waiting before ``run_id`` in its pool, FIFO order (stale ones included: a cheap read)."""
        mine = self.entry(session, run_id)
        if mine is None:
            return []
        return list(
            session.exec(
                select(QueueEntry.run_id)
                .where(
                    QueueEntry.pool == mine.pool,
                    col(QueueEntry.admitted_at).is_(None),
                    col(QueueEntry.seq) < mine.seq,
                )
                .order_by(col(QueueEntry.seq))
            ).all()
        )

    def leased_gpus(self, session: Session, run_ids: Iterable[str] | None = None) -> dict[str, list[int]]:
        query = select(GpuLease)
        if run_ids is not None:
            query = query.where(col(GpuLease.run_id).in_(list(run_ids)))
        out: dict[str, list[int]] = {}
        for lease in session.exec(query).all():
            out.setdefault(lease.run_id, []).append(lease.gpu_index)
        return {k: sorted(v) for k, v in out.items()}

    # ---- liveness ------------------------------------------------------------------------

    def holder_alive(self, entry: QueueEntry, run: Run | None, t: float) -> bool:
        if run is None or run.status in ENDED:
            return False
        files = self.files(run.id)
        if files.read_exit_code() is not None:
            return False  # the command ended; its launch script is only finishing up
        if job_lives(files):  # the job, or a launch script waiting for or finishing it
            return True
        if files.read_launcher_pid() is not None or run.status == RunStatus.LOST.value:
            return False
        since = run.launched_at if run.launched_at is not None else entry.enqueued_at
        return t - since < self.settings.launch_grace_s  # launch script not started yet

    def live_state(self, session: Session, reclaim: bool = True) -> tuple[list[QueueEntry], list[GpuLease]]:
        """Entries and leases whose holders live; with ``reclaim``, delete the others (write transaction)."""
        t = now()
        entries = list(session.exec(select(QueueEntry).order_by(col(QueueEntry.seq))).all())
        leases = list(session.exec(select(GpuLease)).all())
        ids = [e.run_id for e in entries]
        runs = {r.id: r for r in session.exec(select(Run).where(col(Run.id).in_(ids))).all()} if ids else {}
        live = [e for e in entries if self.holder_alive(e, runs.get(e.run_id), t)]
        live_ids = {e.run_id for e in live}
        if not reclaim:
            return live, [lease for lease in leases if lease.run_id in live_ids]
        if stale := [e.run_id for e in entries if e.run_id not in live_ids]:
            log.info("reclaimed queue entries and leases of %s", ", ".join(stale))
            session.execute(delete(QueueEntry).where(col(QueueEntry.run_id).in_(stale)))
        if orphans := [lease.gpu_uuid for lease in leases if lease.run_id not in live_ids]:
            session.execute(delete(GpuLease).where(col(GpuLease.gpu_uuid).in_(orphans)))
        return live, [lease for lease in leases if lease.run_id in live_ids]

    # ---- admission -----------------------------------------------------------------------

    def assess(self, session: Session, inventory: GpuProbe, leases: list[GpuLease]) -> list[GpuState]:
        return assess(
            inventory.gpus,
            {lease.gpu_uuid: lease.run_id for lease in leases},
            own_sessions(session, self.state),
            self.settings.gpu_free_memory_mib,
        )

    def try_admit(self, session: Session, run_id: str, inventory: GpuProbe | None) -> Outcome:
        """Admit ``run_id`` now if every gate agrees; must run inside a write transaction."""
        live, leases = self.live_state(session)
        entry = next((e for e in live if e.run_id == run_id), None)
        if entry is None:
            return Outcome(False, "not in the queue")
        if entry.admitted_at is not None:  # asked twice: the answer is the lease it holds
            held = tuple(sorted(lease.gpu_index for lease in leases if lease.run_id == run_id))
            return Outcome(
                True, f"GPU {','.join(map(str, held))} leased" if held else "CPU run slot taken", held
            )
        gpus: list[GpuState] | None = None
        error = None
        if entry.pool == POOL_GPU:
            if inventory is not None and inventory.ok:
                if len(inventory.gpus) < entry.gpus:
                    return Outcome(
                        False,
                        f"needs {entry.gpus} GPU(s) but this machine has {len(inventory.gpus)}",
                        impossible=True,
                    )
                gpus = self.assess(session, inventory, leases)
            else:
                error = inventory.error if inventory is not None else "not read yet"
        snap = Snapshot(entry, live, gpus, error, self.settings, now())
        for gate in GATES:
            if reason := gate(snap):
                return Outcome(False, reason)
        chosen: list[int] = []
        if gpus is not None:
            for state in [g for g in gpus if g.free][: entry.gpus]:
                session.add(
                    GpuLease(
                        gpu_uuid=state.gpu.uuid, gpu_index=state.gpu.index, run_id=run_id, leased_at=snap.now
                    )
                )
                chosen.append(state.gpu.index)
        entry.admitted_at = snap.now
        entry.not_before = None
        try:
            entry.output_offset = os.path.getsize(self.files(run_id).output)
        except OSError:
            entry.output_offset = 0
        session.add(entry)
        session.flush()  # a duplicate GPU lease fails here, inside the transaction
        if chosen:
            return Outcome(True, f"GPU {','.join(map(str, chosen))} leased", tuple(chosen))
        return Outcome(True, "CPU run slot taken")
