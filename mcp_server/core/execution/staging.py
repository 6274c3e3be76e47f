"""New run dirs appear whole, with their rows, or not at all (a kill -9 at any point).

A run's files are written into ``runs/.new-<id>/`` first; the rows (one run, or a sweep
and all its runs) are committed in one transaction; only then is the dir renamed into
place. A dir left in staging by a killed server is renamed when its row exists, else
removed (its ``env.sh`` holds secrets of a run that was never created). Each run dir keeps
``spec.json``: everything its row was made from, so ``doctor --repair`` can rebuild a
lost store, and recovery knows which ready runs were meant to start.

The process creating runs holds a file lock (``locks/<creator>``, named in each
spec) from staging until their launch is done; the kernel drops it when that process
dies. Recovery touches only runs whose creator's lock is free, however slow a live
creator is (a write may wait a minute and more for the store's lock).
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import secrets
import shutil
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from mcp_server.core.execution.jobfiles import JobFiles
from mcp_server.core.execution.launch import write_command, write_private
from mcp_server.core.paths import StateDir
from mcp_server.core.storage.models import Run

SPEC = "spec.json"
STAGING_PREFIX = ".new-"
LOCKS = "locks"
# A staging dir without a spec (killed while writing it) and older than this is abandoned.
ABANDONED_AFTER_S = 10.0
SPEC_FIELDS = (
    "id", "name", "command", "workdir", "sweep_id", "gpus", "params", "env_keys", "options",
    "parent_run_id", "backend", "created_at",
)  # fmt: skip


def staging_dir(state: StateDir, run_id: str, creator: str = "") -> Path:
    """``runs/.new-<creator>.<run id>``: the creator is known even before spec.json is written."""
    return state.runs_dir / f"{STAGING_PREFIX}{creator}.{run_id}"


def _parse(name: str) -> tuple[str, str]:
    """(creator, run id) of a staging dir's name."""
    creator, _, run_id = name[len(STAGING_PREFIX) :].rpartition(".")
    return creator, run_id


class Creator:
    """A held lock that says "these runs are being created by a live process"."""

    def __init__(self, state: StateDir) -> None:
        locks = state.root / LOCKS
        locks.mkdir(mode=0o700, exist_ok=True)
        self.name = f"{os.getpid()}-{secrets.token_hex(4)}"
        self.path = locks / self.name
        self.fd = os.open(self.path, os.O_WRONLY | os.O_CREAT, 0o600)
        fcntl.flock(self.fd, fcntl.LOCK_EX)

    def release(self) -> None:
        if self.fd >= 0:
            with contextlib.suppress(OSError):
                os.unlink(self.path)
            os.close(self.fd)
            self.fd = -1


def creator_alive(state: StateDir, spec: dict[str, Any] | None) -> bool:
    """True while the process that created this run still holds its creator lock."""
    return creator_name_alive(state, (spec or {}).get("creator"))


def creator_name_alive(state: StateDir, name: object) -> bool:
    if not isinstance(name, str) or "/" in name or not name:
        return False
    try:
        fd = os.open(state.root / LOCKS / name, os.O_RDONLY)
    except OSError:
        return False  # released (the create finished) or never made
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        return True
    finally:
        os.close(fd)
    return False


def write_spec(run_dir: Path, run: Run, *, auto_start: bool, creator: str | None = None) -> None:
    spec: dict[str, Any] = {name: getattr(run, name) for name in SPEC_FIELDS}
    spec["auto_start"] = auto_start
    spec["creator"] = creator
    tmp = run_dir / f"{SPEC}.tmp"
    write_private(tmp, json.dumps(spec, indent=1, sort_keys=True) + "\n")
    tmp.replace(run_dir / SPEC)


def read_spec(run_dir: Path) -> dict[str, Any] | None:
    try:
        with open(run_dir / SPEC, "rb") as fh:
            spec = json.loads(fh.read(1 << 20))
    except (OSError, ValueError):
        return None
    return spec if isinstance(spec, dict) and isinstance(spec.get("id"), str) else None


def stage(
    state: StateDir,
    run: Run,
    write_env_file: Callable[[JobFiles], None],
    *,
    auto_start: bool,
    creator: Creator | None = None,
) -> Path:
    """Write a new run's files into its staging dir; returns that dir."""
    staging = staging_dir(state, run.id, creator.name if creator else "")
    staging.mkdir(mode=0o700)
    try:
        files = JobFiles(staging)
        write_command(files, run.command)
        write_env_file(files)
        files.output.touch(mode=0o600)
        files.metrics.touch(mode=0o600)
        write_spec(staging, run, auto_start=auto_start, creator=creator.name if creator else None)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return staging


def place(state: StateDir, run_id: str, path: Path | None = None) -> None:
    """Move a committed run's staging dir into place (idempotent)."""
    for staging in [path] if path else state.runs_dir.glob(f"{STAGING_PREFIX}*.{run_id}"):
        if staging.is_dir() and not (state.runs_dir / run_id).exists():
            os.rename(staging, state.runs_dir / run_id)


def leftovers(state: StateDir) -> list[tuple[str, Path, float, str]]:
    """Staging dirs of this state dir: (run id, path, age in seconds, creator)."""
    out = []
    try:
        entries = list(os.scandir(state.runs_dir))
    except OSError:
        return []
    t = time.time()
    for entry in entries:
        if entry.name.startswith(STAGING_PREFIX) and entry.is_dir(follow_symlinks=False):
            try:
                age = t - entry.stat(follow_symlinks=False).st_mtime
            except OSError:
                continue
            creator, run_id = _parse(entry.name)
            out.append((run_id, Path(entry.path), age, creator))
    return out
