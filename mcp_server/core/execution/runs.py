"""Runs: create, start, stop, rerun, list, get and read logs.

Every entry point validates all of its input before it writes anything, so a rejected
call leaves the store and the state dir as they were.
"""

from __future__ import annotations

import contextlib
import logging
import shutil
import threading
from collections.abc import Callable, Mapping
from pathlib import Path
from types import SimpleNamespace
from typing import Any, Protocol

from sqlalchemy import delete, update
from sqlmodel import Session, col, select

from mcp_server.core.backends import registry
from mcp_server.core.backends.base import Plan
from mcp_server.core.backends.registry import Backends
from mcp_server.core.errors import Conflict, InvalidInput, NotFound, StoreError
from mcp_server.core.execution import staging
from mcp_server.core.execution.jobfiles import JobFiles
from mcp_server.core.execution.launch import write_env, write_private
from mcp_server.core.execution.reconcile import WATCHED, Reconciler, transition
from mcp_server.core.execution.run_inputs import (
    MAX_COMMAND_CHARS,
    MAX_ENV_VALUE_CHARS,
    MAX_GPUS,
    MAX_LOG_BYTES,
    MAX_LOG_LINES,
    MAX_PAGE,
    MAX_PARAMS_BYTES,
    STATUS_CHOICES,
    _validate_command,
    _validate_env,
    _validate_gpus,
    _validate_params,
    _validate_workdir,
)
from mcp_server.core.execution.run_launch import LaunchMixin, launch_reason
from mcp_server.core.execution.run_queries import QueryMixin, to_record, to_row
from mcp_server.core.execution.run_status import TERMINAL, RunStatus
from mcp_server.core.ids import new_id, validate_id, validate_name
from mcp_server.core.paths import StateDir
from mcp_server.core.run_views import RunDetail, RunRecord
from mcp_server.core.scheduling.admission import Admission
from mcp_server.core.scheduling.cluster import ClusterService
from mcp_server.core.settings import Settings
from mcp_server.core.storage.models import Event, Run
from mcp_server.core.storage.store import Store, now
from mcp_server.core.workflow import lineage

__all__ = [
    "MAX_COMMAND_CHARS", "MAX_ENV_VALUE_CHARS", "MAX_GPUS", "MAX_LOG_BYTES", "MAX_LOG_LINES", "MAX_PAGE",
    "MAX_PARAMS_BYTES", "STATUS_CHOICES", "RunService", "launch_reason", "to_record", "to_row",
]  # fmt: skip

log = logging.getLogger(__name__)


class SweepGate(Protocol):
    """What runs need from sweeps: membership checks and the ``parallel`` cap (core.search.sweeps)."""

    def check_accepts(self, sweep_id: str, *, new_run: bool) -> None: ...

    def admit(self, run: Run) -> None: ...


class RunService(LaunchMixin, QueryMixin):
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
        # Called with a run right before its backend gets it (provenance is recorded here).
        self.before_submit: list[Callable[[Run, JobFiles], None]] = []
        # Called with a run right after its backend accepted it (the sidecar starts here).
        self.after_launch: list[Callable[[Run], None]] = []
        # Called by get() to add what other services know (metrics, alerts, monitor).
        self.detail_extras: list[Callable[[RunDetail], None]] = []
        self._creator: staging.Creator | None = None
        self._creator_lock = threading.Lock()

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

    def known(self, run_id: str) -> SimpleNamespace:
        """The run's id, name, status, backend, backend_ref and workdir (one indexed read, no ORM
        row built), or NotFound as ``load`` says."""
        validate_id(run_id, "run", "run_id")
        with self.store.sql.snapshot() as conn:
            found = conn.execute(
                "SELECT id, name, status, backend, backend_ref, workdir FROM runs WHERE id = ?", (run_id,)
            ).fetchone()
        if found is None:
            raise NotFound(f"no run with id {run_id!r}; use list_runs to see existing runs.")
        names = ("id", "name", "status", "backend", "backend_ref", "workdir")
        return SimpleNamespace(**dict(zip(names, found, strict=True)))

    def _fresh(self, run_id: str) -> Run:
        run = self.load(run_id)
        if run.status in WATCHED and self._settle_first([run_id]):
            run = self.load(run_id)
        return run

    def _settle_first(self, run_ids: list[str] | None = None) -> bool:
        """Settle before answering a query (a listing when ``run_ids`` is None: see
        Reconciler.reconcile_for_listing); a store that cannot take writes now (full disk,
        long lock) must not stop the answer, which is then what the store holds."""
        try:
            if run_ids is None:
                return bool(self.reconciler.reconcile_for_listing())
            return bool(self.reconciler.reconcile(run_ids))
        except StoreError as err:
            log.warning("answering from the store as it is: %s", err)
            return False

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
        options: Mapping[str, Any] | None = None,
    ) -> RunRecord:
        fields, clean_env = self.prepare(
            name=name, command=command, workdir=workdir, sweep_id=sweep_id, gpus=gpus, env=env,
            parent_run_id=parent_run_id, params=params, backend=backend, options=options,
        )  # fmt: skip
        run = self._insert(
            fields,
            lambda files: write_env(files, clean_env),
            fields["options"]["queue"] if auto_start else None,
            auto_start=auto_start,
        )
        return self._after_insert(run, auto_start)

    def prepare(
        self,
        *,
        name: str,
        command: str,
        workdir: str | None = None,
        sweep_id: str | None = None,
        gpus: int = 0,
        env: Mapping[str, str] | None = None,
        parent_run_id: str | None = None,
        params: Mapping[str, Any] | None = None,
        backend: str = "auto",
        options: Mapping[str, Any] | None = None,
        new_sweep: bool = False,
        checked: bool = False,
    ) -> tuple[dict[str, Any], dict[str, str]]:
        """Validate a run's input (nothing is written); returns its row fields and clean env.

        ``new_sweep``: the sweep is created in the same transaction, so it is not looked up.
        ``checked``: ``backend`` is resolved and ``options`` validated already (a sweep's runs)."""
        validate_name(name, "run name")
        _validate_command(command)
        wd = _validate_workdir(workdir)
        _validate_gpus(gpus)
        clean_env = _validate_env(env)
        clean_params = _validate_params(params)
        if sweep_id is not None and not new_sweep:
            validate_id(sweep_id, "sweep", "sweep_id")
            if self.sweeps is not None:
                self.sweeps.check_accepts(sweep_id, new_run=True)
        if parent_run_id is not None:
            self.load(parent_run_id)
        chosen, kept = (backend, dict(options or {})) if checked else self.backend_options(backend, options)
        plan = self._plan(chosen, gpus, kept, command, clean_env)
        fields = dict(
            name=name,
            command=command,
            workdir=wd,
            sweep_id=sweep_id,
            gpus=gpus,
            params=clean_params,
            env_keys=sorted(clean_env),
            options={**({chosen: kept} if kept else {}), "gpuwrap": plan.record, "queue": plan.pool},
            parent_run_id=parent_run_id,
            backend=chosen,
        )
        return fields, clean_env

    def _plan(
        self, backend: str, gpus: int, options: Mapping[str, Any], command: str, env: Mapping[str, str]
    ) -> Plan:
        """How the run will be admitted (the backend decides: gpuwrap for local runs)."""
        return self.backends.get(backend).plan(
            cluster_type=self.cluster.current_type(), gpus=gpus, options=options, command=command, env=env
        )

    def resolve_backend(self, backend: str) -> str:
        """``auto`` is the registered backend whose affinity is highest here (Slurm on a Slurm
        cluster, Ray where RAY_ADDRESS names a cluster, else this machine)."""
        if backend == registry.AUTO:
            return registry.choose(self.cluster.facts())
        registry.backend_class(backend)  # an unknown name is refused with the valid ones
        return backend

    def backend_options(self, backend: str, options: Mapping[str, Any] | None) -> tuple[str, dict[str, Any]]:
        """The backend ``backend`` means and ``options`` checked against it (nothing written)."""
        chosen = self.resolve_backend(backend)
        if options and (foreign := registry.foreign_keys(chosen, options)):
            where = "; ".join(f"{k} is for backend {v!r}" for k, v in foreign.items())
            picked = " (what 'auto' chose here)" if backend == registry.AUTO else ""
            raise InvalidInput(
                f"options for backend {chosen!r}{picked} cannot hold {', '.join(foreign)}: {where}. "
                "Pass backend= the engine these options are for."
            )
        try:
            return chosen, registry.backend_class(chosen).validate_options(options)
        except InvalidInput as err:
            if backend == registry.AUTO:
                hint = f"backend 'auto' is {chosen!r} here; name the backend you meant"
                raise InvalidInput(f"{err} ({hint})") from None
            raise

    def _insert(
        self,
        fields: dict[str, Any],
        write_env_file: Callable[[JobFiles], None],
        enqueue: str | None = None,
        *,
        auto_start: bool = False,
    ) -> Run:
        """Write the run's files and row; ``enqueue`` (a pool) queues it in the same transaction,
        so an auto-started run's place in the queue is its creation order."""
        run = self.new_run(fields)
        self.commit([(run, self.stage(run, write_env_file, auto_start=auto_start))], enqueue)
        return run

    @staticmethod
    def new_run(fields: dict[str, Any]) -> Run:
        t = now()
        return Run(
            id=new_id("run"), status=RunStatus.READY.value, status_reason="created", created_at=t,
            updated_at=t, **fields,
        )  # fmt: skip

    def stage(self, run: Run, write_env_file: Callable[[JobFiles], None], *, auto_start: bool) -> Path:
        return staging.stage(self.state, run, write_env_file, auto_start=auto_start, creator=self.creator)

    @property
    def creator(self) -> staging.Creator:
        """This process's creator lock: recovery leaves alone what a live process is creating."""
        with self._creator_lock:
            if self._creator is None:
                self._creator = staging.Creator(self.state)
            return self._creator

    def close(self) -> None:
        if self._creator is not None:
            self._creator.release()

    def commit(
        self,
        staged: list[tuple[Run, Path]],
        enqueue: str | None = None,
        before: Callable[[Session], None] | None = None,
        after: Callable[[Session], None] | None = None,
    ) -> None:
        """Insert the staged runs' rows in one transaction (after ``before``, e.g. their sweep's
        row; ``after`` sees them inserted), then move their dirs into place: all of them exist
        afterwards, or none."""
        try:
            with self.store.write() as s:
                if before is not None:
                    before(s)
                for run, _dir in staged:
                    s.add(run)
                if enqueue:
                    s.flush()
                    for run, _dir in staged:
                        self.admission.enqueue(s, run, enqueue)
                if after is not None:
                    s.flush()
                    after(s)
        except BaseException:
            for _run, path in staged:
                shutil.rmtree(path, ignore_errors=True)
            raise
        for run, path in staged:
            staging.place(self.state, run.id, path)

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
        asked = now()
        with self.store.write() as s:
            s.execute(update(Run).where(col(Run.id) == run_id).values(stop_requested_at=asked))
        # Kept in the run dir too, so a store rebuilt by doctor --repair knows it was stopped.
        with contextlib.suppress(OSError):
            write_private(self.files(run_id).run_dir / "stop_requested", f"{asked}\n")
        run = self.load(run_id)
        self.backends.get(run.backend).stop(run, self.files(run_id), self.settings.stop_grace_s)
        self._fresh(run_id)
        return self._record(run_id)

    def rerun(
        self, run_id: str, auto_start: bool = True, overrides: Mapping[str, Any] | None = None
    ) -> RunRecord:
        """A new run from ``run_id``'s spec, with ``overrides`` applied and recorded
        (core.workflow.lineage)."""
        old = self.load(run_id)
        if old.sweep_id is not None and self.sweeps is not None:
            self.sweeps.check_accepts(old.sweep_id, new_run=False)
        fields, env = lineage.rerun_spec(self, old, overrides)
        pool = fields["options"]["queue"] if auto_start else None
        run = self._insert(fields, lambda files: write_env(files, env), pool, auto_start=auto_start)
        return self._after_insert(run, auto_start)

    # ---- queries -------------------------------------------------------------------------
