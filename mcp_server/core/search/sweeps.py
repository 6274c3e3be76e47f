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
from collections import Counter
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from sqlalchemy import func, update
from sqlmodel import Session, col, select

from mcp_server.core.errors import Conflict, NotFound, ResearchError
from mcp_server.core.execution.launch import write_private
from mcp_server.core.execution.reconcile import Reconciler, transition
from mcp_server.core.execution.run_status import ACTIVE, RunStatus
from mcp_server.core.execution.runs import RunService, launch_reason
from mcp_server.core.ids import validate_id
from mcp_server.core.paths import StateDir
from mcp_server.core.run_views import iso
from mcp_server.core.search import sweep_create
from mcp_server.core.search.adaptive import ask_into
from mcp_server.core.search.sweep_detail import MAX_PAGE as MAX_DETAIL_RUNS
from mcp_server.core.search.sweep_detail import sweep_detail
from mcp_server.core.search.sweep_list import derive_status, newest, progress_of
from mcp_server.core.search.sweep_search import spent_reason
from mcp_server.core.search.sweep_stop import stop_sweep
from mcp_server.core.storage.models import Run, Sweep
from mcp_server.core.storage.store import Store, now
from mcp_server.core.workflow.workflow_views import SweepDetail, SweepRow, SweepStopped

log = logging.getLogger(__name__)

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


def waiting_reason(sweep: Sweep, active: int, spent: str | None = None) -> str:
    if spent is not None:
        return f"waiting: sweep {sweep.name}: {spent}; extend_sweep adds budget"
    cap = sweep.parallel
    return f"waiting: sweep {sweep.name} has {active} of {cap} runs active (parallel={cap})"


class SweepService:
    def __init__(self, state: StateDir, store: Store, runs: RunService, reconciler: Reconciler) -> None:
        self.state = state
        self.store = store
        self.runs = runs
        self.reconciler = reconciler
        # Runs whose files this process has read to the end (a sidecar, before it fills its
        # sweep): an adaptive ask need not wait for them to be drained.
        self.drained: set[str] = set()

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
        with self.store.read() as s:
            adaptive = s.exec(select(Sweep.method).where(Sweep.id == sweep_id)).first() == "tpe"
        while True:
            if adaptive:
                ask_into(self, sweep_id)  # core.search.adaptive: new held-back runs for the free slots
            claimed: list[Run] = []
            with self.store.write() as s:
                sweep = s.exec(select(Sweep).where(Sweep.id == sweep_id)).first()
                if sweep is None:
                    return launched
                active = _count_active(s, sweep_id)
                slots = None if sweep.parallel is None else sweep.parallel - active
                spent = self._spent(s, sweep)
                if spent is not None:
                    slots = 0
                if slots is None or slots > 0:
                    query = _held_back(sweep_id).order_by(col(Run.pk))
                    for run in s.exec(query if slots is None else query.limit(slots)).all():
                        if transition(
                            s, run, RunStatus.LAUNCHING, launch_reason(run.backend), launched_at=now()
                        ):
                            claimed.append(run)
                if sweep.parallel is not None or spent is not None:
                    s.execute(
                        update(Run)
                        .where(
                            col(Run.sweep_id) == sweep_id,
                            col(Run.status) == RunStatus.QUEUED.value,
                            col(Run.launched_at).is_(None),
                        )
                        .values(status_reason=waiting_reason(sweep, active + len(claimed), spent))
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

    @staticmethod
    def _spent(s: Session, sweep: Sweep) -> str | None:
        """Why a sweep with a budget may launch nothing more (read in the claiming transaction)."""
        if not (sweep.search or {}).get("budget"):
            return None
        runs = s.exec(select(Run).where(col(Run.sweep_id) == sweep.id)).all()
        return spent_reason(sweep, runs, now())

    def _refused(self, run_id: str, err: ResearchError) -> None:
        with self.store.write() as s:
            transition(s, self.runs.load(run_id), RunStatus.FAILED, f"launch refused: {err}", error=str(err))

    def on_run_terminal(self, run: Run) -> None:
        """Reconciler hook: a run ended, so its sweep may launch the next held-back run."""
        if run.sweep_id is not None:
            self.fill(run.sweep_id)

    def top_up(self) -> list[str]:
        """Fill every sweep that has held-back runs, or is adaptive and may still ask (start-up,
        and every full settle: recover from a crash mid-handoff)."""
        with self.store.read() as s:
            sweep_ids = set(
                s.exec(
                    select(Run.sweep_id)
                    .where(
                        col(Run.sweep_id).is_not(None),
                        col(Run.status) == RunStatus.QUEUED.value,
                        col(Run.launched_at).is_(None),
                    )
                    .distinct()
                ).all()
            )
            for sweep in s.exec(select(Sweep).where(Sweep.method == "tpe")).all():
                if self.may_ask(sweep, list(s.exec(select(Run).where(col(Run.sweep_id) == sweep.id)).all())):
                    sweep_ids.add(sweep.id)
        launched: list[str] = []
        for sweep_id in sorted(i for i in sweep_ids if i is not None):
            launched += self.fill(sweep_id)
        return launched

    @staticmethod
    def may_ask(sweep: Sweep, runs: list[Run]) -> bool:
        """An adaptive sweep that will ask for more: trials left, budget left, not stopped."""
        trials = sum(1 for r in runs if "trial" in (r.options or {}))
        return (
            sweep.method == "tpe"
            and not (sweep.search or {}).get("stopped")
            and trials < (sweep.max_runs or 0)
            and spent_reason(sweep, runs, now()) is None
        )

    # ---- create / extend ---------------------------------------------------------------

    def create(self, *, preview: bool = False, auto_start: bool = True, **args: Any) -> SweepDetail:
        """A sweep and its runs (core.search.sweep_create); ``preview``: what would be launched, and its
        estimated cost, with nothing written (core.search.sweep_preview)."""
        spec = sweep_create.validate(self, auto_start=auto_start, **args)
        if preview:
            from mcp_server.core.search.sweep_preview import preview as describe

            return describe(self, spec)
        return sweep_create.create(self, spec, auto_start)

    def extend(self, sweep_id: str, **changes: Any) -> SweepDetail:
        """Add configurations, runs or budget to a sweep (core.search.sweep_extend)."""
        from mcp_server.core.search.sweep_extend import extend

        return extend(self, sweep_id, **changes)

    def _write_spec(self, sweep: Sweep) -> Path:
        """The sweep as created, kept beside the store so doctor --repair can rebuild its row."""
        folder = self.state.root / "sweeps"
        folder.mkdir(mode=0o700, exist_ok=True)
        path = folder / f"{sweep.id}.json"
        write_private(path, sweep.model_dump_json(exclude={"pk"}) + "\n")
        return path

    # ---- queries -------------------------------------------------------------------------

    def _counts(self, runs: list[Run]) -> tuple[Counter[str], int]:
        counts = Counter(r.status for r in runs)
        waiting = sum(1 for r in runs if r.status == RunStatus.QUEUED.value and r.launched_at is None)
        return counts, waiting

    def row(self, sweep: Sweep, runs: list[Run]) -> SweepRow:
        counts, waiting = self._counts(runs)
        status = derive_status(counts)
        launched = sum(1 for r in runs if r.status in _ACTIVE and r.launched_at is not None)
        if status == "running" and waiting and not launched and spent_reason(sweep, runs, now()):
            status = "paused"  # its budget is spent: the held-back runs wait for extend_sweep
        elif status in ("completed", "failed", "empty") and self.may_ask(sweep, runs):
            status = "running"  # between a run's end and the next configuration it asks for
        return SweepRow(
            id=sweep.id,
            name=sweep.name,
            goal=sweep.goal,
            status=status,  # type: ignore[arg-type]
            parallel=sweep.parallel,
            progress=progress_of(counts, waiting),
            created_at=iso(sweep.created_at) or "",
        )

    def list(self, limit: int = 20) -> list[SweepRow]:
        """The newest sweeps with their progress (counted in SQL: core.search.sweep_list)."""
        with self.store.sql.snapshot() as conn:
            rows = newest(conn, limit)
            ids = [r.id for r in rows]
            # Only an adaptive or budgeted sweep can be paused by its budget or between asks
            # (every sweep's search holds its direction and backend).
            searching = {
                r[0]
                for r in conn.execute(
                    "SELECT id FROM sweeps WHERE (method = 'tpe' OR json_extract(search, '$.budget') "
                    f"IS NOT NULL) AND id IN ({', '.join('?' * len(ids))})",
                    ids,
                )
            }
        for row in rows:
            if row.id in searching:  # adaptive or budgeted: paused by its budget, or between asks
                row.status = self.row(self.load(row.id), self.runs_of(row.id)).status
        return rows

    def get(
        self,
        sweep_id: str,
        metric: str | None = None,
        direction: str = "min",
        *,
        offset: int = 0,
        limit: int = MAX_DETAIL_RUNS,
    ) -> SweepDetail:
        """Status, progress, a page of runs and, with ``metric``, the best run (core.search.sweep_detail)."""
        return sweep_detail(self, sweep_id, metric, direction, offset=offset, limit=limit)

    def stop(self, sweep_id: str) -> SweepStopped:
        """Held-back and ready runs never start; active runs are stopped (core.search.sweep_stop)."""
        return stop_sweep(self, sweep_id)
