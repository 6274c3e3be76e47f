"""Early stopping: a sweep's pruner stops hopeless runs, with the reason, and spares the best."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

import pytest

from mcp_server.core.search import pruning
from mcp_server.core.services import Services
from tests.helpers import PYTHON
from tests.test_sweeps import settle_until_done

# A run of quality q logs a loss curve that falls towards q: a worse q is worse at every step.
CURVE = """import json, os, sys, time
q = float(sys.argv[1])
with open(os.environ["RESEARCH_METRICS_FILE"], "a") as f:
    for step in range(0, 200, 10):
        f.write(json.dumps({"step": step, "val_loss": q * (1 + 20 / (step + 10))}) + "\\n")
        f.flush()
        time.sleep(0.1)
"""
TOP = [1.0, 1.1, 1.2]
BAD = [9.0, 8.0, 7.0, 10.0, 6.0]
# Mediocre runs first (as a sweep of a new problem often starts), then the others mixed.
ORDER = [3.0, 1.0, 2.5, 1.1, 9.0, 1.2, 8.0, 2.0, 7.0, 10.0, 6.0, 2.2]


@pytest.fixture
def curve(workdir: Path, monkeypatch: pytest.MonkeyPatch) -> str:
    monkeypatch.setenv("RESEARCH_MCP_PRUNE_CHECK_S", "0.2")  # sidecars inherit it
    (workdir / "curve.py").write_text(CURVE)
    return f"{PYTHON} curve.py {{q}}"


@pytest.mark.serial  # timing-sensitive: measured alone (see conftest)
def test_the_median_pruner_stops_clearly_bad_runs_early_and_never_the_top_three(
    services: Services, workdir: Path, curve: str
) -> None:
    sweep = services.sweeps.create(
        name="prune", goal="stop hopeless runs", base_command=curve, parameters={"q": ORDER},
        parallel=3, metric="val_loss", pruner="median", workdir=str(workdir),
    )  # fmt: skip
    assert sweep.pruner == "median"
    done = settle_until_done(services, sweep.id, timeout=120)
    runs = {r.params["q"]: r for r in services.sweeps.runs_of(sweep.id)}
    pruned = {q for q, r in runs.items() if r.status == "stopped"}
    assert not pruned & set(TOP), {q: runs[q].status_reason for q in pruned & set(TOP)}
    assert len(pruned & set(BAD)) >= len(BAD) / 3, {q: runs[q].status for q in BAD}
    assert all(runs[q].status == "finished" for q in TOP)
    assert done.progress.pruned == len(pruned) and done.progress.stopped == len(pruned)
    example = runs[next(iter(pruned & set(BAD)))]
    assert example.status_reason.startswith("pruned at step ")
    assert "worse than the median" in example.status_reason and "finished runs" in example.status_reason
    for q in pruned:  # stopped early: fewer points than the 20 a run logs
        assert services.metrics.get([runs[q].id], ["val_loss"]).runs[0].series[0].count < 20
    assert done.best is not None and done.best.params == {"q": 1.0}


def _series(conn: sqlite3.Connection, run_id: str, points: dict[int, float]) -> None:
    """A run's stored metric, as its sidecar would have written it."""
    steps = sorted(points)
    values = [points[k] for k in steps]
    cur = conn.execute(
        "INSERT INTO metric_series (run_id, key, count, first_step, last_step, last_value, min_value, "
        "min_step, max_value, max_step) VALUES (?, 'loss', ?, ?, ?, ?, ?, ?, ?, ?)",
        (run_id, len(steps), steps[0], steps[-1], values[-1], min(values),
         steps[values.index(min(values))], max(values), steps[values.index(max(values))]),
    )  # fmt: skip
    for step, value in zip(steps, values, strict=True):
        conn.execute(
            "INSERT INTO metric_points (series_id, step, value, ts) VALUES (?, ?, ?, 0)",
            (cur.lastrowid, step, value),
        )


def test_successive_halving_judges_a_run_at_its_highest_rung_from_stored_metrics(
    services: Services, workdir: Path
) -> None:
    sweep = services.sweeps.create(
        name="sha", goal="g", base_command="echo {q}", parameters={"q": [1, 2, 3, 4, 5]}, parallel=5,
        metric="loss", pruner="halving", workdir=str(workdir), auto_start=False,
    )  # fmt: skip
    ids = [r.id for r in sweep.runs]
    steps = [1, 3, 9, 27, 81, 100]
    conn = sqlite3.connect(services.state.db_path)
    with conn:
        for i, run_id in enumerate(ids[:3]):  # finished runs: quality 1, 2, 3 at every step
            conn.execute("UPDATE runs SET status = 'finished' WHERE id = ?", (run_id,))
            _series(conn, run_id, {s: float(i + 1) for s in steps})
        for run_id in ids[3:]:
            conn.execute("UPDATE runs SET status = 'running' WHERE id = ?", (run_id,))
        _series(conn, ids[3], {1: 4.0, 3: 4.0, 9: 4.0, 30: 4.0})  # worse than all: pruned at rung 3
        _series(conn, ids[4], {1: 0.5, 3: 0.5, 9: 0.5, 30: 0.5})  # better than all: kept
    search = json.loads(conn.execute("SELECT search FROM sweeps").fetchone()[0])
    bad = pruning.check(conn.execute, ids[3], sweep.id, search, min_runs=3)
    good = pruning.check(conn.execute, ids[4], sweep.id, search, min_runs=3)
    assert good is not None and not good.prune
    assert bad is not None and bad.prune and bad.step == 30
    assert bad.reason == (
        "pruned at step 30: loss 4 not in the best 1/3 of the 5 runs that reached rung 3 (step 27)"
    )
    with conn:
        assert pruning.record(conn.execute, ids[3], sweep.id, bad, 1.0)
        assert not pruning.record(conn.execute, ids[3], sweep.id, bad, 2.0)  # asked once
    row = conn.execute("SELECT pruned_step FROM sweep_trials WHERE run_id = ?", (ids[3],)).fetchone()
    assert row == (30,)
    conn.close()
