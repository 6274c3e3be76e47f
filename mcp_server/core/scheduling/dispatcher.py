"""The queue dispatcher: admits a state dir's queued local runs, in FIFO order, for all of them.

Every poll (``RESEARCH_MCP_QUEUE_POLL_S``, or sooner when a run ends and pokes
``queue/wake``) it READS the queue: WAL reads take no lock and never wait. Only when a
slot is plausibly free (an admitted run's holder is gone, fewer admitted runs than the
CPU limit, GPUs that look free), or a waiting run must end (stopped, out of retries,
impossible), does it take the write lock, for one transaction that admits as many runs
as the gates allow and refreshes every waiting run's status_reason. After the commit it
writes each admitted run's ``admission.env`` and wakes its launch script.

A locked or busy store only delays it: every failure is logged and retried next poll,
so a lock never turns into a failed, lost or stopped run.
"""

from __future__ import annotations

import logging
import os
import select
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from sqlalchemy import update
from sqlmodel import Session, col
from sqlmodel import select as sql_select

from mcp_server.core.execution.jobfiles import JobFiles
from mcp_server.core.execution.launch import write_private
from mcp_server.core.execution.reconcile import transition
from mcp_server.core.execution.run_status import RunStatus
from mcp_server.core.paths import StateDir
from mcp_server.core.scheduling import gpuwrap
from mcp_server.core.scheduling.admission import GATES, POOL_CPU, POOL_GPU, Admission, Snapshot
from mcp_server.core.scheduling.dispatch import WAKE, queue_dir, wake
from mcp_server.core.scheduling.probes import GpuProbe, probe_gpus
from mcp_server.core.scheduling.procs import job_lives
from mcp_server.core.settings import Settings
from mcp_server.core.storage.models import QueueEntry, Run
from mcp_server.core.storage.store import Store, now

if TYPE_CHECKING:
    from mcp_server.core.execution.sidecars import SidecarSupervisor

log = logging.getLogger("research_mcp.dispatcher")

# The dispatcher exits after the queue has been empty this long (a later queued run starts it again).
IDLE_EXIT_S = 10.0
# Waiting runs' status_reasons are rewritten at most this often.
REASONS_EVERY_S = 2.0
# Longest sleep after a failed poll (a locked or full store).
MAX_BACKOFF_S = 5.0


@dataclass
class Look:
    """What one read of the queue found, and what needs the write lock."""

    waiting: list[tuple[QueueEntry, Run]] = field(default_factory=list)
    to_end: list[str] = field(default_factory=list)  # run ids: stop requested, or out of retries
    pools: set[str] = field(default_factory=set)  # pools whose head may be admitted now
    unwritten: list[str] = field(default_factory=list)  # admitted, but admission.env is missing
    orphans: list[str] = field(default_factory=list)  # queued runs whose entry was reclaimed


class Dispatcher:
    def __init__(self, state: StateDir, settings: Settings) -> None:
        self.state = state
        self.settings = settings
        self.store = Store(state.db_path)
        self.admission = Admission(state, settings)
        self._sidecars: SidecarSupervisor | None = None
        self._reasons_at = -float("inf")

    def files(self, run_id: str) -> JobFiles:
        return JobFiles(self.state.run_dir(run_id))

    # ---- the cheap read -----------------------------------------------------------------------

    def look(self) -> Look:
        out = Look()
        t = now()
        with self.store.read() as s:
            entries = list(s.exec(sql_select(QueueEntry).order_by(col(QueueEntry.seq))).all())
            ids = [e.run_id for e in entries]
            runs = {r.id: r for r in s.exec(sql_select(Run).where(col(Run.id).in_(ids))).all()} if ids else {}
            queued = s.exec(
                sql_select(Run).where(
                    col(Run.status).in_((RunStatus.QUEUED.value, RunStatus.LAUNCHING.value)),
                    col(Run.launched_at).is_not(None),
                )
            ).all()
        entered = set(ids)
        # An entry reclaimed while its launch was slow: its launch script still waits. A
        # launching one too when the server that admitted it was killed before writing
        # admission.env (and its script started after the launch grace): nobody else would.
        out.orphans = [
            r.id
            for r in queued
            if r.id not in entered
            and (r.options or {}).get("queue")
            and (r.status == RunStatus.QUEUED.value or not self.files(r.id).admission_env.exists())
            and self._waits(r.id)
        ]
        admitted: dict[str, int] = {}
        for entry in entries:
            run = runs.get(entry.run_id)
            if entry.admitted_at is not None:
                if self.admission.holder_alive(entry, run, t):
                    admitted[entry.pool] = admitted.get(entry.pool, 0) + 1
                    launching = run is not None and run.status == RunStatus.LAUNCHING.value
                    if launching and not self.files(entry.run_id).admission_env.exists():
                        out.unwritten.append(entry.run_id)
                else:
                    out.pools.add(entry.pool)  # its slot or GPUs come back: try the next one
                continue
            if run is None or run.status != RunStatus.QUEUED.value or run.launched_at is None:
                continue  # not launched yet (its creator admits or queues it), or ended
            out.waiting.append((entry, run))
            if run.stop_requested_at is not None or self._gave_up(entry, run, t):
                out.to_end.append(run.id)
                out.pools.add(entry.pool)  # one last try first
        heads: dict[str, QueueEntry] = {}
        for entry, _run in out.waiting:
            heads.setdefault(entry.pool, entry)
        for pool, head in heads.items():
            if pool == POOL_CPU and admitted.get(POOL_CPU, 0) < self.settings.cpu_run_limit:
                out.pools.add(pool)
            elif pool == POOL_GPU and (head.not_before is None or head.not_before <= t):
                out.pools.add(pool)  # GPU freedom needs the inventory: decided under the lock
        out.pools &= set(heads)
        return out

    def _waits(self, run_id: str) -> bool:
        files = self.files(run_id)
        return files.read_exit_code() is None and job_lives(files)

    def _gave_up(self, entry: QueueEntry, run: Run, t: float) -> bool:
        options = gpuwrap.options_of((run.options or {}).get("gpuwrap"))
        deadline = gpuwrap.give_up_at(options, entry.waiting_since, entry.contentions)
        return deadline is not None and t >= deadline

    # ---- the write, only when something can change --------------------------------------------

    def dispatch(self, look: Look) -> None:
        inventory: GpuProbe | None = None
        if POOL_GPU in look.pools:
            inventory = probe_gpus(self.settings.probe_timeout_s)
        admitted: list[tuple[str, tuple[int, ...]]] = []
        ended: list[str] = []
        with self.store.write() as s:
            for run_id in look.orphans:
                run = s.exec(sql_select(Run).where(Run.id == run_id)).first()
                if run is not None and run.status == RunStatus.LAUNCHING.value:
                    transition(s, run, RunStatus.QUEUED, "its admission was lost in a crash; queued again")
                if run is not None and run.status == RunStatus.QUEUED.value:
                    self.admission.enqueue(s, run, str((run.options or {}).get("queue")))
                    log.info("%s: its queue entry was gone; queued it again", run_id)
            stops = [i for i in look.to_end if self._stop_requested(s, i)]
            ended += [i for i in stops if self._end_waiting(s, i)]
            for pool in sorted(look.pools):
                admitted += self._admit_pool(s, pool, inventory)
            # Out of retries only if this last try did not admit it either.
            taken = {i for i, _ in admitted}
            ended += [i for i in look.to_end if i not in taken and i not in stops and self._end_waiting(s, i)]
        for run_id, gpus in admitted:
            gpuwrap.write_admission_env(self.files(run_id), gpus)
            wake(self.files(run_id).run_dir / WAKE)
            self._start_sidecar(run_id)
        for run_id in ended:
            write_private(self.files(run_id).queue_ended, "ended while waiting in the queue\n")
            wake(self.files(run_id).run_dir / WAKE)
        self.refresh_reasons(inventory, force=bool(ended))

    @staticmethod
    def _stop_requested(s: Session, run_id: str) -> bool:
        run = s.exec(sql_select(Run).where(Run.id == run_id)).first()
        return run is not None and run.stop_requested_at is not None

    def _end_waiting(self, s: Session, run_id: str) -> bool:
        run = s.exec(sql_select(Run).where(Run.id == run_id)).first()
        entry = self.admission.entry(s, run_id)
        if run is None or entry is None or run.status != RunStatus.QUEUED.value or entry.admitted_at:
            return False
        if run.stop_requested_at is None and not self._gave_up(entry, run, now()):
            return False
        if run.stop_requested_at is not None:
            status, reason = RunStatus.STOPPED, "stopped on request while waiting in the queue"
        else:
            options = gpuwrap.options_of((run.options or {}).get("gpuwrap"))
            waited = now() - entry.waiting_since
            status = RunStatus.FAILED
            reason = (
                f"gave up after waiting {waited:.1f} s (gpuwrap retries={options.retries}, "
                f"retry_delay_seconds={options.retry_delay_seconds:g}); last reason: {run.status_reason}"
            )
        done = transition(s, run, status, reason, error=reason if status is RunStatus.FAILED else None)
        self.admission.release(s, run_id)
        if done:
            log.info("%s: %s (%s)", run_id, status.value, reason)
        return done

    def _admit_pool(
        self, s: Session, pool: str, inventory: GpuProbe | None
    ) -> list[tuple[str, tuple[int, ...]]]:
        """Admit this pool's waiting runs in FIFO order until one must wait."""
        out: list[tuple[str, tuple[int, ...]]] = []
        refused: set[str] = set()
        while True:
            # The oldest launched, waiting run of the pool; try_admit checks the holders' lives
            # (once per try: with 200 waiting runs that is the costly part of the write).
            head = s.exec(
                sql_select(QueueEntry)
                .join(Run, col(Run.id) == col(QueueEntry.run_id))
                .where(
                    QueueEntry.pool == pool,
                    col(QueueEntry.admitted_at).is_(None),
                    col(Run.status) == RunStatus.QUEUED.value,
                    col(Run.launched_at).is_not(None),
                    col(QueueEntry.run_id).not_in(refused),
                )
                .order_by(col(QueueEntry.seq))
                .limit(1)
            ).first()
            if head is None:
                return out
            outcome = self.admission.try_admit(s, head.run_id, inventory if pool == POOL_GPU else None)
            run = s.exec(sql_select(Run).where(Run.id == head.run_id)).first()
            if run is None:
                return out
            if outcome.reason == "not in the queue":  # its holder was dead: reclaimed, try the next
                refused.add(run.id)
                continue
            if outcome.impossible:
                reason = f"cannot be admitted: {outcome.reason}"
                transition(s, run, RunStatus.FAILED, reason, error=reason)
                self.admission.release(s, run.id)
                log.info("%s failed: %s", run.id, reason)
                continue
            if not outcome.admitted:
                return out
            reason = f"admitted: {outcome.reason}; starting the command"
            if not transition(s, run, RunStatus.LAUNCHING, reason):
                self.admission.release(s, run.id)
                continue
            log.info("admitted %s: %s", run.id, outcome.reason)
            out.append((run.id, outcome.gpu_indices))

    def refresh_reasons(self, inventory: GpuProbe | None, *, force: bool = False) -> None:
        """Each waiting run's status_reason says what it waits for now (position, holders).

        Worked out from a read snapshot, then written in one short transaction, at most every
        ``REASONS_EVERY_S``: with 200 waiting runs every admission moves every position."""
        t = time.monotonic()
        if not force and t - self._reasons_at < REASONS_EVERY_S:
            return
        self._reasons_at = t
        changes: dict[str, str] = {}
        with self.store.read() as s:
            live, leases = self.admission.live_state(s, reclaim=False)
            gpus = None
            if inventory is not None and inventory.ok:
                gpus = self.admission.assess(s, inventory, leases)
            waiting = [e for e in live if e.admitted_at is None]
            ids = [e.run_id for e in waiting]
            runs = {
                r.id: r
                for r in s.exec(
                    sql_select(Run).where(col(Run.id).in_(ids), col(Run.status) == RunStatus.QUEUED.value)
                ).all()
            } if ids else {}  # fmt: skip
            stamp = now()
            for entry in waiting:
                run = runs.get(entry.run_id)
                if run is None or run.launched_at is None:
                    continue
                unread = None if gpus is not None else "not read"
                snap = Snapshot(entry, live, gpus, unread, self.settings, stamp)
                reason = next((r for gate in GATES if (r := gate(snap))), None)
                if reason is None or (entry.pool == POOL_GPU and gpus is None and "GPU" in reason):
                    continue
                if reason != run.status_reason:
                    changes[run.id] = reason
        if not changes:
            return
        with self.store.write() as s:
            for run_id, reason in changes.items():
                s.execute(
                    update(Run)
                    .where(col(Run.id) == run_id, col(Run.status) == RunStatus.QUEUED.value)
                    .values(status_reason=reason, updated_at=stamp)
                )

    def rewrite_admission(self, run_ids: list[str]) -> None:
        """A dispatcher killed between its commit and writing admission.env: write it now."""
        with self.store.read() as s:
            held = self.admission.leased_gpus(s, run_ids)
        for run_id in run_ids:
            gpuwrap.write_admission_env(self.files(run_id), held.get(run_id, []))
            wake(self.files(run_id).run_dir / WAKE)

    def _start_sidecar(self, run_id: str) -> None:
        try:
            if self._sidecars is None:
                from mcp_server.core.execution.sidecars import SidecarSupervisor
                from mcp_server.core.monitoring.monitor_settings import MonitorSettings

                self._sidecars = SidecarSupervisor(self.state, self.store, MonitorSettings.from_env())
            self._sidecars.ensure([], also=[run_id])
        except Exception:  # the run starts anyway; reconcile restarts a missing sidecar
            log.exception("could not start the sidecar of %s", run_id)

    # ---- the loop ------------------------------------------------------------------------------

    def poll(self) -> bool:
        """One look, and a write when needed; returns whether any run waits."""
        look = self.look()
        if look.to_end or look.pools or look.orphans:
            if look.orphans:
                look.pools |= {POOL_CPU, POOL_GPU}
            self.dispatch(look)
        elif look.waiting:
            self.refresh_reasons(None)
        if look.unwritten:
            self.rewrite_admission(look.unwritten)
        return bool(look.waiting or look.orphans)

    def run_forever(self) -> int:
        wake_fd = _open_wake(self.state.root)
        idle_since = time.monotonic()
        failures = 0
        while True:
            try:
                busy = self.poll()
                failures = 0
            except Exception:  # a locked, busy or full store: wait and look again
                failures += 1
                log.warning("dispatch failed (%d in a row); retrying", failures, exc_info=failures == 1)
                busy = True
            t = time.monotonic()
            if busy:
                idle_since = t
            elif t - idle_since >= IDLE_EXIT_S:
                return 0
            delay = self.settings.queue_poll_s
            if failures:
                delay = min(MAX_BACKOFF_S, delay * 2**failures)
            _nap(wake_fd, delay)


def _open_wake(root: Path) -> int | None:
    path = queue_dir(root) / WAKE
    try:
        if not path.exists():
            os.mkfifo(path, 0o600)
        return os.open(path, os.O_RDWR | os.O_NONBLOCK)
    except OSError:
        return None


def _nap(fd: int | None, seconds: float) -> None:
    """Sleep, or less when someone writes to the wake FIFO (a run ended, a run was queued)."""
    if fd is None:
        time.sleep(seconds)
        return
    ready, _, _ = select.select([fd], [], [], seconds)
    if ready:
        try:
            while os.read(fd, 4096):
                pass
        except BlockingIOError:
            pass


def serve(root: Path) -> int:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s", stream=sys.stderr)
    dispatcher = Dispatcher(StateDir.open(root), Settings.from_env())
    log.info("dispatcher pid %s serving %s", os.getpid(), root)
    try:
        return dispatcher.run_forever()
    finally:
        dispatcher.store.close()
        log.info("dispatcher pid %s exits: the queue is empty", os.getpid())

