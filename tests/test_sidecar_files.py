"""Framework log files as metric sources, with real runs: found, attributed, read without loss.

The jobs write TensorBoard event files with TensorBoard's own writer (a test dependency),
the way torch's SummaryWriter and Keras' callback do.
"""

from __future__ import annotations

import os
import signal
import sqlite3
import textwrap
import time
from pathlib import Path

import pytest

from mcp_server.core.services import Services
from tests.helpers import PYTHON, sidecar_pids, wait_for
from tests.test_sidecar import ended_and_drained, launch

pytest.importorskip("tensorboard", reason="TensorBoard writes the event files these jobs log to")

WRITER = """
import os, sys, time
from tensorboard.compat.proto import event_pb2, summary_pb2
from tensorboard.summary.writer.event_file_writer import EventFileWriter

def writer(logdir):
    return EventFileWriter(logdir, flush_secs=0.05)

def scalar(w, step, **values):
    value = [summary_pb2.Summary.Value(tag=k, simple_value=v) for k, v in values.items()]
    w.add_event(event_pb2.Event(step=step, wall_time=time.time(), summary=summary_pb2.Summary(value=value)))
"""


def job(body: str) -> str:
    return WRITER + textwrap.dedent(body)


def db(state_dir: Path) -> sqlite3.Connection:
    return sqlite3.connect(state_dir / "research.db")


@pytest.mark.serial  # kills the sidecar three times while the run writes: timed alone
def test_kill_9_while_reading_an_event_file_loses_and_repeats_nothing(
    services: Services, workdir: Path, state_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("RESEARCH_MCP_SIDECAR_DISCOVER_S", "0.1")  # inherited by the sidecars
    steps = 3000
    run = launch(
        services,
        workdir,
        "tb",
        job(f"""
        w = writer("runs/exp")
        for step in range({steps}):
            scalar(w, step, **{{"train/loss": 1.0 / (step + 1), "lr": 0.001 * (1 + step % 7)}})
            if step % 150 == 0:
                w.flush()
                time.sleep(0.1)
        w.close()
        """),
    )
    kills, seen = 0, -1

    def reading_sidecar() -> int | None:
        """A sidecar that has committed event-file points since the last kill (or -1: the run ended)."""
        with db(state_dir) as con:
            row = con.execute("SELECT pid FROM sidecars WHERE run_id = ?", (run.id,)).fetchone()
            read = con.execute(
                "SELECT COALESCE(SUM(records), 0) FROM metric_files WHERE run_id = ?", (run.id,)
            )
            records = read.fetchone()[0]
        if row and row[0] in sidecar_pids(state_dir) and records > seen:
            return row[0]
        return -1 if services.runs.get(run.id).status not in ("launching", "running") else None

    while kills < 8:
        pid = wait_for(reading_sidecar, 15, what="a sidecar reading the event file")
        if pid == -1:
            break
        time.sleep(0.03 * (kills % 4))  # at different moments of its poll
        os.kill(pid, signal.SIGKILL)
        kills += 1
        wait_for(lambda: not sidecar_pids(state_dir), 5, what="the killed sidecar to be gone")
        with db(state_dir) as con:
            (seen,) = con.execute(
                "SELECT COALESCE(SUM(records), 0) FROM metric_files WHERE run_id = ?", (run.id,)
            ).fetchone()
        services.reconciler.reconcile([run.id])  # restarts the dead sidecar of a live run
    assert kills >= 3, "the run ended too fast to kill its sidecar mid-file"
    services.reconciler.reconcile([run.id])
    done = ended_and_drained(services, run.id, timeout=60)
    with db(state_dir) as con:
        rows = con.execute(
            "SELECT s.key, s.source, COUNT(*), COUNT(DISTINCT p.step) FROM metric_points p "
            "JOIN metric_series s ON s.id = p.series_id WHERE s.run_id = ? GROUP BY s.key",
            (run.id,),
        ).fetchall()
        (path, offset, records) = con.execute(
            "SELECT path, offset, records FROM metric_files WHERE run_id = ?", (run.id,)
        ).fetchone()
    assert sorted(rows) == [("lr", "tfevents", steps, steps), ("train/loss", "tfevents", steps, steps)]
    assert path.startswith("runs/exp/events.out.tfevents.") and offset == (workdir / path).stat().st_size
    assert records == steps + 1  # every event once (the first one is the file's version record)
    assert done.monitor is not None and done.monitor.starts >= kills
    loss = next(m for m in done.metrics if m.key == "train/loss")
    assert loss.count == steps and loss.last_step == steps - 1 and loss.best_step == steps - 1


def test_runs_sharing_a_workdir_read_only_their_own_event_files(
    services: Services, workdir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("RESEARCH_MCP_SIDECAR_DISCOVER_S", "0.1")
    (workdir / "old").mkdir()
    stale = workdir / "old" / "events.out.tfevents.1.otherhost.1.0"
    stale.write_bytes(b"")  # written before either run started: never read
    os.utime(stale, (time.time() - 3600, time.time() - 3600))
    body = """
        w = writer(f"runs/{sys.argv[1]}")
        for step in range(40):
            scalar(w, step, loss=float(sys.argv[2]))
            time.sleep(0.05)
        w.close()
    """
    (workdir / "sweep.py").write_text(job(body))
    a = services.runs.create(name="a", command=f"{PYTHON} -u sweep.py a 1.0", workdir=str(workdir))
    b = services.runs.create(name="b", command=f"{PYTHON} -u sweep.py b 2.0", workdir=str(workdir))
    for run, value, mine in ((a, 1.0, "runs/a/"), (b, 2.0, "runs/b/")):
        done = ended_and_drained(services, run.id)
        (loss,) = [m for m in done.metrics if m.key == "loss"]
        assert (loss.count, loss.min, loss.max) == (40, value, value), run.name
        files = [s.path for s in done.monitor.sources if s.kind == "tfevents"]  # type: ignore[union-attr]
        assert len(files) == 1 and files[0].startswith(mine)
