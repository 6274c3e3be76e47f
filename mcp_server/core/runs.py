"""Runs: create, start, stop, rerun, list, get and read logs.

Every entry point validates all of its input before it writes anything, so a rejected
call leaves the store and the state dir as they were.
"""

from __future__ import annotations

import json
import logging
import os
import re
import shutil
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any, Protocol

from sqlalchemy import delete, update
from sqlmodel import col, select

from mcp_server.core import run_list
from mcp_server.core.admission import POOL_GPU, Admission
from mcp_server.core.backends.registry import BACKEND_NAMES, Backends
from mcp_server.core.cluster import ClusterService
from mcp_server.core.errors import Conflict, InvalidInput, NotFound, ResearchError
from mcp_server.core.gpuwrap import (
    GpuwrapOptions,
    Plan,
    options_of,
    parse_options,
    plan_admission,
    write_admission_env,
)
from mcp_server.core.gpuwrap import post_lines as gpuwrap_post_lines
from mcp_server.core.gpuwrap import pre_lines as gpuwrap_pre_lines
from mcp_server.core.ids import new_id, validate_env_key, validate_id, validate_name
from mcp_server.core.jobfiles import JobFiles
from mcp_server.core.launch import render_launch_script, write_command, write_env, write_launch_script
from mcp_server.core.lifecycle import TERMINAL, RunStatus
from mcp_server.core.logs import read_window, tail_lines
from mcp_server.core.models import Event, Run
from mcp_server.core.paths import StateDir
from mcp_server.core.probes import GpuProbe, probe_gpus
from mcp_server.core.reconcile import WATCHED, Reconciler, transition
from mcp_server.core.settings import Settings
from mcp_server.core.store import Store, now
from mcp_server.core.views import LogChunk, RunDetail, RunPage, RunRecord, RunRow, iso

log = logging.getLogger(__name__)

MAX_COMMAND_CHARS = 64 * 1024
MAX_GPUS = 64
MAX_PARAMS_BYTES = 64 * 1024
MAX_ENV_VALUE_CHARS = 32 * 1024
MAX_LOG_LINES = 5000
MAX_LOG_BYTES = 1024 * 1024
MAX_PAGE = 500
STATUS_CHOICES = ", ".join(s.value for s in RunStatus)


def to_row(run: Run, leased: list[int] | None = None) -> RunRow:
    duration = None
    if run.started_at is not None:
        duration = round((run.ended_at or time.time()) - run.started_at, 3)
    return RunRow(
        id=run.id,
        name=run.name,
        status=run.status,
        status_reason=run.status_reason,
        exit_code=run.exit_code,
        backend=run.backend,
        gpus=run.gpus,
        leased_gpus=leased,
        sweep_id=run.sweep_id,
        created_at=iso(run.created_at) or "",
        started_at=iso(run.started_at),
        ended_at=iso(run.ended_at),
        duration_s=duration,
    )


def to_record(run: Run, run_dir: Path, leased: list[int] | None = None) -> RunRecord:
    return RunRecord(
        **to_row(run, leased).model_dump(),
        command=run.command,
        workdir=run.workdir,
        params=run.params,
        env_keys=run.env_keys,
        options=run.options,
        error=run.error,
        parent_run_id=run.parent_run_id,
        backend_ref=run.backend_ref,
        run_dir=str(run_dir),
        stop_requested_at=iso(run.stop_requested_at),
    )


def launch_reason(backend: str) -> str:
    return f"submitting to the {backend} backend"


def _validate_command(command: str) -> str:
    if not isinstance(command, str) or not command.strip():
        raise InvalidInput(
            "command is empty: give the shell command to run, e.g. 'python train.py --lr 0.1'."
        )
    if len(command) > MAX_COMMAND_CHARS:
        raise InvalidInput(
            f"command is {len(command)} characters; the limit is {MAX_COMMAND_CHARS}. Put it in a script."
        )
    if "\x00" in command:
        raise InvalidInput("command contains a NUL byte; remove it.")
    return command


def validate_run_slurm(backend: str, slurm: Mapping[str, Any]) -> dict[str, Any]:
    """Slurm options as asked for with ``backend`` (before it is resolved: 'auto' may be Slurm)."""
    if backend == "local":
        raise InvalidInput("slurm options need backend 'slurm' (or 'auto' on a Slurm cluster), not 'local'.")
    from mcp_server.core.backends.slurm import validate_slurm_options  # Slurm helpers load only when used

    return validate_slurm_options(slurm)


def _validate_workdir(workdir: str | None) -> str:
    path = Path(workdir).expanduser() if workdir else Path.cwd()
    if "\x00" in str(path):
        raise InvalidInput("workdir contains a NUL byte.")
    path = path.absolute()
    if not path.exists():
        raise InvalidInput(
            f"workdir {str(path)!r} does not exist; give an existing directory (default: the server's cwd)."
        )
    if not path.is_dir():
        raise InvalidInput(f"workdir {str(path)!r} is not a directory.")
    if not os.access(path, os.R_OK | os.X_OK):
        raise InvalidInput(f"workdir {str(path)!r} is not accessible (needs read and execute permission).")
    return str(path)


def _validate_env(env: Mapping[str, str] | None) -> dict[str, str]:
    out: dict[str, str] = {}
    for key, value in (env or {}).items():
        validate_env_key(key)
        if key.startswith("RESEARCH_"):
            raise InvalidInput(f"env key {key!r} is reserved: research-mcp sets RESEARCH_* variables itself.")
        if not isinstance(value, str):
            raise InvalidInput(f"env value for {key!r} must be a string.")
        if "\x00" in value or len(value) > MAX_ENV_VALUE_CHARS:
            raise InvalidInput(f"env value for {key!r} is too long or contains a NUL byte.")
        out[key] = value
    return out


def _validate_params(params: Mapping[str, Any] | None) -> dict[str, Any]:
    if not params:
        return {}
    try:
        encoded = json.dumps(params, allow_nan=False)
    except (TypeError, ValueError) as err:
        raise InvalidInput(
            f"params must be JSON (strings, numbers, booleans, lists, objects): {err}."
        ) from None
    if len(encoded) > MAX_PARAMS_BYTES:
        raise InvalidInput(f"params are {len(encoded)} bytes as JSON; the limit is {MAX_PARAMS_BYTES}.")
    return dict(params)


def _validate_gpus(gpus: int) -> int:
    if not isinstance(gpus, int) or isinstance(gpus, bool) or not 0 <= gpus <= MAX_GPUS:
        raise InvalidInput(f"gpus={gpus!r} is out of range; give a whole number from 0 to {MAX_GPUS}.")
    return gpus


class SweepGate(Protocol):
    """What runs need from sweeps: membership checks and the ``parallel`` cap (core.sweeps)."""

    def check_accepts(self, sweep_id: str, *, new_run: bool) -> None: ...

    def admit(self, run: Run) -> None: ...


class RunService:
    def __init__(
        self,
        state: StateDir,
        store: Store,
        backends: Backends,
        reconciler: Reconciler,
        settings: Settings,
        cluster: ClusterService,
        admission: Admission,
    ) -> None:
        self.state = state
        self.store = store
        self.backends = backends
        self.reconciler = reconciler
        self.settings = settings
        self.cluster = cluster
        self.admission = admission
        # Set by Services: runs of a sweep are launched through it so its parallel cap holds.
        self.sweeps: SweepGate | None = None
        # Called with a run right after its backend accepted it (the sidecar starts here).
        self.after_launch: list[Callable[[Run], None]] = []
        # Called by get() to add what other services know (metrics, alerts, monitor).
        self.detail_extras: list[Callable[[RunDetail], None]] = []

    # ---- lookups -------------------------------------------------------------------------

    def files(self, run_id: str) -> JobFiles:
        return JobFiles(self.state.run_dir(run_id))

    def load(self, run_id: str) -> Run:
        validate_id(run_id, "run", "run_id")
        with self.store.read() as s:
            run = s.exec(select(Run).where(Run.id == run_id)).first()
        if run is None:
            raise NotFound(f"no run with id {run_id!r}; use list_runs to see existing runs.")
        return run

    def known(self, run_id: str) -> None:
        """That ``run_id`` names a run (one indexed read, no row built), or NotFound as ``load`` says."""
        validate_id(run_id, "run", "run_id")
        with self.store.sql.snapshot() as conn:
            found = conn.execute("SELECT 1 FROM runs WHERE id = ?", (run_id,)).fetchone()
        if found is None:
            raise NotFound(f"no run with id {run_id!r}; use list_runs to see existing runs.")

    def _fresh(self, run_id: str) -> Run:
        run = self.load(run_id)
        if run.status in WATCHED and self.reconciler.reconcile([run_id]):
            run = self.load(run_id)
        return run

    # ---- create / start ------------------------------------------------------------------

    def create(
        self,
        *,
        name: str,
        command: str,
        workdir: str | None = None,
        sweep_id: str | None = None,
        gpus: int = 0,
        env: Mapping[str, str] | None = None,
        auto_start: bool = True,
        parent_run_id: str | None = None,
        params: Mapping[str, Any] | None = None,
        backend: str = "auto",
        slurm: Mapping[str, Any] | None = None,
        gpuwrap: Mapping[str, Any] | None = None,
    ) -> RunRecord:
        validate_name(name, "run name")
        _validate_command(command)
        wd = _validate_workdir(workdir)
        _validate_gpus(gpus)
        clean_env = _validate_env(env)
        clean_params = _validate_params(params)
        wrap = parse_options(gpuwrap)
        if sweep_id is not None:
            validate_id(sweep_id, "sweep", "sweep_id")
            if self.sweeps is not None:
                self.sweeps.check_accepts(sweep_id, new_run=True)
        if parent_run_id is not None:
            self.load(parent_run_id)
        chosen = self.resolve_backend(backend)
        options: dict[str, Any] = {}
        if slurm:
            options["slurm"] = validate_run_slurm(backend, slurm)
        plan = self._plan(chosen, gpus, wrap, command, clean_env)
        fields = dict(
            name=name,
            command=command,
            workdir=wd,
            sweep_id=sweep_id,
            gpus=gpus,
            params=clean_params,
            env_keys=sorted(clean_env),
            options={**options, "gpuwrap": plan.record, "queue": plan.pool},
            parent_run_id=parent_run_id,
            backend=chosen,
        )
        run = self._insert(
            fields, lambda files: write_env(files, clean_env), plan.pool if auto_start else None
        )
        return self._after_insert(run, auto_start)

    def _plan(
        self, backend: str, gpus: int, wrap: GpuwrapOptions, command: str, env: Mapping[str, str]
    ) -> Plan:
        """How the run will be admitted; refuses GPU counts this machine cannot ever provide."""
        plan = plan_admission(
            cluster_type=self.cluster.current_type(),
            backend=backend,
            gpus=gpus,
            options=wrap,
            command=command,
            env=env,
        )
        if plan.pool == POOL_GPU:
            inventory = probe_gpus(self.settings.probe_timeout_s)
            if inventory.ok and len(inventory.gpus) < gpus:
                raise InvalidInput(
                    f"gpus={gpus} but this machine has {len(inventory.gpus)} GPU(s) "
                    f"({'; '.join(inventory.signals)}); ask for at most {len(inventory.gpus)}, "
                    "or set gpuwrap.enabled=false to run without a GPU lease."
                )
        return plan

    def resolve_backend(self, backend: str) -> str:
        """``auto`` follows the cluster: Slurm where the scheduler answers, else the local machine."""
        if backend == "auto":
            return "slurm" if self.cluster.current_type() == "slurm" else "local"
        if backend not in BACKEND_NAMES:
            raise InvalidInput(f"backend {backend!r} is not known; valid: auto, {', '.join(BACKEND_NAMES)}.")
        return backend

    def _insert(
        self, fields: dict[str, Any], write_env_file: Callable[[JobFiles], None], enqueue: str | None = None
    ) -> Run:
        """Write the run's files and row; ``enqueue`` (a pool) queues it in the same transaction,
        so an auto-started run's place in the queue is its creation order."""
        run_id = new_id("run")
        files = self.files(run_id)
        files.run_dir.mkdir(mode=0o700)
        try:
            write_command(files, fields["command"])
            write_env_file(files)
            files.output.touch(mode=0o600)
            files.metrics.touch(mode=0o600)
            t = now()
            run = Run(
                id=run_id,
                status=RunStatus.READY.value,
                status_reason="created",
                created_at=t,
                updated_at=t,
                **fields,
            )
            with self.store.write() as s:
                s.add(run)
                if enqueue:
                    s.flush()
                    self.admission.enqueue(s, run, enqueue)
        except BaseException:
            shutil.rmtree(files.run_dir, ignore_errors=True)
            raise
        return run

    def _after_insert(self, run: Run, auto_start: bool) -> RunRecord:
        """Start the new run if asked; a launch that fails for any reason (a refused launch, a
        locked store, a tmux or disk error) leaves no half-created run behind."""
        if auto_start:
            try:
                self._start(run)
            except Exception:
                try:
                    self._discard(run)
                except Exception:  # keep the launch's error: it is the one the caller can act on
                    log.exception("could not discard %s after its launch failed", run.id)
                raise
        return self._record(run.id)

    def _record(self, run_id: str) -> RunRecord:
        """The run as stored (no reconcile), with its GPU lease."""
        run = self.load(run_id)
        with self.store.read() as s:
            leased = self.admission.leased_gpus(s, [run_id]).get(run_id)
        return to_record(run, self.files(run_id).run_dir, leased)

    def _discard(self, run: Run) -> None:
        """Undo a create whose launch was refused, so no half-created run remains.

        Its events go too: a 'launching' event of a run that does not exist would be served
        by wait_for_events and name a run no tool can find.
        """
        with self.store.write() as s:
            s.execute(delete(Event).where(col(Event.run_id) == run.id))
            s.execute(delete(Run).where(col(Run.id) == run.id))
            self.admission.release(s, run.id)
        shutil.rmtree(self.files(run.id).run_dir, ignore_errors=True)

    def start(self, run_id: str) -> RunRecord:
        run = self.load(run_id)
        if run.status != RunStatus.READY:
            raise Conflict(
                f"run {run_id} is {run.status}; start_run starts only runs in status 'ready' "
                "(created with auto_start=false). Use rerun to run an ended run again."
            )
        try:
            self._start(run)
        except Exception as err:  # any failure, not only a refusal, must not strand the run mid-launch
            try:
                with self.store.write() as s:
                    transition(
                        s, self.load(run_id), RunStatus.FAILED, f"launch refused: {err}", error=str(err)
                    )
                    self.admission.release(s, run_id)
            except Exception:
                log.exception("could not mark %s failed after its launch failed", run_id)
            raise
        return self._record(run_id)

    def _start(self, run: Run) -> None:
        """Launch a ready run now, or through its sweep, which may hold it back (parallel cap)."""
        if run.sweep_id is not None and self.sweeps is not None:
            self.sweeps.admit(run)
        else:
            self.launch(run)

    def launch(self, run: Run, *, claimed: bool = False) -> None:
        """Render the launch script and hand the run to its backend.

        A run that needs admission (gpuwrap's GPU lease, a cpu_only run slot) is admitted
        here when nobody is ahead of it and its resources are free; otherwise it is
        submitted anyway, ``queued``, and its launch script waits its turn (``core.admit``).
        ``claimed``: the caller already moved the run to ``launching`` (a sweep claims a slot
        and the run in one transaction, so two processes cannot both fill the last slot).
        """
        backend = self.backends.get(run.backend)
        files = self.files(run.id)
        files.clear_outcome()
        pool = (run.options or {}).get("queue")
        pre, post = backend.pre_command(run), backend.post_command(run)
        inventory: GpuProbe | None = None
        if pool:
            root = str(self.state.root)
            pre = [*gpuwrap_pre_lines(root, run.id, self.settings), *pre]
            if pool == POOL_GPU:
                post = [*gpuwrap_post_lines(root, run.id, self.settings), *post]
                inventory = probe_gpus(self.settings.probe_timeout_s)
        script = render_launch_script(
            run_id=run.id,
            workdir=run.workdir,
            files=files,
            pre_command=pre,
            post_command=post,
            echo_output=backend.echo_output,
        )
        write_launch_script(files, script)
        outcome = None
        extras: list[str] = []
        reason = launch_reason(backend.name)
        with self.store.write() as s:
            if pool:
                self.admission.enqueue(s, run, pool)
                outcome = self.admission.try_admit(s, run.id, inventory)
                if outcome.impossible:
                    raise InvalidInput(f"run {run.id} cannot start: {outcome.reason}.")
            t = now()
            if outcome is None or outcome.admitted:
                extras = [outcome.reason] if outcome else []
                if note := (run.options or {}).get("gpuwrap", {}).get("note"):
                    extras.append(note)
                # A claimed run is already 'launching' with this reason (set by its sweep).
                ok = claimed or transition(s, run, RunStatus.LAUNCHING, reason, launched_at=t)
            else:
                reason = outcome.reason
                ok = transition(s, run, RunStatus.QUEUED, reason, launched_at=t, queued_at=t)
            if not ok:
                raise Conflict(f"run {run.id} changed status to {run.status} while starting; not launched.")
        if outcome is not None and outcome.admitted:
            write_admission_env(files, outcome.gpu_indices)
        try:
            ref = backend.submit(run, files)
        except ResearchError:
            raise
        except Exception as err:  # an unexpected backend failure still must not strand the run
            raise ResearchError(f"the {backend.name} backend failed to submit {run.id}: {err}") from err
        # From here the job exists: nothing may raise, or a caller would discard (or fail) the
        # run of a live job.
        try:
            with self.store.write() as s:
                s.execute(update(Run).where(col(Run.id) == run.id).values(backend_ref=ref))
                # Say where it went, unless the reason moved on (a queued run's says what it waits for).
                s.execute(
                    update(Run)
                    .where(
                        col(Run.id) == run.id,
                        col(Run.status_reason) == reason,
                        col(Run.status) == "launching",
                    )
                    .values(status_reason="; ".join([f"submitted: {ref}", *extras]))
                )
        except Exception:
            log.exception("%s was submitted as %s, but recording that failed", run.id, ref)
        for hook in self.after_launch:
            try:
                hook(run)
            except Exception:  # the job runs; a missing watcher is restarted by reconcile
                log.exception("after_launch hook failed for %s", run.id)

    # ---- stop / rerun --------------------------------------------------------------------

    def stop(self, run_id: str) -> RunRecord:
        run = self._fresh(run_id)
        status = RunStatus(run.status)
        if status in TERMINAL:
            raise Conflict(
                f"run {run_id} already ended ({run.status}: {run.status_reason}); nothing to stop."
            )
        if status is RunStatus.READY or run.launched_at is None:
            with self.store.write() as s:
                transition(s, run, RunStatus.STOPPED, "stopped before it was launched")
            return self._record(run_id)
        with self.store.write() as s:
            s.execute(update(Run).where(col(Run.id) == run_id).values(stop_requested_at=now()))
        run = self.load(run_id)
        self.backends.get(run.backend).stop(run, self.files(run_id), self.settings.stop_grace_s)
        self._fresh(run_id)
        return self._record(run_id)

    def rerun(self, run_id: str, auto_start: bool = True) -> RunRecord:
        old = self.load(run_id)
        if old.sweep_id is not None and self.sweeps is not None:
            self.sweeps.check_accepts(old.sweep_id, new_run=False)
        wrap = options_of((old.options or {}).get("gpuwrap"))
        plan = self._plan(old.backend, old.gpus, wrap, old.command, dict.fromkeys(old.env_keys, ""))
        fields = dict(
            name=old.name,
            command=old.command,
            workdir=_validate_workdir(old.workdir),
            sweep_id=old.sweep_id,
            gpus=old.gpus,
            params=old.params,
            env_keys=old.env_keys,
            options={**(old.options or {}), "gpuwrap": plan.record, "queue": plan.pool},
            parent_run_id=old.id,
            backend=old.backend,
        )
        old_env = self.files(old.id).env

        def copy_env(files: JobFiles) -> None:
            if old_env.exists():
                shutil.copyfile(old_env, files.env)
                os.chmod(files.env, 0o600)

        run = self._insert(fields, copy_env, plan.pool if auto_start else None)
        return self._after_insert(run, auto_start)

    # ---- queries -------------------------------------------------------------------------

    def get(self, run_id: str) -> RunDetail:
        self._fresh(run_id)
        detail = RunDetail(**self._record(run_id).model_dump())
        for extra in self.detail_extras:
            extra(detail)
        return detail

    def list(
        self,
        *,
        status: list[str] | None = None,
        name_contains: str | None = None,
        sweep_id: str | None = None,
        limit: int = 50,
        offset: int = 0,
    ) -> RunPage:
        run_list.check(status, sweep_id, limit, offset)
        self.reconciler.reconcile()
        with self.store.sql.snapshot() as conn:
            return run_list.page(
                conn, status=status, name_contains=name_contains, sweep_id=sweep_id, limit=limit,
                offset=offset,
            )  # fmt: skip

    def logs(
        self,
        run_id: str,
        *,
        lines: int = 100,
        source: str = "output",
        offset: int | None = None,
        length: int | None = None,
        filter: str | None = None,
        max_bytes: int = 64 * 1024,
    ) -> LogChunk:
        if source not in ("output", "sidecar"):
            raise InvalidInput(
                f"source {source!r} is not valid; choose 'output' (the command's output) or 'sidecar'."
            )
        if not 1 <= lines <= MAX_LOG_LINES:
            raise InvalidInput(f"lines={lines} is out of range; give 1 to {MAX_LOG_LINES}.")
        if not 1 <= max_bytes <= MAX_LOG_BYTES:
            raise InvalidInput(f"max_bytes={max_bytes} is out of range; give 1 to {MAX_LOG_BYTES}.")
        pattern = None
        if filter:
            if len(filter) > 200:
                raise InvalidInput("filter is longer than 200 characters.")
            try:
                pattern = re.compile(filter)
            except re.error as err:
                raise InvalidInput(f"filter {filter!r} is not a valid regular expression: {err}.") from None
        self.known(run_id)
        files = self.files(run_id)
        path = self.state.file_in(files.output if source == "output" else files.sidecar_log)
        note = ""
        if offset is not None:
            if pattern is not None:
                raise InvalidInput("give either filter or offset/length, not both.")
            size = min(length or max_bytes, max_bytes)
            if size < 1:
                raise InvalidInput(f"length={length} must be ≥ 1.")
            chunk = read_window(path, offset, size)
        else:
            if length is not None:
                raise InvalidInput("length needs offset; for the end of the log give lines instead.")
            chunk = tail_lines(path, lines, max_bytes, pattern)
        if chunk.size == 0:
            note = f"the {source} log is empty so far" if path.exists() else f"no {source} log yet"
        elif chunk.truncated:
            note = "more text precedes this window; page with offset/length or raise lines/max_bytes"
        return LogChunk(
            text=chunk.text,
            start_offset=chunk.start,
            end_offset=chunk.end,
            file_size=chunk.size,
            lines=chunk.lines,
            truncated=chunk.truncated,
            note=note,
        )

    def wait(self, run_id: str, timeout_s: float, poll_s: float = 0.2) -> RunDetail:
        """Block until the run ends or ``timeout_s`` passes (used by the CLI demo)."""
        deadline = time.monotonic() + timeout_s
        while True:
            detail = self.get(run_id)
            if detail.status in {s.value for s in TERMINAL} or time.monotonic() >= deadline:
                return detail
            time.sleep(poll_s)
