"""The launch script's side of a GPU attempt: ``python -m mcp_server.core.scheduling.gpu_attempt settle``.

(Waiting for admission needs no Python process: see ``core.scheduling.dispatch``.)

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
from collections.abc import Sequence

from sqlmodel import Session, select

from mcp_server.core.execution.jobfiles import JobFiles
from mcp_server.core.execution.launch import write_private
from mcp_server.core.execution.reconcile import transition
from mcp_server.core.execution.run_status import RunStatus
from mcp_server.core.monitoring.alerts import raise_alert
from mcp_server.core.monitoring.failures import classify
from mcp_server.core.paths import StateDir
from mcp_server.core.scheduling import gpuwrap
from mcp_server.core.scheduling.admission import Admission
from mcp_server.core.settings import Settings
from mcp_server.core.storage.models import Run
from mcp_server.core.storage.store import Store, now

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
    parser = argparse.ArgumentParser(prog="python -m mcp_server.core.scheduling.gpu_attempt")
    parser.add_argument("action", choices=["settle"])
    parser.add_argument("--state-dir", required=True)
    parser.add_argument("--run-id", required=True)
    parser.add_argument("--code", type=int, default=1, help="settle: the attempt's exit code")
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.INFO, format=f"%(asctime)s {args.action} %(levelname)s %(message)s", stream=sys.stdout
    )
    waiter = Waiter(args.state_dir, args.run_id)
    try:
        return waiter.settle(args.code)
    finally:
        waiter.store.close()


if __name__ == "__main__":
    raise SystemExit(main())
