"""The files of one run's directory, named in one place.

Backends, reconcile, the sidecar and the log tools all agree on these names; the launch
script writes ``pgid`` when the user's command starts and ``exit_code`` (atomically, via
rename) when it ends, which is how a run's end is known without watching the process.

The job runs with ``RESEARCH_RUN_DIR`` pointing here, so every file in the run dir is
untrusted input: a job may replace ``exit_code`` by a directory, a FIFO, a 20-digit
number or a gigabyte of garbage. Readers open without following a FIFO into a hang, read
a few bytes at most and treat anything that is not what the launch script writes as
malformed: that run is affected (with a reason naming the file), no other.
"""

from __future__ import annotations

import contextlib
import os
import stat
from dataclasses import dataclass
from pathlib import Path

# The launch script writes a shell exit status (0-255); pids on Linux stay below 2**22.
EXIT_CODE_MAX = 255
PID_MAX = 1 << 22
SMALL_FILE_BYTES = 64
FAILURE_NOTE_BYTES = 4096


class Malformed(ValueError):
    """A run file exists but does not hold what the launch script writes; ``str()`` says what."""


def read_small(path: Path, limit: int = SMALL_FILE_BYTES) -> str | None:
    """At most ``limit`` bytes of a regular file as text; None when it does not exist.

    Raises ``Malformed`` for a directory, FIFO, socket or device in its place (opened
    non-blocking, so a FIFO never hangs the reader).
    """
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_NOCTTY)
    except FileNotFoundError:
        return None
    except IsADirectoryError:
        raise Malformed(f"{path.name} is a directory, not a file") from None
    except OSError as err:
        raise Malformed(f"{path.name} cannot be read ({err.strerror})") from None
    try:
        mode = os.fstat(fd).st_mode
        if not stat.S_ISREG(mode):
            raise Malformed(f"{path.name} is not a regular file ({_kind(mode)})")
        return os.read(fd, limit).decode("utf-8", errors="replace")
    except OSError as err:
        raise Malformed(f"{path.name} cannot be read ({err.strerror})") from None
    finally:
        os.close(fd)


def _kind(mode: int) -> str:
    for test, name in (
        (stat.S_ISDIR, "a directory"),
        (stat.S_ISFIFO, "a FIFO"),
        (stat.S_ISSOCK, "a socket"),
        (stat.S_ISCHR, "a character device"),
        (stat.S_ISBLK, "a block device"),
    ):
        if test(mode):
            return name
    return "not a regular file"


def parse_int(path: Path, raw: str, lo: int, hi: int) -> int:
    text = raw.strip()
    shown = text[:24] + ("…" if len(text) > 24 else "")
    try:
        value = int(text)
    except ValueError:
        raise Malformed(f"{path.name} holds {shown!r}, not a whole number") from None
    if not lo <= value <= hi:
        raise Malformed(f"{path.name} holds {shown}, outside {lo}..{hi}")
    return value


@dataclass(frozen=True)
class JobFiles:
    run_dir: Path

    @property
    def launch(self) -> Path:
        return self.run_dir / "launch.sh"

    @property
    def command(self) -> Path:
        return self.run_dir / "command.sh"

    @property
    def env(self) -> Path:
        return self.run_dir / "env.sh"

    @property
    def output(self) -> Path:
        return self.run_dir / "output.log"

    @property
    def metrics(self) -> Path:
        return self.run_dir / "metrics.jsonl"

    @property
    def exit_code(self) -> Path:
        return self.run_dir / "exit_code"

    @property
    def pgid(self) -> Path:
        return self.run_dir / "pgid"

    @property
    def sidecar_log(self) -> Path:
        return self.run_dir / "sidecar.log"

    @property
    def launcher_pid(self) -> Path:
        """Pid of the launch script of a run that waits in the queue (the holder of its lease)."""
        return self.run_dir / "launcher.pid"

    @property
    def admission_env(self) -> Path:
        """Written when the run is admitted (GPU lease or run slot); sourced by the launch script."""
        return self.run_dir / "admission.env"

    @property
    def failure(self) -> Path:
        """Why the command failed, in words, written before ``exit_code`` (e.g. CUDA out of memory)."""
        return self.run_dir / "failure"

    @property
    def stop_note(self) -> Path:
        """Why the run is being stopped, when not by stop_run (a sweep's pruner); written before
        the stop request, so whoever records the ending also says why."""
        return self.run_dir / "stop_reason"

    @property
    def queue_ended(self) -> Path:
        """Written by the dispatcher when the run ended while queued (stopped, gave up)."""
        return self.run_dir / "queue.ended"

    @property
    def wake(self) -> Path:
        """A FIFO the waiting launch script blocks on; the dispatcher writes to it on admission."""
        return self.run_dir / "wake"

    @property
    def leftovers(self) -> Path:
        """Written by the launch script when the command left background processes behind."""
        return self.run_dir / "leftovers"

    @property
    def queue_log(self) -> Path:
        """What the launch script's waiter did: waiting, admission, requeues."""
        return self.run_dir / "queue.log"

    def _read_pid(self, path: Path) -> int | None:
        try:
            raw = read_small(path)
            return None if raw is None else parse_int(path, raw, 2, PID_MAX)
        except Malformed:
            return None  # torn or foreign: no process we may signal or trust

    def read_launcher_pid(self) -> int | None:
        return self._read_pid(self.launcher_pid)

    def read_failure(self) -> str | None:
        try:
            raw = read_small(self.failure, FAILURE_NOTE_BYTES)
        except Malformed:
            return None
        return (raw or "").strip() or None

    def read_leftovers(self) -> str | None:
        try:
            raw = read_small(self.leftovers, 1024)
        except Malformed:
            return None
        return (raw or "").strip() or None

    def read_stop_note(self) -> str | None:
        try:
            raw = read_small(self.stop_note, 1024)
        except Malformed:
            return None
        return (raw or "").strip() or None

    def read_exit_code(self) -> int | None:
        """The command's exit status, or None when there is none (yet) or it is malformed."""
        try:
            return self.exit_code_or_problem()[0]
        except Malformed:
            return None

    def exit_code_or_problem(self) -> tuple[int | None, str | None]:
        """``(code, None)``, ``(None, None)`` while there is no file, ``(None, why)`` when it is malformed."""
        try:
            raw = read_small(self.exit_code)
            if raw is None:
                return None, None
            return parse_int(self.exit_code, raw, 0, EXIT_CODE_MAX), None
        except Malformed as err:
            return None, str(err)

    def read_pgid(self) -> int | None:
        return self._read_pid(self.pgid)

    def started_at(self) -> float | None:
        """When the user's command started: the launch script writes ``pgid`` just before it."""
        try:
            return self.pgid.stat().st_mtime
        except FileNotFoundError:
            return None

    def ended_at(self) -> float | None:
        try:
            return self.exit_code.stat().st_mtime
        except FileNotFoundError:
            return None

    def clear_outcome(self) -> None:
        for path in (
            self.exit_code, self.pgid, self.failure, self.launcher_pid, self.admission_env, self.queue_ended,
            self.leftovers, self.stop_note,
        ):  # fmt: skip
            with contextlib.suppress(FileNotFoundError):
                if os.path.isdir(path) and not os.path.islink(path):
                    set_aside(path)  # a job's directory: keep it, out of the way
                else:
                    os.unlink(path)


def set_aside(path: Path) -> Path:
    """Rename a bad file or directory out of the way (never delete what a job made)."""
    n = 0
    while True:
        target = path.with_name(f"{path.name}.invalid" + (f".{n}" if n else ""))
        if not os.path.lexists(target):
            os.rename(path, target)
            return target
        n += 1
