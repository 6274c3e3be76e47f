"""Reading a shipped job's files back from its Ray log into the run dir (see ``ship.py``).

The job's log is the only channel from a worker that does not share the state dir's
filesystem. Its frames are replayed in order: the output and metrics.jsonl are rebuilt byte
for byte and only what the run dir lacks is appended (so the sidecar's offsets stay valid);
the start time, the failure note, the leftovers note and the exit code are written the way
the launch script writes them (the exit code last, atomically), so everything above the
backend reads a shipped run exactly like a local one.
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import os
from dataclasses import dataclass, field

from mcp_server.core.execution.jobfiles import JobFiles
from mcp_server.core.execution.launch import write_private

PREFIX = "@@rmcp "
STARTED = "ray.started"  # when the shipped command started (the launch script's pgid time there)


@dataclass
class Shipped:
    """What a shipped job's log says so far."""

    hello: bool = False
    output: bytearray = field(default_factory=bytearray)
    metrics: bytearray = field(default_factory=bytearray)
    started_at: float | None = None
    failure: str | None = None
    leftovers: str | None = None
    exit_code: int | None = None


def parse(log: str) -> Shipped:
    out = Shipped()
    for line in log.splitlines():
        if not line.startswith(PREFIX):
            continue  # Ray's own lines ("Runtime env is setting up.", ...)
        kind, _, payload = line[len(PREFIX) :].partition(" ")
        try:
            if kind == "h":
                out.hello = True
            elif kind == "o":
                out.output += base64.b64decode(payload, validate=True)
            elif kind == "m":
                out.metrics += base64.b64decode(payload, validate=True)
            elif kind == "s":
                out.started_at = float(payload)
            elif kind == "f":
                out.failure = base64.b64decode(payload, validate=True).decode("utf-8", "replace")
            elif kind == "l":
                out.leftovers = base64.b64decode(payload, validate=True).decode("utf-8", "replace")
            elif kind == "x" and payload.strip().isdigit() and int(payload) <= 255:
                out.exit_code = int(payload)
        except (binascii.Error, ValueError):
            continue  # a torn frame (the log was cut): the next sync reads it whole
    return out


def _append_missing(path: os.PathLike[str], data: bytes) -> None:
    """Append what ``path`` lacks of ``data`` (the file is a prefix of it: only appends happen)."""
    try:
        have = os.path.getsize(path)
    except FileNotFoundError:
        have = 0
    if len(data) > have:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
        with os.fdopen(fd, "ab") as fh:
            fh.write(data[have:])


def apply(shipped: Shipped, files: JobFiles) -> None:
    """Bring the run dir up to what the log says (idempotent: safe to call on every look)."""
    _append_missing(files.output, bytes(shipped.output))
    _append_missing(files.metrics, bytes(shipped.metrics))
    started = files.run_dir / STARTED
    if shipped.started_at is not None and not started.exists():
        write_private(started, f"{shipped.started_at!r}\n")
    if shipped.exit_code is None or files.exit_code.exists():
        return
    if shipped.failure:
        write_private(files.failure, shipped.failure + "\n")
    if shipped.leftovers:
        write_private(files.leftovers, shipped.leftovers + "\n")
    tmp = files.run_dir / "exit_code.tmp"
    write_private(tmp, f"{shipped.exit_code}\n")
    tmp.replace(files.exit_code)


def started_at(files: JobFiles) -> float | None:
    with contextlib.suppress(OSError, ValueError):
        return float((files.run_dir / STARTED).read_text().strip())
    return None
