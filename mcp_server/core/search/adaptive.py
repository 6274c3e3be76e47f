"""Adaptive sweeps (method='tpe'): ask for the next configuration when a slot frees.

There is no daemon and no long-lived study. Whoever fills the sweep (a server, or the
sidecar of a run that just ended: ``SweepService.fill``) reads the sweep's trials from the
store — each ended run told as complete with its best value of the metric, pruned runs as
pruned, active ones as running — rebuilds an Optuna study (``core.search.optuna_study``) and asks
it, outside any lock. It then claims the next trial number in the write transaction that
creates the run, held back like any sweep run beyond its cap: the (sweep, number) key is
unique and the transaction re-counts the sweep's active runs, so two processes asking at
once never create one trial twice nor exceed ``parallel``; the loser reads again and
asks again. The claimed run is launched by ``fill``'s usual claim of held-back runs.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from sqlalchemy.exc import IntegrityError
from sqlmodel import Session, col, func, select

from mcp_server.core.execution.launch import read_env, write_env
from mcp_server.core.execution.reconcile import transition
from mcp_server.core.execution.run_status import ACTIVE, RunStatus
from mcp_server.core.execution.sidecars import wait_drained
from mcp_server.core.search.optuna_study import COMPLETE, FAIL, PRUNED, RUNNING, TrialFacts
from mcp_server.core.search.sweep_search import spent_reason
from mcp_server.core.search.sweep_space import render_command
from mcp_server.core.storage.models import MetricSeries, Run, Sweep, SweepTrial
from mcp_server.core.storage.store import now

if TYPE_CHECKING:
    from mcp_server.core.search.sweeps import SweepService

log = logging.getLogger(__name__)

_ACTIVE = tuple(s.value for s in ACTIVE)
MAX_ASK_ROUNDS = 64  # asks per fill (a slot each), retries after a lost claim included
DRAIN_RECENT_S = 30.0  # runs ended this recently are waited for, so their last values count


def startup_trials(max_runs: int) -> int:
    """Random configurations TPE starts from: a quarter of the run budget, 3 to 10."""
    return max(3, min(10, max_runs // 4))


def trial_facts(s: Session, sweep: Sweep, numbered_only: bool) -> list[TrialFacts]:
    """The sweep's trials as the store holds them now, in trial-number order."""
    search = sweep.search or {}
    metric, direction = search.get("metric"), search.get("direction", "min")
    runs = list(s.exec(select(Run).where(col(Run.sweep_id) == sweep.id).order_by(col(Run.pk))).all())
    rows = {t.run_id: t for t in s.exec(select(SweepTrial).where(col(SweepTrial.sweep_id) == sweep.id)).all()}
    series = {}
    if metric:
        found = s.exec(
            select(MetricSeries).where(
                col(MetricSeries.run_id).in_([r.id for r in runs]), MetricSeries.key == metric
            )
        ).all()
        series = {m.run_id: m for m in found}
    facts = []
    for run in runs:
        row = rows.get(run.id)
        if numbered_only and (row is None or row.number is None):
            continue
        m = series.get(run.id)
        best = None if m is None else (m.min_value if direction == "min" else m.max_value)
        fact = TrialFacts(
            run_id=run.id, params=dict(run.params or {}), state=FAIL, number=row.number if row else None
        )
        if row is not None and row.pruned:
            fact.state = PRUNED
            if row.pruned_step is not None and row.pruned_value is not None:
                fact.intermediate = {row.pruned_step: row.pruned_value}
        elif run.status in _ACTIVE or run.status == RunStatus.READY.value:
            fact.state = RUNNING
        elif run.status == RunStatus.FINISHED.value and best is not None:
            fact.state, fact.value = COMPLETE, best
            if m is not None and m.last_step is not None and m.last_value is not None:
                fact.intermediate = {m.last_step: m.last_value}
        facts.append(fact)
    facts.sort(key=lambda f: f.number if f.number is not None else 1 << 30)
    return facts


def _count_active(s: Session, sweep_id: str) -> int:
    query = (
        select(func.count())
        .select_from(Run)
        .where(col(Run.sweep_id) == sweep_id, col(Run.status).in_(_ACTIVE))
    )
    return int(s.exec(query).one())


def ask_into(service: SweepService, sweep_id: str) -> int:
    """Ask for configurations while an adaptive sweep has free slots and budget; each one
    becomes a held-back run. Returns how many were created."""
    from mcp_server.core.search import optuna_study  # Optuna loads with the first adaptive sweep

    made = 0
    for _ in range(MAX_ASK_ROUNDS):
        recent = [
            r.id for r in service.runs_of(sweep_id) if r.ended_at and now() - r.ended_at < DRAIN_RECENT_S
        ]
        if pending := [rid for rid in recent if rid not in service.drained]:
            wait_drained(service.store, pending)
        with service.store.read() as s:
            sweep = s.exec(select(Sweep).where(Sweep.id == sweep_id)).first()
            if sweep is None or sweep.method != "tpe" or sweep.parallel is None or sweep.max_runs is None:
                return made
            if (sweep.search or {}).get("stopped"):
                return made
            facts = trial_facts(s, sweep, numbered_only=True)
            active = _count_active(s, sweep_id)
            runs = list(s.exec(select(Run).where(col(Run.sweep_id) == sweep_id)).all())
        if active >= sweep.parallel or len(facts) >= sweep.max_runs or spent_reason(sweep, runs, now()):
            return made
        number = 1 + max((f.number for f in facts if f.number is not None), default=-1)
        direction = sweep.search.get("direction", "min")
        startup = startup_trials(sweep.max_runs)
        params = optuna_study.ask(direction, sweep.parameters, facts, sweep.seed or 0, startup, number)
        claimed = claim_trial(service, sweep, params, number)
        if claimed is None:
            return made  # the sweep filled up meanwhile
        made += int(claimed)
    return made


def sweep_env(service: SweepService, sweep_id: str) -> dict[str, str]:
    """The sweep's env values (from before sweeps kept their own: its first run's)."""
    from mcp_server.core.execution.jobfiles import JobFiles

    own = JobFiles(service.state.sweep_dir(sweep_id))
    if own.env.exists():
        return read_env(own)
    runs = service.runs_of(sweep_id)
    return read_env(service.runs.files(runs[0].id)) if runs else {}


def next_number(service: SweepService, sweep_id: str) -> int:
    with service.store.read() as s:
        top = s.exec(select(func.max(SweepTrial.number)).where(SweepTrial.sweep_id == sweep_id)).one()
    return 0 if top is None else int(top) + 1


def claim_trial(
    service: SweepService, sweep: Sweep, params: Mapping[str, Any], number: int, *, check_slot: bool = True
) -> bool | None:
    """Create a held-back run of ``sweep`` for ``params`` as trial ``number``.

    True: created. False: another process claimed that number first (ask again). None: the
    sweep has no free slot any more. Without ``check_slot`` (configurations added by
    extend_sweep) the run waits for its turn like any held-back run. The run is staged and
    committed like any new run (``RunService.stage``/``commit``): it exists whole, or not."""
    runs = service.runs
    search = sweep.search or {}
    env = sweep_env(service, sweep.id)
    width = max(2, len(str(sweep.max_runs or 0)))
    fields, clean_env = runs.prepare(
        name=f"{sweep.name[: 63 - width]}-{number + 1:0{width}d}",
        command=render_command(sweep.base_command or "", dict(params)),
        workdir=sweep.workdir,
        sweep_id=sweep.id,
        gpus=sweep.gpus_per_run,
        env=env,
        params=dict(params),
        backend=search.get("backend") or sweep.backend,
        options=search.get("options"),
        new_sweep=True,
    )
    fields["options"]["trial"] = number
    run = runs.new_run(fields)
    path = runs.stage(run, lambda files: write_env(files, clean_env), auto_start=False)

    def claim(s: Session) -> None:
        taken = s.exec(select(SweepTrial).where(SweepTrial.sweep_id == sweep.id, SweepTrial.number == number))
        if taken.first() is not None:
            raise _Lost
        if check_slot and sweep.parallel is not None and _count_active(s, sweep.id) >= sweep.parallel:
            raise _Full

    def hold_back(s: Session) -> None:
        t = now()
        s.add(SweepTrial(run_id=run.id, sweep_id=sweep.id, number=number, created_at=t, updated_at=t))
        s.flush()  # the unique (sweep, number) key fails here if another process won the race
        transition(s, run, RunStatus.QUEUED, f"waiting: sweep {sweep.name} asked for trial {number}")

    try:
        runs.commit([(run, path)], before=claim, after=hold_back)  # removes the staged dir on failure
    except (_Lost, IntegrityError):
        return False
    except _Full:
        return None
    return True


class _Lost(Exception):
    """Another process claimed the trial number first."""


class _Full(Exception):
    """The sweep has no free slot any more."""
