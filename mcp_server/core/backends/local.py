"""Local backend: one tmux window per run on a private tmux server per state dir.

tmux owns the job, so the job outlives the MCP server, the sidecar and the agent; a
human can ``tmux -L <socket> attach`` to watch it. Every tmux call goes through libtmux's
command runner (one ``tmux`` process per call, no object refreshes).
"""

from __future__ import annotations

import dataclasses
import os
import shlex
import signal
import subprocess
import time
from collections.abc import Sequence
from typing import TYPE_CHECKING

import libtmux

from mcp_server.core.backends.base import Backend, observe_files
from mcp_server.core.errors import BackendError
from mcp_server.core.jobfiles import JobFiles
from mcp_server.core.lifecycle import Observation
from mcp_server.core.paths import StateDir
from mcp_server.core.procs import group_alive, job_lives

if TYPE_CHECKING:
    from mcp_server.core.models import Run

__all__ = ["LocalTmuxBackend", "escalate", "group_alive"]

SESSION = "research"
PRIVATE_VARS = ("RESEARCH_MCP_TOKEN",)
_NO_SERVER_MARKERS = ("no server running", "error connecting", "can't find session", "No such file")


def _wait_gone(pgid: int, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while True:
        if not group_alive(pgid):
            return True
        if time.monotonic() >= deadline:
            return False
        time.sleep(0.05)


def escalate(pgid: int, grace_s: float) -> str:
    """SIGINT, then SIGTERM, then SIGKILL to the process group; returns the signal that ended it."""
    if pgid <= 1 or pgid == os.getpgid(0):
        raise BackendError(f"refusing to signal process group {pgid}: it is not a job's group")
    for sig, wait in ((signal.SIGINT, grace_s), (signal.SIGTERM, grace_s), (signal.SIGKILL, 10.0)):
        try:
            os.killpg(pgid, sig)
        except ProcessLookupError:
            return "already gone"
        if _wait_gone(pgid, wait):
            return sig.name
    raise BackendError(f"process group {pgid} survived SIGKILL for 10 s; check `ps -g {pgid}`.")


class LocalTmuxBackend(Backend):
    name = "local"

    def __init__(self, state: StateDir) -> None:
        self.socket = state.tmux_socket
        self.server = libtmux.Server(socket_name=self.socket)

    def _tmux(self, *args: str) -> libtmux.common.tmux_cmd:
        return self.server.cmd(*args)

    def _ensure_session(self, cwd: str) -> None:
        if self._tmux("has-session", "-t", f"={SESSION}").returncode == 0:
            return
        # The tmux server (and its home window's shell) take the environment of the client
        # that starts them: ours without our own secrets, so no job or pane ever sees them.
        env = {k: v for k, v in os.environ.items() if k not in PRIVATE_VARS}
        res = subprocess.run(
            ["tmux", "-L", self.socket, "new-session", "-d", "-s", SESSION, "-n", "home", "-c", cwd],
            env=env, capture_output=True, text=True, check=False,
        )  # fmt: skip
        if res.returncode != 0 and "duplicate session" not in res.stderr:
            raise BackendError(f"could not start tmux server {self.socket!r}: {res.stderr.strip()}")
        for var in PRIVATE_VARS:  # a server started by an older version may still hold them
            self._tmux("set-environment", "-g", "-u", var)

    def planned_ref(self, run: Run) -> str | None:
        return f"tmux -L {self.socket} {SESSION}:{run.id}"

    def submit(self, run: Run, files: JobFiles) -> str:
        # One tmux call per launch: the session is made only when the window cannot be opened
        # without it (a burst of launches then costs one tmux process each, not two).
        argv = (
            "new-window", "-d", "-t", f"={SESSION}:", "-n", run.id, "-c", run.workdir,
            f"bash {shlex.quote(str(files.launch))}",
        )  # fmt: skip
        res = self._tmux(*argv)
        if res.returncode != 0 and any(m in line for line in res.stderr for m in _NO_SERVER_MARKERS):
            self._ensure_session(run.workdir)
            res = self._tmux(*argv)
        if res.returncode != 0:
            raise BackendError(f"tmux refused to open a window for {run.id}: {' '.join(res.stderr)}")
        return f"tmux -L {self.socket} {SESSION}:{run.id}"

    def window_names(self) -> set[str] | None:
        """Names of live windows; empty when no tmux server runs; None when tmux failed oddly."""
        res = self._tmux("list-windows", "-t", f"={SESSION}", "-F", "#{window_name}")
        if res.returncode == 0:
            return set(res.stdout)
        if any(marker in line for line in res.stderr for marker in _NO_SERVER_MARKERS):
            return set()
        return None

    def observe(self, runs: Sequence[Run], files: dict[str, JobFiles]) -> dict[str, Observation]:
        # A run whose files settle it (an exit code, a job that lives, or a lost run that only an
        # exit code can bring back) costs no tmux process: list_runs and every run query look.
        # For the others, windows first, files second: a job that ends between the two reads
        # is then seen with its exit code, never as a vanished window without one.
        names: set[str] | None = None
        asked = False
        out: dict[str, Observation] = {}
        for run in runs:
            f = files[run.id]
            lives = job_lives(f)
            if lives or run.status == "lost" or f.read_exit_code() is not None:
                out[run.id] = observe_files(f, True if lives else None)
                continue
            if not asked:
                names, asked = self.window_names(), True
            present = None if names is None else run.id in names
            detail = ""
            # The job is its own session, so it outlives its window and the tmux server
            # (killed, or its socket removed by a /tmp cleaner), and so does its launch
            # script: losing a run whose job lives would free its GPUs.
            if present is not True and job_lives(f):
                present = True
            elif present is False:
                pgid = f.read_pgid()
                detail = "tmux window is gone" + (" and the job has ended" if pgid is not None else "")
            obs = observe_files(f, present, detail)
            # No handle kept yet and no trace of a job: a launch interrupted before tmux had it.
            unsubmitted = not (f.run_dir / "backend_ref").exists()
            out[run.id] = dataclasses.replace(obs, unsubmitted=unsubmitted)
        return out

    def stop(self, run: Run, files: JobFiles, grace_s: float) -> None:
        if files.read_exit_code() is not None:
            return
        pgid = files.read_pgid()
        if pgid is not None:
            escalate(pgid, grace_s)
            # The launch script records the exit code right after the group ends.
            deadline = time.monotonic() + 5
            while files.read_exit_code() is None and time.monotonic() < deadline:
                time.sleep(0.02)
            if files.read_exit_code() is not None:
                return
        # The command never started (or the launch script died): close the window itself.
        self._tmux("kill-window", "-t", f"={SESSION}:={run.id}")
        # It may have started between the pgid read and the kill: the job is in its own
        # session, so closing the window would not end it.
        pgid = files.read_pgid()
        if pgid is not None and group_alive(pgid):
            escalate(pgid, grace_s)

    def kill_server(self) -> None:
        self._tmux("kill-server")
