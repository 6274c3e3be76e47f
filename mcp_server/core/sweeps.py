"""Sweeps: create (expanding a parameter space into runs), the parallel cap, progress, best run.

The ``parallel`` cap needs no daemon. A sweep run beyond the cap is created and held
back in status ``queued`` without being submitted (``launched_at`` stays None). Whoever
settles the end of one of the sweep's runs (a server's reconcile, a sidecar) runs
``Reconciler.on_terminal``, which calls ``fill``: in one write transaction (``BEGIN
IMMEDIATE``, so serialized across processes) it counts the active runs, claims the oldest
held-back runs up to the cap by moving them to ``launching``, and only then submits them.
Two processes settling runs at once therefore can never exceed the cap. A server's
start-up calls ``top_up`` so a crash between a settle and a launch strands nothing.
"""

from __future__ import annotations

import logging
import secrets
import shutil
from collections import Counter
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from sqlalchemy import func, update
from sqlmodel import Session, col, select

from mcp_server.core.errors import Conflict, InvalidInput, NotFound, ResearchError
from mcp_server.core.ids import new_id, validate_id, validate_name
from mcp_server.core.launch import write_env, write_private
from mcp_server.core.lifecycle import ACTIVE, TERMINAL, RunStatus
from mcp_server.core.models import Run, Sweep
from mcp_server.core.paths import StateDir
from mcp_server.core.reconcile import Reconciler, transition
from mcp_server.core.runs import (
    MAX_GPUS,
    RunService,
    _validate_command,
    _validate_env,
    _validate_workdir,
    launch_reason,
)
from mcp_server.core.store import Store, now
from mcp_server.core.sweep_detail import MAX_PAGE as MAX_DETAIL_RUNS
from mcp_server.core.sweep_detail import sweep_detail
from mcp_server.core.sweep_space import MAX_SWEEP_RUNS, expand, render_command, validate_space
from mcp_server.core.sweep_stop import stop_sweep
from mcp_server.core.views import iso
from mcp_server.core.workflow_views import SweepDetail, SweepProgress, SweepRow, SweepStopped

log = logging.getLogger(__name__)

MAX_GOAL_CHARS = 4000
MAX_PARALLEL = 256
_ACTIVE = tuple(s.value for s in ACTIVE)


def _held_back(sweep_id: str) -> Any:
    return select(Run).where(
        col(Run.sweep_id) == sweep_id,
        col(Run.status) == RunStatus.QUEUED.value,
        col(Run.launched_at).is_(None),
    )


def _count_active(s: Session, sweep_id: str) -> int:
    query = (
        select(func.count())
        .select_from(Run)
        .where(col(Run.sweep_id) == sweep_id, col(Run.status).in_(_ACTIVE), col(Run.launched_at).is_not(None))
    )
    return int(s.exec(query).one())


def waiting_reason(sweep: Sweep, active: int) -> str:
    cap = sweep.parallel
    return f"waiting: sweep {sweep.name} has {active} of {cap} runs active (parallel={cap})"


def derive_status(counts: Mapping[str, int]) -> str:
    """A sweep's status from how many of its runs are in each status."""
    total = sum(counts.values())
    if total == 0:
        return "empty"
    if any(counts.get(s, 0) for s in _ACTIVE):
        return "running"
    if counts.get(RunStatus.READY.value, 0):
        return "pending"
    if counts.get(RunStatus.FINISHED.value, 0):
        return "completed"
    if counts.get(RunStatus.STOPPED.value, 0) == total:
        return "stopped"
    return "failed"


def progress_of(counts: Mapping[str, int], waiting: int) -> SweepProgress:
    total = sum(counts.values())
    done = sum(counts.get(s.value, 0) for s in TERMINAL)
    return SweepProgress(
        total=total,
        ready=counts.get(RunStatus.READY.value, 0),
        waiting=waiting,
        active=sum(counts.get(s, 0) for s in _ACTIVE) - waiting,
        finished=counts.get(RunStatus.FINISHED.value, 0),
        failed=counts.get(RunStatus.FAILED.value, 0),
        stopped=counts.get(RunStatus.STOPPED.value, 0),
        lost=counts.get(RunStatus.LOST.value, 0),
        done=done,
        percent_done=round(100.0 * done / total, 1) if total else 0.0,
    )


class SweepService:
    def __init__(self, state: StateDir, store: Store, runs: RunService, reconciler: Reconciler) -> None:
        self.state = state
        self.store = store
        self.runs = runs
        self.reconciler = reconciler

    # ---- lookups -------------------------------------------------------------------------

    def load(self, sweep_id: str) -> Sweep:
        validate_id(sweep_id, "sweep", "sweep_id")
        with self.store.read() as s:
            sweep = s.exec(select(Sweep).where(Sweep.id == sweep_id)).first()
        if sweep is None:
            raise NotFound(
                f"no sweep with id {sweep_id!r}; experiment://context lists sweeps (and list_runs each "
                "run's sweep_id), or create one with create_sweep."
            )
        return sweep

    def runs_of(self, sweep_id: str) -> list[Run]:
        with self.store.read() as s:
            return list(s.exec(select(Run).where(col(Run.sweep_id) == sweep_id).order_by(col(Run.pk))).all())

    # ---- the gate RunService calls -------------------------------------------------------

    def check_accepts(self, sweep_id: str, *, new_run: bool) -> None:
        """Refuse runs for unknown sweeps, and new runs beyond ``max_runs`` (reruns are allowed)."""
        sweep = self.load(sweep_id)
        if not new_run or sweep.max_runs is None:
            return
        with self.store.read() as s:
            count = s.exec(select(func.count()).select_from(Run).where(col(Run.sweep_id) == sweep_id)).one()
        if count >= sweep.max_runs:
            raise Conflict(
                f"sweep {sweep.name} ({sweep_id}) already has {count} runs, its max_runs; "
                "rerun an existing run or create a new sweep."
            )

    def admit(self, run: Run) -> None:
        """Launch a ready run of a sweep now, or hold it back until the sweep has a free slot."""
        sweep = self.load(run.sweep_id or "")
        if sweep.parallel is None:
            self.runs.launch(run)
            return
        self._enqueue(sweep, [run])
        self.fill(sweep.id, raise_for=run.id)

    def _enqueue(self, sweep: Sweep, runs: Iterable[Run]) -> None:
        with self.store.write() as s:
            reason = waiting_reason(sweep, _count_active(s, sweep.id))
            for run in runs:
                if not transition(s, run, RunStatus.QUEUED, reason, expected=RunStatus.READY):
                    raise Conflict(f"run {run.id} is {run.status}, not ready; it was not queued.")

    def fill(self, sweep_id: str, *, raise_for: str | None = None) -> list[str]:
        """Launch held-back runs (oldest first) while the sweep has fewer active runs than its cap.

        Returns the ids launched. A claimed run whose launch is refused is marked failed
        (which frees its slot for the next one); for ``raise_for`` the error is re-raised.
        """
        launched: list[str] = []
        while True:
            claimed: list[Run] = []
            with self.store.write() as s:
                sweep = s.exec(select(Sweep).where(Sweep.id == sweep_id)).first()
                if sweep is None:
                    return launched
                active = _count_active(s, sweep_id)
                slots = None if sweep.parallel is None else sweep.parallel - active
                if slots is None or slots > 0:
                    query = _held_back(sweep_id).order_by(col(Run.pk))
                    for run in s.exec(query if slots is None else query.limit(slots)).all():
                        if transition(
                            s, run, RunStatus.LAUNCHING, launch_reason(run.backend), launched_at=now()
                        ):
                            claimed.append(run)
                if sweep.parallel is not None:
                    s.execute(
                        update(Run)
                        .where(
                            col(Run.sweep_id) == sweep_id,
                            col(Run.status) == RunStatus.QUEUED.value,
                            col(Run.launched_at).is_(None),
                        )
                        .values(status_reason=waiting_reason(sweep, active + len(claimed)))
                    )
            if not claimed:
                return launched
            refused = False
            for run in claimed:
                try:
                    self.runs.launch(run, claimed=True)
                    launched.append(run.id)
                except ResearchError as err:
                    refused = True
                    self._refused(run.id, err)
                    if run.id == raise_for:
                        raise
                    log.warning("sweep %s: launch of %s refused: %s", sweep_id, run.id, err)
            if not refused:
                return launched

    def _refused(self, run_id: str, err: ResearchError) -> None:
        with self.store.write() as s:
            transition(s, self.runs.load(run_id), RunStatus.FAILED, f"launch refused: {err}", error=str(err))

    def on_run_terminal(self, run: Run) -> None:
        """Reconciler hook: a run ended, so its sweep may launch the next held-back run."""
        if run.sweep_id is not None:
            self.fill(run.sweep_id)

    def top_up(self) -> list[str]:
        """Fill every sweep that has held-back runs (start-up: recover from a crash mid-handoff)."""
        with self.store.read() as s:
            sweep_ids = s.exec(
                select(Run.sweep_id)
                .where(
                    col(Run.sweep_id).is_not(None),
                    col(Run.status) == RunStatus.QUEUED.value,
                    col(Run.launched_at).is_(None),
                )
                .distinct()
            ).all()
        launched: list[str] = []
        for sweep_id in sweep_ids:
            if sweep_id is not None:
                launched += self.fill(sweep_id)
        return launched

    # ---- create --------------------------------------------------------------------------

    def create(
        self,
        *,
        name: str,
        goal: str,
        base_command: str | None = None,
        parameters: Mapping[str, Any] | None = None,
        method: str = "grid",
        max_runs: int | None = None,
        seed: int | None = None,
        parallel: int | None = None,
        gpus_per_run: int = 0,
        backend: str = "auto",
        workdir: str | None = None,
        env: Mapping[str, str] | None = None,
        auto_start: bool = True,
        options: Mapping[str, Any] | None = None,
    ) -> SweepDetail:
        validate_name(name, "sweep name")
        if not isinstance(goal, str) or not goal.strip() or len(goal) > MAX_GOAL_CHARS:
            raise InvalidInput(
                f"goal must say in 1-{MAX_GOAL_CHARS} characters what the sweep should find out, "
                "e.g. 'which lr converges fastest for the small model'."
            )
        space = validate_space(parameters, method)
        if max_runs is not None and not 1 <= max_runs <= MAX_SWEEP_RUNS:
            raise InvalidInput(f"max_runs={max_runs} is out of range; give 1 to {MAX_SWEEP_RUNS}.")
        if parallel is not None and not 1 <= parallel <= MAX_PARALLEL:
            raise InvalidInput(
                f"parallel={parallel} is out of range; give 1 to {MAX_PARALLEL}, or leave it out for no cap."
            )
        if not 0 <= gpus_per_run <= MAX_GPUS:
            raise InvalidInput(f"gpus_per_run={gpus_per_run} is out of range; give 0 to {MAX_GPUS}.")
        if seed is not None and not 0 <= seed < 2**63:
            raise InvalidInput(f"seed={seed} is out of range; give 0 to 2**63-1.")
        if space and not base_command:
            raise InvalidInput(
                "parameters need base_command, the command their values go into, e.g. "
                "'python train.py --lr {lr}'; values without a {name} placeholder are appended as "
                "--name=value."
            )
        if base_command is not None:
            _validate_command(base_command)
        wd = _validate_workdir(workdir)
        clean_env = _validate_env(env)
        # Checked once here, so a bad option refuses the sweep before anything is written.
        chosen_backend, kept = self.runs.backend_options(backend, options)
        if method == "random" and space and seed is None:
            seed = secrets.randbelow(2**31)  # recorded, so the sweep can be reproduced
        configs = expand(space, method, max_runs, seed)
        commands = [render_command(base_command or "", values) for values in configs]
        for command in commands:
            _validate_command(command)
        width = max(2, len(str(len(configs))))
        run_names = [f"{name[: 63 - width]}-{i:0{width}d}" for i in range(1, len(configs) + 1)]

        t = now()
        sweep = Sweep(
            id=new_id("sweep"),
            name=name,
            goal=goal.strip(),
            base_command=base_command,
            parameters=space,
            method=method,
            max_runs=max_runs if max_runs is not None else (len(configs) or None),
            seed=seed,
            parallel=parallel,
            gpus_per_run=gpus_per_run,
            backend=backend,
            workdir=wd,
            created_at=t,
            updated_at=t,
        )
        # Every run is validated and staged before anything is committed; then the sweep and
        # all its runs are one transaction: a refusal or a kill -9 leaves nothing, or all of it.
        staged: list[tuple[Run, Path]] = []
        try:
            for run_name, command, values in zip(run_names, commands, configs, strict=True):
                fields, _env = self.runs.prepare(
                    name=run_name, command=command, workdir=wd, sweep_id=sweep.id, gpus=gpus_per_run,
                    env=clean_env, params=values, backend=chosen_backend, options=kept, new_sweep=True,
                    checked=True,
                )  # fmt: skip
                run = self.runs.new_run(fields)
                path = self.runs.stage(run, lambda f: write_env(f, clean_env), auto_start=auto_start)
                staged.append((run, path))
        except BaseException:
            for _run, path in staged:
                shutil.rmtree(path, ignore_errors=True)
            raise
        spec_path = self._write_spec(sweep)
        try:
            self.runs.commit(staged, before=lambda s: s.add(sweep))
        except BaseException:
            spec_path.unlink(missing_ok=True)
            raise
        created = [self.runs.load(run.id) for run, _path in staged]
        if auto_start and created:
            self._start_all(sweep, created)
        return self.get(sweep.id)

    def _write_spec(self, sweep: Sweep) -> Path:
        """The sweep as created, kept beside the store so doctor --repair can rebuild its row."""
        folder = self.state.root / "sweeps"
        folder.mkdir(mode=0o700, exist_ok=True)
        path = folder / f"{sweep.id}.json"
        write_private(path, sweep.model_dump_json(exclude={"pk"}) + "\n")
        return path

    def _start_all(self, sweep: Sweep, runs: list[Run]) -> None:
        if sweep.parallel is not None:
            self._enqueue(sweep, runs)
            self.fill(sweep.id)
            return
        for run in runs:
            try:
                self.runs.launch(run)
            except ResearchError as err:
                self._refused(run.id, err)

    # ---- queries -------------------------------------------------------------------------

    def _counts(self, runs: list[Run]) -> tuple[Counter[str], int]:
        counts = Counter(r.status for r in runs)
        waiting = sum(1 for r in runs if r.status == RunStatus.QUEUED.value and r.launched_at is None)
        return counts, waiting

    def row(self, sweep: Sweep, runs: list[Run]) -> SweepRow:
        counts, waiting = self._counts(runs)
        return SweepRow(
            id=sweep.id,
            name=sweep.name,
            goal=sweep.goal,
            status=derive_status(counts),  # type: ignore[arg-type]
            parallel=sweep.parallel,
            progress=progress_of(counts, waiting),
            created_at=iso(sweep.created_at) or "",
        )

    def list(self, limit: int = 20) -> list[SweepRow]:
        with self.store.read() as s:
            sweeps = list(s.exec(select(Sweep).order_by(col(Sweep.pk).desc()).limit(limit)).all())
            ids = [sw.id for sw in sweeps]
            runs = list(s.exec(select(Run).where(col(Run.sweep_id).in_(ids))).all()) if ids else []
        by_sweep: dict[str, list[Run]] = {}
        for run in runs:
            by_sweep.setdefault(run.sweep_id or "", []).append(run)
        return [self.row(sw, by_sweep.get(sw.id, [])) for sw in sweeps]

    def get(
        self,
        sweep_id: str,
        metric: str | None = None,
        direction: str = "min",
        *,
        offset: int = 0,
        limit: int = MAX_DETAIL_RUNS,
    ) -> SweepDetail:
        """Status, progress, a page of runs and, with ``metric``, the best run (core.sweep_detail)."""
        return sweep_detail(self, sweep_id, metric, direction, offset=offset, limit=limit)

    def stop(self, sweep_id: str) -> SweepStopped:
        """Held-back and ready runs never start; active runs are stopped (core.sweep_stop)."""
        return stop_sweep(self, sweep_id)
