"""Cancel a sweep: runs not yet submitted never start, submitted ones are stopped.

Runs held back by the ``parallel`` cap (and ready runs of a sweep created with
``auto_start=false``) are marked stopped in one write transaction. ``SweepService.fill``
claims held-back runs in a write transaction too, so the two are serialized across
processes: a run is either claimed first (and is then stopped below as an active run) or
stopped first (and no later settle can launch it). Active runs are then stopped the way
stop_run stops them, all at once, so a sweep stops in one run's grace periods, not the sum.
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from typing import TYPE_CHECKING

from sqlalchemy import update
from sqlmodel import col, select

from mcp_server.core.errors import Conflict
from mcp_server.core.execution.reconcile import transition
from mcp_server.core.execution.run_status import ACTIVE, RunStatus
from mcp_server.core.storage.models import Run, Sweep
from mcp_server.core.workflow.workflow_views import SweepStopped

if TYPE_CHECKING:
    from mcp_server.core.search.sweeps import SweepService

NOT_SUBMITTED = (RunStatus.READY.value, RunStatus.QUEUED.value)
_ACTIVE = tuple(s.value for s in ACTIVE)
MAX_PARALLEL_STOPS = 16


def stop_sweep(service: SweepService, sweep_id: str) -> SweepStopped:
    sweep = service.load(sweep_id)
    never_started: list[str] = []
    with service.store.write() as s:
        # An adaptive sweep asks for nothing more (its runs' endings would otherwise ask).
        search = s.exec(select(Sweep.search).where(Sweep.id == sweep_id)).first() or {}
        s.execute(update(Sweep).where(col(Sweep.id) == sweep_id).values(search={**search, "stopped": True}))
        query = select(Run).where(
            col(Run.sweep_id) == sweep_id, col(Run.status).in_(NOT_SUBMITTED), col(Run.launched_at).is_(None)
        )
        for run in s.exec(query).all():
            reason = "sweep stopped before the run was launched"
            if transition(s, run, RunStatus.STOPPED, reason, expected=RunStatus(run.status)):
                never_started.append(run.id)
    active = [r.id for r in service.runs_of(sweep_id) if r.status in _ACTIVE and r.launched_at is not None]
    stopped: list[str] = []
    if active:
        workers = min(MAX_PARALLEL_STOPS, len(active))
        with ThreadPoolExecutor(workers, thread_name_prefix="stop-sweep") as pool:
            done = pool.map(lambda rid: _stop(service, rid), active)
            stopped = [run_id for run_id, ok in zip(active, done, strict=True) if ok]
    sweep = service.load(sweep_id)
    service._write_spec(sweep)  # doctor --repair rebuilds it stopped
    runs = service.runs_of(sweep_id)
    row = service.row(sweep, runs)
    parts = []
    if never_started:
        parts.append(f"{len(never_started)} run(s) not yet launched will never start")
    if stopped:
        parts.append(f"{len(stopped)} active run(s) stopped")
    if not parts:
        parts.append("no run of this sweep was waiting or active; nothing to stop")
    return SweepStopped(
        id=sweep.id,
        name=sweep.name,
        status=row.status,
        progress=row.progress,
        stopped=[*never_started, *stopped],
        note="; ".join(parts),
    )


def _stop(service: SweepService, run_id: str) -> bool:
    """Stop one active run; False when it ended meanwhile (nothing left to stop)."""
    try:
        service.runs.stop(run_id)
    except Conflict:
        return False
    return True
