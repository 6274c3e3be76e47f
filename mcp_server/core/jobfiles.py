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
        for path in (self.exit_code, self.pgid):
            with contextlib.suppress(FileNotFoundError):
                os.unlink(path)
