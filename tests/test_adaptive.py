"""Adaptive (TPE) sweeps: asked when slots free, rebuilt from the store, never asked twice."""

from __future__ import annotations

import subprocess
import textwrap
from collections import Counter
from pathlib import Path

import pytest
from sqlmodel import col, select

from mcp_server.core.errors import InvalidInput
from mcp_server.core.services import Services
from mcp_server.core.storage.models import Event, Run, SweepTrial
from tests.helpers import PYTHON
from tests.test_sweeps import max_concurrency, settle_until_done

# A smooth objective with its optimum 1.0 at x=0.3, y=0.6; it logs a short curve towards it.
OBJECTIVE = """import json, os, sys, time
x, y = float(sys.argv[1]), float(sys.argv[2])
with open(os.environ["RESEARCH_METRICS_FILE"], "a") as f:
    for step in range(3):
        loss = 1 + (x - 0.3) ** 2 + (y - 0.6) ** 2 + 0.1 / (step + 1)
        f.write(json.dumps({"step": step, "loss": loss}) + "\\n")
        f.flush()
        time.sleep(float(os.environ.get("STEP_S", "0")))
"""
SPACE = {"x": {"min": 0.0, "max": 1.0}, "y": {"min": 0.0, "max": 1.0}}


@pytest.fixture
def objective(workdir: Path) -> str:
    (workdir / "objective.py").write_text(OBJECTIVE)
    return f"{PYTHON} objective.py {{x}} {{y}}"


def trials(services: Services, sweep_id: str) -> list[SweepTrial]:
    with services.store.read() as s:
        return list(s.exec(select(SweepTrial).where(SweepTrial.sweep_id == sweep_id)).all())


def test_a_tpe_sweep_asks_one_configuration_per_free_slot_until_its_run_budget(
    services: Services, workdir: Path, objective: str
) -> None:
    sweep = services.sweeps.create(
        name="tpe", goal="find the minimum", base_command=objective, parameters=SPACE, method="tpe",
        max_runs=6, parallel=2, metric="loss", seed=7, workdir=str(workdir), env={"STEP_S": "0.4"},
    )  # fmt: skip
    assert sweep.method == "tpe" and sweep.progress.total == 2  # asked for its two slots only
    assert sweep.metric == "loss" and sweep.direction == "min"
    done = settle_until_done(services, sweep.id, timeout=90)
    assert done.status == "completed" and done.progress.finished == 6
    assert sorted(t.number for t in trials(services, sweep.id)) == [0, 1, 2, 3, 4, 5]
    assert max_concurrency(services, sweep.id) == 2
    assert done.best is not None and done.best.value < 1.5
    assert "all 6 trials asked" in done.note
    runs = services.sweeps.runs_of(sweep.id)
    assert all(0 <= r.params["x"] <= 1 and 0 <= r.params["y"] <= 1 for r in runs)
    assert runs[0].command.startswith(PYTHON) and str(runs[0].params["x"]) in runs[0].command

    more = services.sweeps.extend(sweep.id, max_runs=8, configs=[{"x": 0.3, "y": 0.6}])
    assert more.max_runs == 8
    done = settle_until_done(services, sweep.id, timeout=90)
    assert done.progress.finished == 8 and done.best is not None and done.best.params == {"x": 0.3, "y": 0.6}
    assert sorted(t.number for t in trials(services, sweep.id)) == list(range(8))


def test_tpe_needs_what_it_optimises_and_refuses_before_writing(services: Services, workdir: Path) -> None:
    for kwargs, message in (
        ({}, "metric .*max_runs .*parallel"),
        ({"metric": "loss", "max_runs": 4, "parallel": 2, "auto_start": False}, "auto_start=false"),
        ({"metric": "loss", "max_runs": 4, "parallel": 2, "pruner": "best"}, "pruner 'best' is not known"),
        ({"metric": "loss", "max_runs": 4, "parallel": 2, "budget": {"gpus": 1}}, "unknown budget keys"),
    ):
        with pytest.raises(InvalidInput, match=message):
            services.sweeps.create(
                name="bad", goal="g", base_command="echo {x}", parameters=SPACE, method="tpe",
                workdir=str(workdir), **kwargs,
            )  # fmt: skip
    assert services.sweeps.list() == [] and services.runs.list().total == 0


_DRIVER = textwrap.dedent(
    """
    import sys, time
    from mcp_server.core.services import Services
    sv = Services(sys.argv[1])
    deadline = time.monotonic() + 90
    while time.monotonic() < deadline:
        sv.settler.tick()
        sv.sweeps.fill(sys.argv[2])
        if sv.sweeps.get(sys.argv[2]).status not in ("running", "pending"):
            break
    """
)


def test_two_servers_driving_one_adaptive_sweep_never_ask_a_trial_twice_nor_exceed_parallel(
    services: Services, workdir: Path, objective: str
) -> None:
    sweep = services.sweeps.create(
        name="race", goal="contention", base_command=objective, parameters=SPACE, method="tpe",
        max_runs=9, parallel=3, metric="loss", workdir=str(workdir),
    )  # fmt: skip
    drivers = [
        subprocess.Popen([PYTHON, "-c", _DRIVER, str(services.state.root), sweep.id], stderr=subprocess.PIPE)
        for _ in range(2)
    ]
    for proc in drivers:
        _, err = proc.communicate(timeout=120)
        assert proc.returncode == 0, err.decode()[-2000:]
    done = settle_until_done(services, sweep.id, timeout=60)
    assert done.progress.total == 9 and done.progress.finished == 9
    numbers = [t.number for t in trials(services, sweep.id)]
    assert sorted(numbers) == list(range(9))  # each trial asked once
    with services.store.read() as s:
        runs = s.exec(select(Run).where(Run.sweep_id == sweep.id)).all()
        launches = Counter(
            e.run_id
            for e in s.exec(select(Event).where(Event.kind == "run_status").order_by(col(Event.id))).all()
            if e.data["status"] == "launching"
        )
    assert {r.options["trial"] for r in runs} == set(range(9))
    assert all(launches[r.id] == 1 for r in runs)  # each launched once
    assert max_concurrency(services, sweep.id) <= 3
    # a process that lost a claim removed the run dir it had prepared
    assert len(list((services.state.root / "runs").iterdir())) == 9
