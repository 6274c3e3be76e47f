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
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

from mcp_server.core.backends.base import (
    AVAILABLE,
    Backend,
    BackendContext,
    Facts,
    Plan,
    ScriptLines,
    Watcher,
    observe_files,
)
from mcp_server.core.backends.local_queue import LocalQueue
from mcp_server.core.errors import BackendError, InvalidInput
from mcp_server.core.execution.jobfiles import JobFiles
from mcp_server.core.execution.run_status import Observation
from mcp_server.core.scheduling.procs import group_alive, job_lives

if TYPE_CHECKING:
    import libtmux
    from pydantic import BaseModel

    from mcp_server.core.storage.models import Run

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


def _options_model() -> type[BaseModel]:
    from pydantic import BaseModel, ConfigDict, Field

    class GpuwrapOptions(BaseModel):
        model_config = ConfigDict(extra="forbid")

        enabled: bool | None = Field(None, description="default: on if gpus ≥ 1 on local_gpu")
        retries: int | None = Field(None, ge=0, le=1_000_000, description="tries for GPUs; default: no limit")
        retry_delay_seconds: float = Field(10.0, gt=0, le=86400)

    class LocalOptions(BaseModel):
        model_config = ConfigDict(extra="forbid")

        gpuwrap: GpuwrapOptions | None = Field(None, description="local: lease free GPUs")

    return LocalOptions


# How long after the job's process group ended a sidecar waits for the exit code file.
EXIT_CODE_GRACE_S = 2.0


class LocalWatcher(Watcher):
    """The job is a process group on this host: its liveness is one kill(0) per poll."""

    def __init__(self, backend: Backend, files: JobFiles, check_s: float) -> None:
        super().__init__(backend, files, check_s)
        self.pgid: int | None = None
        self.gone_at: float | None = None

    def look(self, run: Any, t: float) -> Observation | None:
        if self.files.exit_code.exists():
            obs = observe_files(self.files, present=None)
            if obs.exit_code is not None:
                return obs
        if self.pgid is None:
            self.pgid = self.files.read_pgid()
        if self.pgid is not None:
            if group_alive(self.pgid):
                self.gone_at = None
                return Observation(present=True, started_at=self.files.started_at())
            if self.gone_at is None:
                self.gone_at = t
            self.pgid = None  # a requeued run gets a new group; read the file again next time
            if t - self.gone_at < EXIT_CODE_GRACE_S:
                return None
        return self.ask(run, t)

    def command_running(self, run: Any) -> bool:
        return self.pgid is not None

    def job_session(self) -> int | None:
        return self.files.read_pgid()


class LocalTmuxBackend(Backend):
    name = "local"
    summary = "a tmux window per run on this machine (GPU leases by gpuwrap)"
    local_processes = True
    idempotent_submit = True  # recovery resubmits only runs tmux never saw (no trace in the run dir)

    def __init__(self, ctx: BackendContext) -> None:
        super().__init__(ctx)
        self.socket = ctx.state.tmux_socket
        self._server: libtmux.Server | None = None
        self.queue = LocalQueue(ctx)

    @property
    def server(self) -> libtmux.Server:
        """libtmux loads with the first tmux call, not with the module: a sidecar watches a run
        through this backend and asks tmux only when the job's process group is gone."""
        if self._server is None:
            import libtmux

            self._server = libtmux.Server(socket_name=self.socket)
        return self._server

    @classmethod
    def affinity(cls, facts: Facts) -> int:
        return AVAILABLE

    @classmethod
    def options_model(cls) -> type[BaseModel]:
        return _options_model()

    @classmethod
    def validate_options(cls, raw: Mapping[str, Any] | None) -> dict[str, Any]:
        from mcp_server.core.scheduling.gpuwrap import parse_options

        raw = dict(raw or {})
        unknown = sorted(set(raw) - {"gpuwrap"})
        if unknown:
            raise InvalidInput(f"unknown option(s) {unknown} for backend 'local'; valid: gpuwrap.")
        wrap = parse_options(raw.get("gpuwrap"))
        return {"gpuwrap": dataclasses.asdict(wrap)} if raw.get("gpuwrap") is not None else {}

    @classmethod
    def options_of_run(cls, options: Mapping[str, Any]) -> dict[str, Any]:
        """The options a run was created with (runs of older releases kept only gpuwrap's record)."""
        if cls.name in options:
            return dict(options[cls.name])
        record = options.get("gpuwrap") or {}
        if not record:
            return {}
        return {"gpuwrap": {"enabled": record.get("requested"), "retries": record.get("retries"),
                            "retry_delay_seconds": record.get("retry_delay_seconds") or 10.0}}  # fmt: skip

    def plan(
        self,
        *,
        cluster_type: str,
        gpus: int,
        options: Mapping[str, Any],
        command: str,
        env: Mapping[str, str],
    ) -> Plan:
        return self.queue.plan(
            cluster_type=cluster_type, gpus=gpus, options=options, command=command, env=env
        )

    def script_lines(self, run: Any, files: JobFiles, pool: str | None) -> ScriptLines:
        return self.queue.script_lines(run, pool)

    def ticket(self, run: Any, pool: str | None) -> Any | None:
        return self.queue.ticket(run, pool)

    def admit(self, session: Any, run: Any, ticket: Any) -> Any:
        return self.queue.admit(session, run, ticket)

    def admitted(self, files: JobFiles, outcome: Any) -> None:
        self.queue.admitted(files, outcome)

    def waiting(self, run_id: str) -> None:
        self.queue.waiting(run_id)

    def watcher(self, files: JobFiles, check_s: float) -> Watcher:
        return LocalWatcher(self, files, check_s)

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

    def observe(self, runs: Sequence[Run], files: Mapping[str, JobFiles]) -> dict[str, Observation]:
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
        if pgid is not None and self._end_group(pgid, files, grace_s):
            return
        # The command never started (or the launch script died): close the window itself. The
        # hang-up ends a launch script still waiting (for a GPU); one already past its wait
        # ignores it and starts the command (the job is its own session: closing the window
        # does not end it), which is then stopped as it appears. Either way the stop returns
        # once the run is no longer live, so its answer says stopped.
        self._tmux("kill-window", "-t", f"={SESSION}:={run.id}")
        deadline = time.monotonic() + 5
        while job_lives(files) and time.monotonic() < deadline:
            pgid = files.read_pgid()
            if pgid is not None:
                self._end_group(pgid, files, grace_s)
                return
            time.sleep(0.02)

    @staticmethod
    def _end_group(pgid: int, files: JobFiles, grace_s: float) -> bool:
        """Signal the job's group (escalating) and wait for the exit code the launch script
        records right after the group ends; False when none came (the script is gone)."""
        escalate(pgid, grace_s)
        deadline = time.monotonic() + 5
        while files.read_exit_code() is None and time.monotonic() < deadline:
            time.sleep(0.02)
        return files.read_exit_code() is not None

    def kill_server(self) -> None:
        self._tmux("kill-server")
