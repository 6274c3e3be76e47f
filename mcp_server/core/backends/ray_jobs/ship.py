"""Runs on a Ray worker that does not share the state dir's filesystem (shipped in the job's
working_dir, run as ``python3 rmcp_ship.py``; standard library only, research-mcp is not there).

It runs the run's launch script from the shipped copy (its run dir is the job's working dir)
and is the only writer of the job's stdout: what the launch script leaves in that run dir —
the command's output, metrics.jsonl, when the command started, its exit code and why it
failed — goes out as one line per frame, ``@@rmcp <kind> <payload>``, which the server side
(``frames.py``) reads back from the job's log into the real run dir. Bytes travel base64-encoded,
so partial lines and any encoding survive. It exits with the launch script's exit code.
"""

from __future__ import annotations

import base64
import os
import signal
import subprocess
import sys
import time

PREFIX = "@@rmcp"
CHUNK = 48 * 1024
POLL_S = 0.5
STREAMS = (("o", "output.log"), ("m", "metrics.jsonl"))


def emit(kind: str, payload: str) -> None:
    sys.stdout.write(f"{PREFIX} {kind} {payload}\n")
    sys.stdout.flush()


def read_small(name: str) -> str | None:
    try:
        with open(name, "rb") as fh:
            return fh.read(4096).decode("utf-8", "replace").strip()
    except OSError:
        return None


class Shipper:
    def __init__(self) -> None:
        self.offsets = {name: 0 for _kind, name in STREAMS}
        self.started = False

    def forward(self) -> None:
        if not self.started and os.path.exists("pgid"):
            self.started = True
            emit("s", repr(os.stat("pgid").st_mtime))
        for kind, name in STREAMS:
            try:
                with open(name, "rb") as fh:
                    fh.seek(self.offsets[name])
                    while chunk := fh.read(CHUNK):
                        emit(kind, base64.b64encode(chunk).decode("ascii"))
                        self.offsets[name] += len(chunk)
            except FileNotFoundError:
                continue

    def finish(self, code: int) -> None:
        self.forward()
        for kind, name in (("f", "failure"), ("l", "leftovers")):
            note = read_small(name)
            if note:
                emit(kind, base64.b64encode(note.encode()).decode("ascii"))
        recorded = read_small("exit_code")
        emit("x", recorded if recorded and recorded.isdigit() else str(code))


def main() -> int:
    emit("h", str(os.getpid()))
    launch = subprocess.Popen(
        ["bash", "launch.sh"], stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )

    def stop(signum: int, _frame: object) -> None:  # Ray's stop_job: pass it on, the script records the end
        launch.send_signal(signum)

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    shipper = Shipper()
    while launch.poll() is None:
        shipper.forward()
        time.sleep(POLL_S)
    code = launch.returncode if launch.returncode >= 0 else 128 - launch.returncode
    shipper.finish(code)
    return code


if __name__ == "__main__":
    raise SystemExit(main())
