"""``research-mcp logs -f``: print a run's output as it is written, until the run ends.

The follower blocks on the run directory's file events (``core.execution.follow``): a line written
by the job is read and printed within a millisecond or two, and an idle follower sleeps.
The run's status is looked at when a file other than the followed log changes (the
launch script writes ``exit_code`` when the command ends; the sidecar logs what it
settles) and every ``STATUS_S`` in any case, with the cheapest look that settles it:
the run's row in plain SQL, and its backend only when the run can still change. The log
itself is read straight from its file (the path checked once), so a line costs a read.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import TYPE_CHECKING, TextIO

from mcp_server.core.execution.follow import DirWatch
from mcp_server.core.execution.logs import read_window
from mcp_server.core.execution.reconcile import WATCHED

if TYPE_CHECKING:
    from mcp_server.core.services import Services

ENDED = ("finished", "failed", "stopped", "lost")
MIB = 1024 * 1024
STATUS_S = 5.0  # the slowest look at the run's status (a run that ends without a file event)
POLL_S = 0.5  # where file events are not available


def follow(sv: Services, run_id: str, source: str, start: int, out: TextIO, err: TextIO) -> int:
    """Print the log from byte ``start`` on until the run ends; exit code 0 if it finished, else 1."""
    files = sv.runs.files(run_id)
    followed = sv.state.inside(files.output if source == "output" else files.sidecar_log)
    watch = DirWatch([files.run_dir], poll_s=POLL_S)
    pos, said = start, ""
    look_at = 0.0  # when to look at the run's status next (now: at once)
    try:
        while True:
            pos = _drain(followed, pos, out)
            if time.monotonic() >= look_at:
                status, reason, exit_code = _status(sv, run_id)
                if status in ENDED:
                    _drain(followed, pos, out)  # what was written before the end
                    code = "" if exit_code is None else f", exit code {exit_code}"
                    print(f"research-mcp: {run_id} {status}{code}: {reason}", file=err)
                    return 0 if status == "finished" else 1
                # Say why nothing is printed yet: a queued run waits for GPUs, a CPU slot or its sweep.
                if status != "running" and (news := f"{status}: {reason}") != said:
                    print(f"research-mcp: {run_id} is {news}", file=err, flush=True)
                    said = news
                look_at = time.monotonic() + (STATUS_S if watch.evented else POLL_S)
            changed = watch.wait(max(0.0, look_at - time.monotonic()))
            if changed - {followed}:  # exit_code, the sidecar's log, a queue note: look again
                look_at = 0.0
    finally:
        watch.close()


def _status(sv: Services, run_id: str) -> tuple[str, str, int | None]:
    """The run's status, settled first when it can still change."""
    sql = "SELECT status, status_reason, exit_code FROM runs WHERE id = ?"
    with sv.store.sql.snapshot() as conn:
        status, reason, code = conn.execute(sql, (run_id,)).fetchone()
    if status in WATCHED and sv.reconciler.reconcile([run_id]):
        with sv.store.sql.snapshot() as conn:
            status, reason, code = conn.execute(sql, (run_id,)).fetchone()
    return status, reason, code


def _drain(path: Path, pos: int, out: TextIO) -> int:
    """Print everything after ``pos``; returns the new position."""
    while True:
        piece = read_window(path, pos, MIB)
        if not piece.text:
            return pos
        out.write(piece.text)
        out.flush()
        pos = piece.end
