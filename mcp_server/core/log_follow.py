"""``research-mcp logs -f``: print a run's output as it is written, until the run ends.

The follower blocks on the run directory's file events (``core.follow``): a line written
by the job is read and printed within a millisecond or two, and an idle follower sleeps.
The run's status is looked at when a file other than the followed log changes (the
launch script writes ``exit_code`` when the command ends; the sidecar logs what it
settles) and every ``STATUS_S`` in any case, with the cheapest look that settles it:
the run's row, and its backend only when the run can still change.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, TextIO

from mcp_server.core.follow import DirWatch
from mcp_server.core.reconcile import WATCHED

if TYPE_CHECKING:
    from mcp_server.core.services import Services

ENDED = ("finished", "failed", "stopped", "lost")
MIB = 1024 * 1024
STATUS_S = 5.0  # the slowest look at the run's status (a run that ends without a file event)
POLL_S = 0.5  # where file events are not available


def follow(sv: Services, run_id: str, source: str, start: int, out: TextIO, err: TextIO) -> int:
    """Print the log from byte ``start`` on until the run ends; exit code 0 if it finished, else 1."""
    files = sv.runs.files(run_id)
    followed = files.output if source == "output" else files.sidecar_log
    watch = DirWatch([files.run_dir], poll_s=POLL_S)
    pos, said = start, ""
    look_at = 0.0  # when to look at the run's status next (now: at once)
    try:
        while True:
            pos = _drain(sv, run_id, source, pos, out)
            if time.monotonic() >= look_at:
                run = sv.runs.load(run_id)
                if run.status in WATCHED and sv.reconciler.reconcile([run_id]):
                    run = sv.runs.load(run_id)
                if run.status in ENDED:
                    _drain(sv, run_id, source, pos, out)  # what was written before the end
                    code = "" if run.exit_code is None else f", exit code {run.exit_code}"
                    print(f"research-mcp: {run.id} {run.status}{code}: {run.status_reason}", file=err)
                    return 0 if run.status == "finished" else 1
                # Say why nothing is printed yet: a queued run waits for GPUs, a CPU slot or its sweep.
                if run.status != "running" and (news := f"{run.status}: {run.status_reason}") != said:
                    print(f"research-mcp: {run.id} is {news}", file=err, flush=True)
                    said = news
                look_at = time.monotonic() + (STATUS_S if watch.evented else POLL_S)
            changed = watch.wait(max(0.0, look_at - time.monotonic()))
            if changed - {followed}:  # exit_code, the sidecar's log, a queue note: look again
                look_at = 0.0
    finally:
        watch.close()


def _drain(sv: Services, run_id: str, source: str, pos: int, out: TextIO) -> int:
    """Print everything after ``pos``; returns the new position."""
    while True:
        piece = sv.runs.logs(run_id, source=source, offset=pos, length=MIB, max_bytes=MIB)
        if not piece.text:
            return pos
        out.write(piece.text)
        out.flush()
        pos = piece.end_offset
