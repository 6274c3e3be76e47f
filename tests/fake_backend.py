"""A fast backend for service-logic tests (after submitit's DebugExecutor): no tmux, no launch
script, no sidecar.

A run's command runs as a child of the test process (``bash command.sh`` with its env.sh, in its
workdir, output to output.log); a thread waits for it and writes ``exit_code`` the way the launch
script does, so every service above the backend (settling, sweeps and their cap, events, stop,
logs) behaves as it does for real runs, in milliseconds instead of a tmux window and a Python
sidecar per run. What only tmux, launch scripts or sidecars can show stays on the real backends.

Tests register it with the ``fake_backend`` fixture (conftest) and name it: ``backend="fake"``.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import threading
import time
from collections.abc import Mapping, Sequence
from typing import Any, ClassVar

from mcp_server.core.backends.base import ON_REQUEST, Backend, Facts, observe_files
from mcp_server.core.execution.jobfiles import JobFiles
from mcp_server.core.execution.launch import write_private
from mcp_server.core.execution.run_status import Observation

_WRAPPER = 'if [ -f "$RESEARCH_RUN_DIR/env.sh" ]; then . "$RESEARCH_RUN_DIR/env.sh"; fi; exec bash "$1"'


class FakeBackend(Backend):
    name = "fake"
    summary = "the command as a child of this process (tests)"
    monitored = False
    idempotent_submit = False
    # (state dir, run id) → the job's process; shared by every Services of the test process.
    jobs: ClassVar[dict[tuple[str, str], subprocess.Popen[bytes]]] = {}
    # Jobs whose exit code is not written yet. A job is present until then, even once its
    # process has ended: a launch script writes the exit code before its window closes, and a
    # gap here reads as a run that vanished ("lost"), which polling fast enough will hit.
    unsettled: ClassVar[set[tuple[str, str]]] = set()
    _lock = threading.Lock()

    @classmethod
    def affinity(cls, facts: Facts) -> int:
        return ON_REQUEST  # only when a test names it

    def _key(self, run_id: str) -> tuple[str, str]:
        return (str(self.ctx.state.root), run_id)

    def submit(self, run: Any, files: JobFiles) -> str:
        env = {
            **os.environ,
            "RESEARCH_RUN_ID": run.id,
            "RESEARCH_RUN_DIR": str(files.run_dir),
            "RESEARCH_METRICS_FILE": str(files.metrics),
        }
        with open(files.output, "ab") as out:
            proc = subprocess.Popen(
                ["bash", "-c", _WRAPPER, "fake-job", str(files.command)],
                cwd=run.workdir,
                env=env,
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        write_private(files.pgid, f"{proc.pid}\n")  # the "command started" marker
        key = self._key(run.id)
        with self._lock:
            self.jobs[key] = proc
            self.unsettled.add(key)
        threading.Thread(target=self._reap, args=(key, proc, files), daemon=True).start()
        return f"fake:{proc.pid}"

    @classmethod
    def _reap(cls, key: tuple[str, str], proc: subprocess.Popen[bytes], files: JobFiles) -> None:
        code = proc.wait()
        code = 128 - code if code < 0 else code  # killed by a signal: as bash reports it
        tmp = files.run_dir / "exit_code.tmp"
        with contextlib.suppress(OSError):
            write_private(tmp, f"{code}\n")
            tmp.replace(files.exit_code)
        with cls._lock:
            cls.unsettled.discard(key)

    def observe(self, runs: Sequence[Any], files: Mapping[str, JobFiles]) -> dict[str, Observation]:
        out = {}
        for run in runs:
            running = self._key(run.id) in self.unsettled
            out[run.id] = observe_files(files[run.id], present=running or files[run.id].exit_code.exists())
        return out

    def stop(self, run: Any, files: JobFiles, grace_s: float) -> None:
        proc = self.jobs.get(self._key(run.id))
        if proc is None or proc.poll() is not None:
            return
        for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGKILL):
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, sig)
            deadline = time.monotonic() + grace_s
            while proc.poll() is None and time.monotonic() < deadline:
                time.sleep(0.01)
            if proc.poll() is not None:
                break
        deadline = time.monotonic() + 5
        while not files.exit_code.exists() and time.monotonic() < deadline:
            time.sleep(0.005)

    @classmethod
    def kill_all(cls, state_root: str) -> None:
        """End every job a test left running in its state dir."""
        with cls._lock:
            mine = [(k, p) for k, p in cls.jobs.items() if k[0] == state_root]
            for key, _proc in mine:
                del cls.jobs[key]
                cls.unsettled.discard(key)
        for _key, proc in mine:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
