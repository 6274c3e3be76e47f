"""The sidecar watching real tmux runs of small training scripts, against a real SQLite store."""

from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from mcp_server.core.run_views import RunDetail
from mcp_server.core.services import Services
from tests.helpers import PYTHON, sidecar_pids, wait_for


def launch(services: Services, workdir: Path, name: str, script: str) -> RunDetail:
    path = workdir / f"{name}.py"
    path.write_text(textwrap.dedent(script))
    return services.runs.create(name=name, command=f"{PYTHON} -u {name}.py", workdir=str(workdir))


def ended_and_drained(services: Services, run_id: str, timeout: float = 30) -> RunDetail:
    """Wait until the run ended and its sidecar exited (so every line has been read)."""

    def done() -> RunDetail | None:
        run = services.runs.get(run_id)
        ended = run.status in ("finished", "failed", "stopped", "lost")
        return run if ended and run.monitor is not None and run.monitor.exited else None

    return wait_for(done, timeout, interval=0.1, what=f"{run_id} ended and its sidecar exited")


def db(state_dir: Path) -> sqlite3.Connection:
    return sqlite3.connect(state_dir / "research.db")


def test_nan_at_step_50_raises_exactly_one_critical_alert(services: Services, workdir: Path) -> None:
    run = launch(
        services,
        workdir,
        "nan",
        """
        import json, os, time
        f = open(os.environ["RESEARCH_METRICS_FILE"], "a", buffering=1)
        for step in range(100):
            broken = step >= 50
            loss = float("nan") if broken else 2.0 / (1 + 0.1 * step)
            grad = float("inf") if broken else 1.0
            f.write(json.dumps({"step": step, "loss": loss, "grad_norm": grad}) + "\\n")
            time.sleep(0.005)
        """,
    )
    done = ended_and_drained(services, run.id)
    assert done.status == "finished"
    alerts = services.alerts.list(run_id=run.id, status="all").alerts
    assert [(a.kind, a.severity) for a in alerts] == [("nonfinite", "critical")], alerts
    assert alerts[0].data["step"] == 50 and alerts[0].choices == ["Ignore", "Stop run"]
    loss = next(m for m in done.metrics if m.key == "loss")
    assert loss.count == 100 and loss.nonfinite == 50 and loss.first_nonfinite_step == 50
    assert loss.best == pytest.approx(2.0 / (1 + 4.9)) and loss.best_step == 49
    assert done.monitor is not None and done.monitor.ingest.points == 200 and not done.monitor.alive
    log = services.runs.logs(run.id, source="sidecar").text
    assert "NaN at step 50" in log and "exits: the run ended" in log


def test_a_five_fold_spike_raises_one_warning(services: Services, workdir: Path) -> None:
    run = launch(
        services,
        workdir,
        "spike",
        """
        import json, os, random
        rng = random.Random(0)
        with open(os.environ["RESEARCH_METRICS_FILE"], "a") as f:
            for step in range(60):
                loss = 1.0 + rng.uniform(-0.05, 0.05)
                if step == 40:
                    loss *= 5
                f.write(json.dumps({"step": step, "train/loss": loss, "lr": 0.1}) + "\\n")
        """,
    )
    ended_and_drained(services, run.id)
    alerts = services.alerts.list(run_id=run.id).alerts
    assert [(a.kind, a.severity) for a in alerts] == [("spike", "warning")], alerts
    assert (
        alerts[0].data["step"] == 40 and alerts[0].data["ratio"] >= 4.5 and "train/loss" in alerts[0].message
    )


def test_trainer_dicts_without_metrics_jsonl_become_a_loss_series(services: Services, workdir: Path) -> None:
    run = launch(
        services,
        workdir,
        "hf",
        """
        import sys, time
        print("***** Running training *****")
        for i in range(1, 21):
            # tqdm redraws its bar with \\r; the Trainer writes a dict every logging step with
            # tqdm.write, which clears the bar, prints the dict and redraws the bar at its counter.
            bar = f"\\r {i * 5}%|##| {i}/20 [00:0{i % 10}<00:00, 9.5it/s]"
            sys.stdout.write(bar)
            sys.stdout.flush()
            if i % 2 == 0:
                sys.stdout.write("\\r" + " " * 40 + "\\r")
                print({"loss": f"{2.0 / i:.4g}", "grad_norm": "1.5", "learning_rate": "5e-05", "epoch": i})
                sys.stdout.write(bar)
            time.sleep(0.01)
        print()
        print({"train_runtime": 1.2, "train_loss": 0.42, "epoch": 1.0})
        """,
    )
    ended_and_drained(services, run.id)
    answer = services.metrics.get([run.id], keys=["loss", "train/loss"])
    (metrics,) = answer.runs
    (series,) = metrics.series
    assert series.key == "loss" and series.source == "log" and series.count == 10
    assert series.points == [(i, float(f"{2.0 / i:.4g}")) for i in range(2, 21, 2)]  # at the bar's counter
    assert {"learning_rate", "epoch", "grad_norm", "train_loss"} <= set(metrics.keys)
    (missing,) = metrics.missing
    assert missing.key == "train/loss" and "loss" in missing.similar
    # The run ended: the key was never logged (not "yet"), and the answer says what was read.
    assert missing.hint.startswith("this run never logged 'train/loss' (read: output.log)")
    assert metrics.ingest is not None and metrics.ingest.log_parsing and metrics.ingest.log_records == 11


def test_each_printed_trainer_dict_is_a_point_even_with_constant_values(
    services: Services, workdir: Path
) -> None:
    run = launch(
        services,
        workdir,
        "hfconst",
        """
        import sys
        for i in range(1, 6):
            for _ in range(3):  # tqdm redraws the same bar and postfix
                sys.stdout.write(f"\\r{i}/5 [00:0{i}<00:00, 9.5it/s, acc=0.5]")
            print()
            print({"loss": 0.5, "learning_rate": 5e-05, "epoch": i / 5})
        """,
    )
    ended_and_drained(services, run.id)
    (metrics,) = services.metrics.get([run.id], keys=["learning_rate", "loss", "acc"]).runs
    counts = {s.key: s.count for s in metrics.series}
    assert counts == {"learning_rate": 5, "loss": 5, "acc": 5}, counts  # one bar point per step
    lr = next(s for s in metrics.series if s.key == "learning_rate")
    assert [v for _, v in lr.points] == [5e-05] * 5


def test_kill_9_of_the_sidecar_loses_and_duplicates_nothing(
    services: Services, workdir: Path, state_dir: Path
) -> None:
    lines = 4000
    run = launch(
        services,
        workdir,
        "steady",
        f"""
        import json, os, time
        with open(os.environ["RESEARCH_METRICS_FILE"], "a", buffering=1) as f:
            for step in range({lines}):
                f.write(json.dumps({{"step": step, "loss": 1.0 / (step + 1), "acc": step / {lines}}}) + "\\n")
                if step % 200 == 0:
                    time.sleep(0.1)
        """,
    )
    kills, seen_points = 0, -1

    def ingesting_sidecar() -> int | None:
        """The pid of a sidecar that claimed the run and has committed points since the last kill."""
        with db(state_dir) as con:
            row = con.execute("SELECT pid, points FROM sidecars WHERE run_id = ?", (run.id,)).fetchone()
        pids = sidecar_pids(state_dir)
        if row and row[0] in pids and row[1] > seen_points:
            return row[0]
        return -1 if services.runs.get(run.id).status not in ("launching", "running") else None

    while kills < 10:
        pid = wait_for(ingesting_sidecar, 10, what="a sidecar that is ingesting")
        if pid == -1:
            break  # the run ended
        time.sleep(0.05 * (kills % 3))  # kill at different moments of its poll cycle
        os.kill(pid, signal.SIGKILL)
        kills += 1
        wait_for(lambda: not sidecar_pids(state_dir), 5, what="the killed sidecar to be gone")
        with db(state_dir) as con:
            (seen_points,) = con.execute("SELECT points FROM sidecars WHERE run_id = ?", (run.id,)).fetchone()
        # The server's reconcile notices the dead sidecar of a live run and starts another.
        services.reconciler.reconcile([run.id])
    assert kills >= 3, "the run ended too fast to kill its sidecar mid-run"
    services.reconciler.reconcile([run.id])
    done = ended_and_drained(services, run.id)
    with db(state_dir) as con:
        rows = con.execute(
            "SELECT s.key, COUNT(*), COUNT(DISTINCT p.step) FROM metric_points p "
            "JOIN metric_series s ON s.id = p.series_id WHERE s.run_id = ? GROUP BY s.key",
            (run.id,),
        ).fetchall()
        offset, points, starts = con.execute(
            "SELECT metrics_offset, points, starts FROM sidecars WHERE run_id = ?", (run.id,)
        ).fetchone()
    assert sorted(rows) == [("acc", lines, lines), ("loss", lines, lines)]
    assert points == 2 * lines and offset == (Path(done.run_dir) / "metrics.jsonl").stat().st_size
    assert starts >= kills  # (kills + 1, unless the last kill hit a sidecar that had just finished)
    assert {m.key: m.count for m in done.metrics} == {"acc": lines, "loss": lines}


def test_a_second_sidecar_for_the_same_run_steps_aside(
    services: Services, workdir: Path, state_dir: Path
) -> None:
    run = launch(services, workdir, "idle", "import time; print('up', flush=True); time.sleep(30)")
    (first,) = wait_for(lambda: sidecar_pids(state_dir), 10, what="the sidecar")
    twin = subprocess.run(
        [sys.executable, "-m", "sidecar", "--state-dir", str(state_dir), "--run-id", run.id],
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert twin.returncode == 0
    assert sidecar_pids(state_dir) == [first]
    assert (
        f"sidecar pid {first} already watches {run.id}" in services.runs.logs(run.id, source="sidecar").text
    )


FAILURES = {
    "oom": (
        "import sys\n"
        "print('epoch 1 step 3')\n"
        "print('torch.OutOfMemoryError: CUDA out of memory. Tried to allocate 2.00 GiB')\n"
        "sys.exit(1)\n",
        "cuda_oom",
        "CUDA out of memory",
    ),
    "traceback": (
        "def load(path):\n    raise FileNotFoundError(path)\nload('/data/missing.bin')\n",
        "exception",
        "FileNotFoundError: /data/missing.bin",
    ),
    "sigkill": (
        "import os, signal\nprint('about to die', flush=True)\nos.kill(os.getpid(), signal.SIGKILL)\n",
        "signal",
        "",
    ),
}


def test_failed_runs_get_an_alert_with_a_classified_cause(services: Services, workdir: Path) -> None:
    runs = {name: launch(services, workdir, name, body) for name, (body, _, _) in FAILURES.items()}
    for name, run in runs.items():
        done = ended_and_drained(services, run.id)
        assert done.status == "failed", (name, done.status_reason)
        alerts = services.alerts.list(run_id=run.id).alerts
        assert len(alerts) == 1, (name, alerts)
        alert = alerts[0]
        _, cause, evidence = FAILURES[name]
        assert alert.kind == "failure" and alert.severity == "critical" and alert.data["cause"] == cause
        assert alert.choices == ["Ignore", "Rerun"]
        assert evidence in "\n".join(alert.data["lines"])
    sigkill = services.alerts.list(run_id=runs["sigkill"].id).alerts[0]
    assert "SIGKILL" in sigkill.message and sigkill.data["exit_code"] == 137


def test_a_stalled_run_raises_a_stall_warning(
    services: Services, workdir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("RESEARCH_MCP_STALL_S", "1")  # inherited by the sidecar the launch starts
    run = launch(services, workdir, "hang", "import time; print('loading', flush=True); time.sleep(60)")
    alert = wait_for(
        lambda: services.alerts.list(run_id=run.id).alerts, 15, interval=0.2, what="the stall alert"
    )[0]
    assert (
        alert.kind == "stall" and alert.severity == "warning" and "no new metrics or output" in alert.message
    )
    assert services.runs.get(run.id).status == "running"  # a stall alert never touches the run
    time.sleep(1.5)
    assert len(services.alerts.list(run_id=run.id).alerts) == 1  # one alert per quiet spell
    services.runs.stop(run.id)


def test_reconcile_restarts_a_missing_sidecar_only_once(
    services: Services, workdir: Path, state_dir: Path
) -> None:
    run = launch(services, workdir, "wait", "import time; print('up', flush=True); time.sleep(60)")
    first = wait_for(lambda: (m := services.runs.get(run.id).monitor) and m.alive and m, 10, what="a sidecar")
    assert first.pid is not None and first.starts == 1
    os.kill(first.pid, signal.SIGKILL)
    wait_for(lambda: not sidecar_pids(state_dir), 5, what="the sidecar to die")
    # Two server processes (here: two Services on the same state dir) reconcile at once.
    other = Services(state_dir)
    try:
        started = services.sidecars.ensure([services.runs.load(run.id)])
        started += other.sidecars.ensure([other.runs.load(run.id)])
    finally:
        other.close()
    assert started == [run.id]
    (new_pid,) = wait_for(lambda: sidecar_pids(state_dir), 10, what="the restarted sidecar")
    assert new_pid != first.pid
    monitor = wait_for(lambda: (m := services.runs.get(run.id).monitor) and m.starts == 2 and m, 10)
    assert monitor.pid == new_pid and monitor.alive
    services.runs.stop(run.id)
    ended_and_drained(services, run.id)


def test_a_sidecar_started_by_hand_catches_up_on_an_ended_run(
    services: Services, workdir: Path, state_dir: Path
) -> None:
    """No sidecar saw this run (its one was killed at birth); `research-mcp sidecar` reads it all."""
    run = launch(
        services,
        workdir,
        "unseen",
        """
        import json, os
        with open(os.environ["RESEARCH_METRICS_FILE"], "a") as f:
            for step in range(500):
                f.write(json.dumps({"step": step, "loss": 1.0 / (step + 1)}) + "\\n")
            f.write('{"step": 500, "loss": 0.001}')  # the last line never got its newline
        """,
    )
    for pid in wait_for(lambda: sidecar_pids(state_dir), 10, what="the sidecar"):
        os.kill(pid, signal.SIGKILL)
    files = services.runs.files(run.id)
    wait_for(lambda: files.read_exit_code() is not None, 20, what="the job to end")
    cli = subprocess.run(
        [sys.executable, "-m", "mcp_server", "sidecar", run.id, "--state-dir", str(state_dir)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert cli.returncode == 0, cli.stderr
    with db(state_dir) as con:
        status, exit_code = con.execute(
            "SELECT status, exit_code FROM runs WHERE id = ?", (run.id,)
        ).fetchone()
    assert (status, exit_code) == ("finished", 0)  # the hand-started sidecar settled it too
    done = services.runs.get(run.id)
    assert done.monitor is not None and done.monitor.exited and done.monitor.ingest.partial_lines == 1
    (loss,) = done.metrics
    assert loss.count == 501 and loss.last_step == 500 and loss.last == 0.001


def test_the_sidecar_loads_no_heavy_library() -> None:
    """Its idle RSS budget (60 MB) excludes sqlmodel/SQLAlchemy/pydantic, libtmux and litellm."""
    code = (
        "import sys, sidecar.__main__, sidecar.monitor, sidecar.db, sidecar.rules, sidecar.printed\n"
        "import sidecar.sources.files, sidecar.sources.tfevents, sidecar.writer\n"
        "heavy = ('sqlmodel', 'sqlalchemy', 'pydantic', 'libtmux', 'litellm', 'mcp')\n"
        "print(sorted({m.split('.')[0] for m in sys.modules if m.split('.')[0] in heavy}))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"
