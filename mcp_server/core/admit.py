"""The launch script's side of admission: ``python -m mcp_server.core.admit wait|settle``.

``wait`` runs before each attempt of a run the server could not admit at once: it polls
(``RESEARCH_MCP_QUEUE_POLL_S``) until the run is at the head of its queue and its GPUs
or run slot are free, then writes ``admission.env`` and exits 0. While it waits the run
is ``queued`` and its status_reason says what it waits for and who holds it. Because
every queued run carries its own waiter, the queue moves without any daemon. It gives
up (the run fails with the reason) when gpuwrap's retries are spent, or ends the run
when a stop was requested; then it exits 3 and the launch script ends without running
the command.

``settle`` runs after an attempt failed: it classifies the attempt's output. GPU
contention with retries left requeues the run (exit 75: the launch script waits and
tries again); CUDA out of memory from the run's own allocations, or contention with no
retries left, is written to the run's ``failure`` file so the run fails with that reason.
"""

from __future__ import annotations

import argparse
import contextlib
import logging
import os
import sys
import time
from collections.abc import Sequence

from sqlalchemy import update
from sqlmodel import Session, col, select

from mcp_server.core import gpuwrap
from mcp_server.core.admission import POOL_GPU, Admission
from mcp_server.core.alerts import raise_alert
from mcp_server.core.failures import classify
from mcp_server.core.jobfiles import JobFiles
from mcp_server.core.launch import write_private
from mcp_server.core.lifecycle import TERMINAL, RunStatus
from mcp_server.core.models import Run
from mcp_server.core.paths import StateDir
from mcp_server.core.probes import probe_gpus
from mcp_server.core.reconcile import transition
from mcp_server.core.settings import Settings
from mcp_server.core.store import Store, now

log = logging.getLogger("research_mcp.admit")

TAIL_BYTES = 64 * 1024


class Waiter:
    def __init__(self, state_dir: str, run_id: str) -> None:
        self.state = StateDir.open(state_dir)
        self.settings = Settings.from_env()
        self.store = Store(self.state.db_path)
        self.admission = Admission(self.state, self.settings)
        self.run_id = run_id
        self.files = JobFiles(self.state.run_dir(run_id))

    def _run(self, session: Session) -> Run | None:
        return session.exec(select(Run).where(Run.id == self.run_id)).first()

    def _end(self, session: Session, run: Run, status: RunStatus, reason: str) -> None:
        transition(session, run, status, reason, error=reason if status is RunStatus.FAILED else None)
        self.admission.release(session, run.id)

    # ---- wait ----------------------------------------------------------------------------

    def wait(self) -> int:
        poll = self.settings.queue_poll_s
        while True:
            with self.store.read() as s:
                run = self._run(s)
                pool = (run.options or {}).get("queue") if run else None
                ahead = self.admission.ahead_of(s, self.run_id)
            if run is None or RunStatus(run.status) in TERMINAL or pool is None:
                log.info("run %s is %s; not waiting", self.run_id, run.status if run else "gone")
                return gpuwrap.EXIT_ENDED
            # Only the head of the queue needs the GPU inventory: with many queued runs, one
            # NVML query per poll instead of one per waiting run.
            inventory = probe_gpus(self.settings.probe_timeout_s) if pool == POOL_GPU and not ahead else None
            with self.store.write() as s:
                run = self._run(s)
                if run is None or RunStatus(run.status) in TERMINAL:
                    return gpuwrap.EXIT_ENDED
                if run.stop_requested_at is not None:
                    self._end(s, run, RunStatus.STOPPED, "stopped on request while waiting in the queue")
                    return gpuwrap.EXIT_ENDED
                entry = self.admission.entry(s, run.id)
                if entry is None:  # reclaimed (e.g. the launch took longer than the grace): wait again
                    log.warning("queue entry of %s was missing; queueing it again", run.id)
                    entry = self.admission.enqueue(s, run, pool)
                options = gpuwrap.options_of(run.options.get("gpuwrap"))
                outcome = self.admission.try_admit(s, run.id, inventory)
                if outcome.admitted:
                    reason = f"admitted: {outcome.reason}; starting the command"
                    if not transition(s, run, RunStatus.LAUNCHING, reason):
                        log.warning("run %s is %s, not queued; not starting it", run.id, run.status)
                        self.admission.release(s, run.id)
                        return gpuwrap.EXIT_ENDED
                    gpus = outcome.gpu_indices
                    break
                if outcome.impossible:
                    self._end(s, run, RunStatus.FAILED, f"cannot be admitted: {outcome.reason}")
                    return gpuwrap.EXIT_ENDED
                deadline = gpuwrap.give_up_at(options, entry.waiting_since, entry.contentions)
                if deadline is not None and now() >= deadline:
                    waited = now() - entry.waiting_since
                    self._end(
                        s,
                        run,
                        RunStatus.FAILED,
                        f"gave up after waiting {waited:.1f} s (gpuwrap retries={options.retries}, "
                        f"retry_delay_seconds={options.retry_delay_seconds:g}); "
                        f"last reason: {outcome.reason}",
                    )
                    return gpuwrap.EXIT_ENDED
                if run.status_reason != outcome.reason:
                    s.execute(
                        update(Run)
                        .where(col(Run.id) == run.id, col(Run.status) == RunStatus.QUEUED.value)
                        .values(status_reason=outcome.reason, updated_at=now())
                    )
                    log.info("waiting: %s", outcome.reason)
            time.sleep(poll)
        gpuwrap.write_admission_env(self.files, gpus)
        log.info("admitted %s: %s", self.run_id, outcome.reason)
        return 0

    # ---- settle --------------------------------------------------------------------------

    def _tail(self, offset: int) -> str:
        try:
            with open(self.files.output, "rb") as fh:
                size = fh.seek(0, os.SEEK_END)
                fh.seek(max(offset, size - TAIL_BYTES))
                return fh.read().decode(errors="replace")
        except OSError:
            return ""

    def settle(self, code: int) -> int:
        with self.store.read() as s:
            entry = self.admission.entry(s, self.run_id)
        failure = classify(code, self._tail(entry.output_offset if entry else 0))
        evidence = f" ({failure.lines[-1].strip()[:200]})" if failure.lines else ""
        if failure.kind == "cuda_oom":
            self._note_failure(f"{failure.summary}{evidence}")
        elif failure.kind == "contention":
            return self._contention(failure.summary + evidence)
        with self.store.write() as s:
            self.admission.release(s, self.run_id)
        return 0

    def _note_failure(self, text: str) -> None:
        write_private(self.files.failure, text + "\n")

    def _contention(self, what: str) -> int:
        with self.store.write() as s:
            run = self._run(s)
            entry = self.admission.entry(s, self.run_id)
            if run is None or entry is None or run.stop_requested_at is not None:
                self.admission.release(s, self.run_id)
                return 0
            options = gpuwrap.options_of(run.options.get("gpuwrap"))
            used = entry.contentions + 1
            if options.retries is not None and used > options.retries:
                self._note_failure(f"{what}; no gpuwrap retries left ({options.retries} allowed)")
                self.admission.release(s, self.run_id)
                return 0
            gpus = self.admission.leased_gpus(s, [run.id]).get(run.id, [])
            of = "unlimited" if options.retries is None else str(options.retries)
            reason = (
                f"requeued after GPU contention on GPU {','.join(map(str, gpus)) or '?'} "
                f"(retry {used} of {of}): {what}"
            )
            # The previous attempt's start marker would make the run look running again.
            with contextlib.suppress(FileNotFoundError):
                os.unlink(self.files.pgid)
            with contextlib.suppress(FileNotFoundError):
                os.unlink(self.files.admission_env)
            if not transition(s, run, RunStatus.QUEUED, reason, started_at=None, queued_at=now()):
                self.admission.release(s, self.run_id)
                return 0
            self.admission.requeue(s, entry, options.retry_delay_seconds)
            raise_alert(
                s,
                run_id=run.id,
                kind="contention",
                severity="warning",
                message=f"{run.name} ({run.id}): {reason}",
                signature=f"contention-{used}",
                data={"gpus": gpus, "retry": used, "retries": options.retries},
            )
        log.info("%s", reason)
        return gpuwrap.EXIT_REQUEUED


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m mcp_server.core.admit")
    parser.add_argument("action", choices=["wait", "settle"])
    parser.add_argument("--state-dir", required=True)
    parser.add_argument("--run-id", required=True)
    parser.add_argument("--code", type=int, default=1, help="settle: the attempt's exit code")
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.INFO, format=f"%(asctime)s {args.action} %(levelname)s %(message)s", stream=sys.stdout
    )
    waiter = Waiter(args.state_dir, args.run_id)
    try:
        return waiter.wait() if args.action == "wait" else waiter.settle(args.code)
    finally:
        waiter.store.close()


if __name__ == "__main__":
    raise SystemExit(main())
