"""The monitor loop in-process, poll by poll, on a real store (no job needed: a 'ready' run)."""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from mcp_server.core.backends.slurm.jobs import SlurmJob
from mcp_server.core.monitoring.monitor_settings import MonitorSettings
from mcp_server.core.services import Services
from mcp_server.core.storage.models import Run
from mcp_server.core.storage.store import now
from sidecar.lines import MAX_LINE
from sidecar.monitor import Monitor


@pytest.fixture
def monitor(services: Services, workdir: Path) -> Iterator[Monitor]:
    run = services.runs.create(name="watched", command="true", workdir=str(workdir), auto_start=False)
    m = Monitor(services.state, run.id, MonitorSettings(), launch_grace_s=30)
    assert m.claim()
    m.resync()
    m.refresh_run()
    yield m
    m.db.close()


def progress(m: Monitor) -> dict[str, int]:
    row = m.db.load_progress(m.run_id)
    assert row is not None
    return row


def points(m: Monitor, key: str) -> list[tuple[int, float | None]]:
    rows = m.db.conn.execute(
        "SELECT p.step, p.value FROM metric_points p JOIN metric_series s ON s.id = p.series_id "
        "WHERE s.run_id = ? AND s.key = ? ORDER BY p.id",
        (m.run_id, key),
    )
    return list(rows)


def test_malformed_input_is_tolerated_and_counted(monitor: Monitor) -> None:
    lines = [
        b'{"step": 0, "loss": 1.0, "note": "warmup"}',  # one non-numeric value
        b"Epoch 1 starting",  # not JSON
        b'{"step": 1, "loss": 0.9, "flag": true, "list": [1, 2]}',  # two non-numeric values
        b"x" * (MAX_LINE + 1),  # huge
        b'{"loss": 0.8}',  # no step: its ordinal
        b'{"step": 3, "loss": 0.7}',
    ]
    monitor.files.metrics.write_bytes(b"\n".join(lines) + b'\n{"step": 4, "lo')  # a partial last line
    monitor.tick()
    row = progress(monitor)
    assert (row["bad_lines"], row["non_numeric"], row["huge_lines"], row["partial_lines"]) == (1, 3, 1, 0)
    assert points(monitor, "loss") == [(0, 1.0), (1, 0.9), (2, 0.8), (3, 0.7)]
    with open(monitor.files.metrics, "ab") as fh:
        fh.write(b'ss": 0.6}\n')  # the writer finishes its line
    monitor.tick()
    assert points(monitor, "loss")[-1] == (4, 0.6)
    assert progress(monitor)["metrics_offset"] == monitor.files.metrics.stat().st_size


def test_a_failed_commit_is_retried_without_loss_or_duplicates(monitor: Monitor) -> None:
    # No metrics.jsonl: the monitor reads the printed log, progress-bar redraws included.
    bar = "".join(
        f"\r{i * 100 // 30:3d}%|##| {i}/30 [00:0{i % 10}<00:01, 9.9it/s, loss={1 / i:.4f}]"
        for i in range(1, 31)
        for _ in range(3)
    )
    monitor.files.output.write_text(bar + "\n")
    real_write = monitor.db.write

    @contextmanager
    def crashing_write() -> Iterator[sqlite3.Connection]:
        with real_write() as conn:
            yield conn
            raise OSError("disk full (simulated) before COMMIT")

    monitor.db.write = crashing_write  # type: ignore[method-assign]
    with pytest.raises(OSError, match="simulated"):
        monitor.tick()
    assert points(monitor, "loss") == [] and progress(monitor)["output_offset"] == 0  # rolled back
    monitor.db.write = real_write  # type: ignore[method-assign]
    monitor.tick()
    got = points(monitor, "loss")
    assert [s for s, _ in got] == list(range(1, 31))  # each redrawn value once, none lost
    assert progress(monitor)["output_records"] == 30


def test_a_rewritten_metrics_file_is_read_again_from_the_start(monitor: Monitor) -> None:
    monitor.files.metrics.write_text("".join(json.dumps({"step": s, "loss": 1.0}) + "\n" for s in range(50)))
    monitor.tick()
    monitor.files.metrics.write_text(json.dumps({"step": 0, "loss": 2.0}) + "\n")  # job reopened it with "w"
    monitor.tick()
    assert len(points(monitor, "loss")) == 51 and points(monitor, "loss")[-1] == (0, 2.0)


def test_metrics_jsonl_switches_log_parsing_off_and_owns_its_keys(monitor: Monitor) -> None:
    monitor.files.output.write_text("step 1 loss=0.5\n")
    monitor.tick()
    assert points(monitor, "loss") == [(1, 0.5)] and progress(monitor)["log_parsing"]
    monitor.files.metrics.write_text('{"step": 2, "loss": 0.4}\n')
    with open(monitor.files.output, "a") as fh:
        fh.write("step 2 loss=0.4\n")  # the same number printed: not ingested twice
    monitor.tick()
    # metrics.jsonl, written on purpose, owns 'loss' from now on: the printed point gives way.
    assert points(monitor, "loss") == [(2, 0.4)] and not progress(monitor)["log_parsing"]
    assert monitor.writer.series["loss"].source == "jsonl"


def test_every_printed_trainer_dict_counts_and_a_redrawn_bar_once_per_update(monitor: Monitor) -> None:
    # Trainer dicts have no step, and learning_rate (here also loss) stays the same.
    dicts = "".join(f"{{'loss': 0.5, 'learning_rate': 5e-05, 'epoch': {e / 5}}}\n" for e in range(1, 6))
    monitor.files.output.write_text(dicts)
    monitor.tick()
    assert points(monitor, "learning_rate") == [(i, 5e-05) for i in range(5)]
    assert [v for _, v in points(monitor, "loss")] == [0.5] * 5
    # A bar without a step, redrawn with the same postfix, cut across two reads: one point.
    with open(monitor.files.output, "a") as fh:
        fh.write("\rtraining: 12it [00:01, val_acc=0.75]" * 3)
    monitor.tick()
    with open(monitor.files.output, "a") as fh:
        fh.write("\rtraining: 13it [00:02, val_acc=0.75]" * 2 + "\n")
    monitor.tick()
    assert points(monitor, "val_acc") == [(12, 0.75), (13, 0.75)]


def test_the_sidecar_names_a_slurm_timeout_behind_a_sigterm_exit(services: Services) -> None:
    t = now()
    run_id = "run-20260101-000000-0000beef"
    (services.state.runs_dir / run_id).mkdir()
    with services.store.write() as s:
        s.add(Run(id=run_id, name="timed-out", command="train", workdir="/tmp", status="running",
                  backend="slurm", backend_ref="slurm:4711", created_at=t - 90, updated_at=t - 90,
                  launched_at=t - 90, started_at=t - 80))  # fmt: skip
        # What the shared poll last heard from Slurm: the job hit its time limit.
        s.add(SlurmJob(job_id="4711", run_id=run_id, state="TIMEOUT", reason="TimeLimit",
                       seen_at=t, ended_seen_at=t, updated_at=t))  # fmt: skip
    services.runs.files(run_id).exit_code.write_text("143\n")  # the launch script outlived SIGTERM
    m = Monitor(services.state, run_id, MonitorSettings(), launch_grace_s=30)
    assert m.claim()
    m.resync()
    m.refresh_run()
    m.tick()
    m.db.close()
    run = services.runs.load(run_id)
    assert (run.status, run.exit_code) == ("failed", 143)
    assert run.status_reason.startswith("Slurm: TIMEOUT — the job reached its time limit")
    assert "killed by SIGTERM (exit code 143)" in run.status_reason
