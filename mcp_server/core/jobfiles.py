"""The files of one run's directory, named in one place.

Backends, reconcile, the sidecar and the log tools all agree on these names; the launch
script writes ``pgid`` when the user's command starts and ``exit_code`` (atomically, via
rename) when it ends, which is how a run's end is known without watching the process.
"""

from __future__ import annotations

import contextlib
import os
from dataclasses import dataclass
from pathlib import Path


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
    def queue_log(self) -> Path:
        """What the launch script's waiter did: waiting, admission, requeues."""
        return self.run_dir / "queue.log"

    def read_launcher_pid(self) -> int | None:
        try:
            value = int(self.launcher_pid.read_text().strip())
        except (FileNotFoundError, ValueError):
            return None
        return value if value > 1 else None

    def read_failure(self) -> str | None:
        try:
            return self.failure.read_text().strip() or None
        except FileNotFoundError:
            return None

    def read_stop_note(self) -> str | None:
        try:
            with open(self.stop_note, errors="replace") as fh:
                return fh.read(1024).strip() or None
        except (FileNotFoundError, IsADirectoryError):
            return None

    def read_exit_code(self) -> int | None:
        try:
            raw = self.exit_code.read_text().strip()
        except FileNotFoundError:
            return None
        try:
            return int(raw)
        except ValueError:
            return None  # a torn or foreign file: not an ending we can trust

    def read_pgid(self) -> int | None:
        try:
            value = int(self.pgid.read_text().strip())
        except (FileNotFoundError, ValueError):
            return None
        return value if value > 1 else None

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
        outcome = (self.exit_code, self.pgid, self.failure, self.launcher_pid, self.admission_env)
        for path in (*outcome, self.stop_note):
            with contextlib.suppress(FileNotFoundError):
                os.unlink(path)
