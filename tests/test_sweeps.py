"""Sweeps through the core services: their logic on the in-process fake backend (tests/fake_backend.py),
what needs sidecars (metrics, ranking) or real processes on the local tmux backend."""

import subprocess
import textwrap
from pathlib import Path

import pytest
from sqlmodel import col, select

from mcp_server.core.errors import Conflict, InvalidInput, NotFound
from mcp_server.core.search.sweeps import derive_status
from mcp_server.core.services import Services
from mcp_server.core.storage.models import Event, Run
from tests.helpers import PYTHON, wait_for


def max_concurrency(services: Services, sweep_id: str) -> int:
    """Replay the event feed (commit order) and return the most runs of the sweep ever submitted at once."""
    with services.store.read() as s:
        ids = set(s.exec(select(Run.id).where(Run.sweep_id == sweep_id)).all())
        events = s.exec(select(Event).where(Event.kind == "run_status").order_by(col(Event.id))).all()
    active: set[str] = set()
    most = 0
    for e in events:
        if e.run_id not in ids:
            continue
        if e.data["status"] == "launching":
            active.add(e.run_id)
        elif e.data["status"] in ("finished", "failed", "stopped", "lost"):
            active.discard(e.run_id)
        most = max(most, len(active))
    return most


def settled(services: Services) -> bool:
    """Record run endings now (what a server's watcher or a sidecar does continuously)."""
    services.settler.tick()
    return True


def settle_until_done(services: Services, sweep_id: str, timeout: float = 30):  # type: ignore[no-untyped-def]
    def done():  # type: ignore[no-untyped-def]
        services.settler.tick()
        sweep = services.sweeps.get(sweep_id)
        return sweep.status not in ("running", "pending") and sweep

    return wait_for(done, timeout, what=f"sweep {sweep_id} to end")


def test_parallel_caps_active_runs_and_holds_the_rest_back_in_fifo_order(
    fake_backend: object, services: Services, workdir: Path
) -> None:
    sweep = services.sweeps.create(
        name="grid",
        goal="which lr and bs",
        base_command="sleep 0.3; echo lr={lr}",
        parameters={"lr": [0.1, 0.01], "bs": [16, 32, 64]},
        parallel=2,
        workdir=str(workdir),
        backend="fake",
    )
    # Two launched (they may have ended already: 0.3 s is short on a loaded machine), four held.
    assert sweep.progress.total == 6 and sweep.progress.waiting == 4
    assert sweep.progress.active + sweep.progress.done == 2
    held = [r for r in sweep.runs if r.status == "queued"]
    assert [r.name for r in held] == ["grid-03", "grid-04", "grid-05", "grid-06"]
    assert held[0].status_reason == "waiting: sweep grid has 2 of 2 runs active (parallel=2)"
    for row in held:  # held back means not submitted: no launch script, no tmux window
        assert services.runs.load(row.id).launched_at is None
        assert not services.runs.files(row.id).launch.exists()
    done = settle_until_done(services, sweep.id)
    assert done.status == "completed" and done.progress.finished == 6
    assert max_concurrency(services, sweep.id) == 2
    with services.store.read() as s:
        runs = s.exec(select(Run).where(Run.sweep_id == sweep.id).order_by(col(Run.pk))).all()
    launch_order = sorted(runs, key=lambda r: r.launched_at or 0)
    assert [r.name for r in launch_order] == [r.name for r in runs]  # FIFO
    assert runs[3].command == "sleep 0.3; echo lr=0.01 --bs=16"
    assert services.runs.logs(runs[3].id).text == "lr=0.01 --bs=16\n"


_SETTLER = textwrap.dedent(
    """
    import sys, time
    from mcp_server.core.services import Services
    sv = Services(sys.argv[1])
    deadline = time.monotonic() + 40
    while time.monotonic() < deadline:
        sv.settler.tick()
        if not sv.reconciler.watched_runs():
            break
        time.sleep(0.01)
    """
)


def test_two_processes_settling_at_once_never_exceed_the_cap(services: Services, workdir: Path) -> None:
    sweep = services.sweeps.create(
        name="race",
        goal="cap under contention",
        base_command="sleep 0.05; true",
        parameters={"i": list(range(12))},
        parallel=3,
        workdir=str(workdir),
    )
    procs = [
        subprocess.Popen([PYTHON, "-c", _SETTLER, str(services.state.root)], stderr=subprocess.PIPE)
        for _ in range(2)
    ]
    for proc in procs:
        _, err = proc.communicate(timeout=60)
        assert proc.returncode == 0, err.decode()[-2000:]
    done = settle_until_done(services, sweep.id)
    assert done.progress.finished == 12
    assert max_concurrency(services, sweep.id) == 3


def test_create_run_joins_a_sweep_under_its_cap_and_max_runs(
    fake_backend: object, services: Services, workdir: Path
) -> None:
    sweep = services.sweeps.create(
        name="box", goal="manual runs", parallel=1, max_runs=3, workdir=str(workdir), backend="fake"
    )
    assert sweep.status == "empty" and sweep.progress.total == 0
    gate = workdir / "gate"
    first = services.runs.create(
        name="a",
        command="while [ ! -f gate ]; do sleep 0.02; done",
        workdir=str(workdir),
        sweep_id=sweep.id,
        backend="fake",
    )
    second = services.runs.create(
        name="b", command="echo b", workdir=str(workdir), sweep_id=sweep.id, backend="fake"
    )
    assert first.status in ("launching", "running")  # admitted (its job may already have started)
    assert second.status == "queued" and services.runs.load(second.id).launched_at is None
    assert "1 of 1 runs active" in second.status_reason
    ready = services.runs.create(
        name="c", command="echo c", workdir=str(workdir), sweep_id=sweep.id, auto_start=False, backend="fake"
    )
    with pytest.raises(Conflict, match="already has 3 runs, its max_runs"):
        services.runs.create(
            name="d", command="true", workdir=str(workdir), sweep_id=sweep.id, backend="fake"
        )
    gate.touch()
    wait_for(lambda: settled(services) and services.runs.get(second.id).status == "finished")
    # start_run of a ready sweep run goes through the cap too
    assert services.runs.start(ready.id).status in ("launching", "running", "finished")
    assert services.sweeps.get(sweep.id).progress.total == 3


def test_a_held_back_run_can_be_stopped_and_is_never_launched(
    fake_backend: object, services: Services, workdir: Path
) -> None:
    sweep = services.sweeps.create(
        name="stop", goal="g", base_command="sleep 0.2; echo {i}", parameters={"i": [1, 2, 3]}, parallel=1,
        workdir=str(workdir), backend="fake",
    )  # fmt: skip
    held = sweep.runs[1]
    assert held.status == "queued"
    stopped = services.runs.stop(held.id)
    assert stopped.status == "stopped" and stopped.status_reason == "stopped before it was launched"
    done = settle_until_done(services, sweep.id)
    assert (done.progress.finished, done.progress.stopped) == (2, 1) and done.status == "completed"
    assert services.runs.load(held.id).launched_at is None
    assert max_concurrency(services, sweep.id) == 1


def test_a_plain_sweep_is_read_and_listed_from_counts_without_loading_its_runs(
    fake_backend: object, services: Services, workdir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """get_sweep and the sweep list of experiment://context count a grid sweep's runs in SQL; only
    an adaptive or budgeted sweep reads them as rows (spent GPU-hours, trials asked). Loading
    them for every sweep made the context 30x its raw SQL with 10,000 runs (bench.list_runs)."""
    sweep = services.sweeps.create(
        name="plain", goal="g", base_command="echo {i}", parameters={"i": [1, 2, 3]}, metric="loss",
        workdir=str(workdir), backend="fake", auto_start=False,
    )  # fmt: skip
    budgeted = services.sweeps.create(
        name="budgeted", goal="g", base_command="echo {i}", parameters={"i": [1, 2]},
        budget={"gpu_hours": 5}, workdir=str(workdir), backend="fake", auto_start=False,
    )  # fmt: skip
    loaded: list[str] = []
    runs_of = services.sweeps.runs_of

    def counted(sweep_id: str) -> list[Run]:
        loaded.append(sweep_id)
        return runs_of(sweep_id)

    monkeypatch.setattr(services.sweeps, "runs_of", counted)
    assert services.sweeps.get(sweep.id).progress.total == 3
    assert {row.id: row.progress.total for row in services.sweeps.list()} == {sweep.id: 3, budgeted.id: 2}
    assert sweep.id not in loaded
    assert services.sweeps.get(budgeted.id).budget == {"gpu_hours": 5, "gpu_hours_spent": 0.0}
    assert budgeted.id in loaded


def test_unknown_sweeps_are_refused_before_anything_is_written(services: Services, workdir: Path) -> None:
    with pytest.raises(NotFound, match="no sweep with id"):
        services.runs.create(
            name="x", command="true", workdir=str(workdir), sweep_id="sweep-20000101-000000-00000000"
        )
    with pytest.raises(InvalidInput, match="not a valid sweep id"):
        services.sweeps.get("../etc")
    assert services.runs.list().total == 0
    assert list(services.state.runs_dir.iterdir()) == []


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"parameters": {"lr": [1]}}, "parameters need base_command"),
        ({"name": "a b"}, "sweep name 'a b' is not allowed"),
        ({"goal": " "}, "goal must say"),
        ({"parallel": 0}, "parallel=0 is out of range"),
        ({"base_command": "x {lr}", "parameters": {"lr": [1, 2, 3]}, "max_runs": 2}, "more than max_runs=2"),
        ({"backend": "cloud"}, "valid: auto, local"),
        ({"workdir": "/no/such/dir"}, "does not exist"),
        ({"backend": "local", "options": {"partition": "gpu"}}, "partition is for backend 'slurm'"),
        ({"backend": "slurm", "options": {"extra_args": ["--outp=/tmp/x"]}}, "may not set --outp"),
    ],
)
def test_bad_sweeps_change_nothing(services: Services, workdir: Path, kwargs: dict, message: str) -> None:
    args = {"name": "s", "goal": "g", "workdir": str(workdir), **kwargs}
    with pytest.raises(InvalidInput, match=message):
        services.sweeps.create(**args)
    assert services.sweeps.list() == [] and services.runs.list().total == 0


def test_best_run_comes_from_the_metrics_runs_log(services: Services, workdir: Path) -> None:
    # Each job appends JSON lines to $RESEARCH_METRICS_FILE, the way training scripts do.
    script = (
        'for l in $(echo {losses}); do echo "{\\"step\\": 1, \\"loss\\": $l, \\"acc\\": 0.5}" '
        '>> "$RESEARCH_METRICS_FILE"; done'
    )
    sweep = services.sweeps.create(
        name="best",
        goal="lowest loss",
        base_command=script,
        parameters={"losses": ["0.9 0.5 0.7", "0.8 0.3 0.4", "0.6 0.6 0.6"]},
        workdir=str(workdir),
    )
    settle_until_done(services, sweep.id)
    low = services.sweeps.get(sweep.id, metric="loss", direction="min")
    assert low.best is not None and low.best.params == {"losses": "0.8 0.3 0.4"}
    assert (low.best.value, low.best.last) == (0.3, 0.4)
    assert [r.metric_value for r in low.runs] == [0.5, 0.3, 0.6]
    high = services.sweeps.get(sweep.id, metric="loss", direction="max")
    assert high.best is not None and high.best.params == {"losses": "0.9 0.5 0.7"} and high.best.value == 0.9
    assert low.metric_keys == ["acc", "loss"]
    none = services.sweeps.get(sweep.id, metric="val_loss")
    # Every run ended: the sweep never logged it (not "yet"), and the note says what was read.
    assert none.best is None
    assert "no run of this sweep logged 'val_loss' (read: metrics.jsonl (3 runs))" in none.note


def test_the_best_run_may_end_on_nan(services: Services, workdir: Path) -> None:
    # The case monitoring exists for: the run with the lowest loss diverged at its last step.
    script = 'for l in $(echo {losses}); do echo "{\\"loss\\": $l}" >> "$RESEARCH_METRICS_FILE"; done'
    sweep = services.sweeps.create(
        name="nan", goal="lowest loss", base_command=script,
        parameters={"losses": ["0.9 0.2 NaN", "0.5 0.4 0.45"]}, workdir=str(workdir),
    )  # fmt: skip
    settle_until_done(services, sweep.id)
    ranked = services.sweeps.get(sweep.id, metric="loss", direction="min")
    assert ranked.best is not None and ranked.best.params == {"losses": "0.9 0.2 NaN"}
    assert ranked.best.value == 0.2 and ranked.best.last is None  # NaN/Inf is null, as in get_metrics


def test_a_sweep_asking_more_parallelism_than_the_cpu_run_limit_is_told(
    state_dir: Path, workdir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("RESEARCH_MCP_CPU_RUN_LIMIT", "1")  # on cpu_only, pinned by conftest
    services = Services(state_dir)
    try:
        sweep = services.sweeps.create(
            name="p", goal="g", base_command="sleep 0.2 # {i}", parameters={"i": [1, 2, 3]}, parallel=2,
            workdir=str(workdir),
        )  # fmt: skip
        assert "parallel=2, but this cpu_only machine runs at most 1 local run(s) at once" in sweep.note
        assert "RESEARCH_MCP_CPU_RUN_LIMIT" in sweep.note
        done = settle_until_done(services, sweep.id)
        assert done.progress.finished == 3 and "cpu_only" not in done.note  # nothing left to wait
        fits = services.sweeps.create(
            name="q", goal="g", base_command="true # {i}", parameters={"i": [1, 2]}, parallel=1,
            workdir=str(workdir),
        )  # fmt: skip
        assert "cpu_only" not in fits.note
    finally:
        services.close()


def test_stop_sweep_cancels_held_back_runs_and_stops_active_ones(
    fake_backend: object, services: Services, workdir: Path
) -> None:
    sweep = services.sweeps.create(
        name="long", goal="g", base_command="sleep 300 # {i}", parameters={"i": [1, 2, 3, 4]}, parallel=2,
        workdir=str(workdir), backend="fake",
    )  # fmt: skip
    active = [r.id for r in sweep.runs if r.status != "queued"]
    held = [r.id for r in sweep.runs if r.status == "queued"]
    assert len(active) == 2 and len(held) == 2
    stopped = services.sweeps.stop(sweep.id)
    assert stopped.status == "stopped" and stopped.progress.stopped == 4
    assert sorted(stopped.stopped) == sorted(held + active)
    assert (
        "2 run(s) not yet launched will never start" in stopped.note
        and "2 active run(s) stopped" in stopped.note
    )
    for run_id in held:  # never submitted: no launch script, and no settle launches them later
        assert services.runs.load(run_id).launched_at is None
        assert not services.runs.files(run_id).launch.exists()
    services.settler.tick()
    assert services.sweeps.fill(sweep.id) == [] and services.sweeps.top_up() == []
    again = services.sweeps.stop(sweep.id)
    assert again.stopped == [] and "nothing to stop" in again.note
    with pytest.raises(InvalidInput, match="not a valid sweep id"):
        services.sweeps.stop("nope")


def test_a_crash_between_settle_and_launch_is_repaired_at_start_up(
    fake_backend: object, state_dir: Path, workdir: Path
) -> None:
    first = Services(state_dir)
    first.reconciler.on_terminal.clear()  # as if the process died right after settling
    sweep = first.sweeps.create(
        name="crash", goal="g", base_command="echo {i}", parameters={"i": [1, 2]}, parallel=1,
        workdir=str(workdir), backend="fake",
    )  # fmt: skip
    wait_for(lambda: settled(first) and first.sweeps.get(sweep.id).progress.finished == 1)
    assert first.sweeps.get(sweep.id).progress.waiting == 1
    first.close()
    second = Services(state_dir)
    assert len(second.sweeps.top_up()) == 1
    assert settle_until_done(second, sweep.id).progress.finished == 2
    second.close()


def test_status_is_derived_from_the_runs() -> None:
    assert derive_status({}) == "empty"
    assert derive_status({"queued": 2, "finished": 1}) == "running"
    assert derive_status({"ready": 2}) == "pending"
    assert derive_status({"finished": 1, "failed": 3}) == "completed"
    assert derive_status({"failed": 2, "lost": 1}) == "failed"
    assert derive_status({"stopped": 2}) == "stopped"


def test_best_run_is_ranked_from_the_metrics_the_sidecars_stored(services: Services, workdir: Path) -> None:
    # Each job logs 40 points, the last of them right before it exits: ranking must wait for
    # the sidecars to store everything, not just what they had read when the run ended.
    job = (
        f'{PYTHON} -c \'import json, os; f = open(os.environ["RESEARCH_METRICS_FILE"], "a"); '
        '[f.write(json.dumps({"step": i, "loss": {scale} * (40 - i) + {floor}}) + chr(10))'
        " for i in range(40)]'"
    )
    sweep = services.sweeps.create(
        name="rank", goal="lowest loss", base_command=job, parameters={"scale": [1, 2], "floor": [0.5, 0.25]},
        workdir=str(workdir),
    )  # fmt: skip
    ids = [r.id for r in sweep.runs]
    wait_for(lambda: all(services.runs.get(i).status == "finished" for i in ids), 60, what="sweep runs")
    best = services.sweeps.get(sweep.id, metric="loss", direction="min")
    assert best.best is not None and best.best.params == {"scale": 1, "floor": 0.25}
    assert best.best.value == pytest.approx(1.25) and best.best.step == 39
    worst = services.sweeps.get(sweep.id, metric="loss", direction="max")
    assert worst.best is not None and worst.best.params == {"scale": 2, "floor": 0.5} and worst.best.step == 0
    counts = {m.run_id: m.series[0].count for m in services.metrics.get(ids, keys=["loss"]).runs}
    assert counts == dict.fromkeys(ids, 40)
    assert "logged metrics: loss" in services.sweeps.get(sweep.id, metric="acc").note


def test_slurm_options_reach_every_run_of_the_sweep(services: Services, workdir: Path) -> None:
    sweep = services.sweeps.create(
        name="on-slurm",
        goal="lr on the gpu partition",
        base_command="python train.py --lr {lr}",
        parameters={"lr": [0.1, 0.01]},
        backend="slurm",
        options={"partition": "gpu", "time": "01:00:00"},
        workdir=str(workdir),
        auto_start=False,
    )
    runs = [services.runs.get(r.id) for r in services.runs.list(sweep_id=sweep.id).runs]
    assert len(runs) == 2
    assert all(
        r.backend == "slurm" and r.options["slurm"] == {"partition": "gpu", "time": "01:00:00"} for r in runs
    )


def test_a_refused_random_sweep_leaves_no_sweep_and_no_run(
    fake_gpus: object, services: Services, workdir: Path
) -> None:
    """Each run is checked before the sweep is written: a refusal leaves nothing behind."""
    with pytest.raises(InvalidInput, match="this machine has 4 GPU"):
        services.sweeps.create(
            name="too-big", goal="g", base_command="echo {lr}", parameters={"lr": {"min": 0.1, "max": 1.0}},
            method="random", max_runs=3, gpus_per_run=8, workdir=str(workdir),
        )  # fmt: skip
    assert services.sweeps.list() == []
    assert services.runs.list().total == 0
    assert list(services.state.runs_dir.iterdir()) == []
