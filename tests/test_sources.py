"""Framework log files read poll by poll, in-process, on a real store (a started run, no job).

The event files are the recorded ones of tests/fixtures/frameworks, written piece by piece
as a job would; the reader is checked against TensorBoard's own on each of them.
"""

from __future__ import annotations

import contextlib
import json
import shutil
import sqlite3
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from mcp_server.core.monitoring.monitor_settings import MonitorSettings
from mcp_server.core.services import Services
from sidecar.monitor import Monitor
from sidecar.sources.tfevents import event_scalars, key_for, split_records
from tests.test_monitor import points, progress

FIXTURES = Path(__file__).parent / "fixtures" / "frameworks"
EVENT_FILES = sorted(FIXTURES.glob("*/files/**/events.out.tfevents.*"))


@pytest.fixture
def started(services: Services, workdir: Path) -> Iterator[Monitor]:
    """A monitor of a run that started 10 s ago in ``workdir`` (its files are ours)."""
    run = services.runs.create(name="watched", command="true", workdir=str(workdir), auto_start=False)
    with contextlib.closing(sqlite3.connect(services.state.db_path)) as con, con:
        con.execute("UPDATE runs SET started_at = ? WHERE id = ?", (time.time() - 10, run.id))
    m = Monitor(services.state, run.id, MonitorSettings(discover_s=0.0), launch_grace_s=30)
    assert m.claim()
    m.refresh_run()
    m.resync()
    yield m
    m.db.close()


def tick(m: Monitor) -> None:
    """One poll that also looks for new files (the monitor spaces walks out when they are slow)."""
    m.discover_files(m.clock(), force=True)
    m.tick()


def files_row(m: Monitor) -> dict[str, dict[str, object]]:
    return m.db.load_files(m.run_id)


@pytest.mark.parametrize(
    "path", EVENT_FILES, ids=lambda p: p.relative_to(FIXTURES).parts[0] + "/" + p.parent.name
)
def test_the_event_reader_agrees_with_tensorboards_own(path: Path) -> None:
    loader = pytest.importorskip(
        "tensorboard.backend.event_processing.event_file_loader", reason="TensorBoard is the reference reader"
    )
    from tensorboard.util import tensor_util

    theirs = []
    for event in loader.EventFileLoader(str(path)).Load():
        for v in event.summary.value:
            if v.HasField("simple_value"):
                theirs.append((event.step, v.tag, v.simple_value))
            elif v.HasField("tensor") and v.metadata.plugin_data.plugin_name == "scalars":
                theirs.append((event.step, v.tag, float(tensor_util.make_ndarray(v.tensor))))
    framing = split_records(path.read_bytes())
    ours = [
        (step, tag, value)
        for r in framing.records
        for step, pairs in [event_scalars(r)]
        for tag, value in pairs
    ]
    assert not framing.corrupt and framing.consumed == path.stat().st_size
    assert ours == theirs and ours


@pytest.mark.parametrize(
    ("path", "tag", "key"),
    [
        ("runs/x/events.out.tfevents.1.h.1.0", "train/loss", "train/loss"),
        ("logs/validation/events.out.tfevents.1.h.1.1.v2", "epoch_loss", "validation/epoch_loss"),
        ("runs/x/loss_val/events.out.tfevents.1.h.1.2", "loss", "loss/val"),
        ("runs/x/train_loss_ema/events.out.tfevents.1.h.1.2", "train/loss", "train/loss/ema"),
    ],
)
def test_event_tags_become_keys_that_keep_split_directories_apart(path: str, tag: str, key: str) -> None:
    assert key_for(Path(path), tag) == key


def test_an_event_file_is_read_record_by_record_as_it_grows(started: Monitor, workdir: Path) -> None:
    src = FIXTURES / "torch_summarywriter" / "files"
    (recorded,) = [p for p in src.glob("runs/*/events.out.tfevents.*")]
    target = workdir / "runs" / "exp" / "events.out.tfevents.1.otherhost.1.0"
    target.parent.mkdir(parents=True)
    data = recorded.read_bytes()
    truth = [
        json.loads(x) for x in (FIXTURES / "torch_summarywriter" / "truth.jsonl").read_text().splitlines()
    ]
    for end in (5, 100, 1001, len(data) - 3, len(data)):  # cut mid-header, mid-record, ...
        with open(target, "wb") as fh:
            fh.write(data[:end])
        tick(started)
        row = files_row(started)["runs/exp/events.out.tfevents.1.otherhost.1.0"]
        assert row["offset"] <= end and row["kind"] == "tfevents"
    assert row["offset"] == len(data)
    want = [(t["step"], pytest.approx(t["value"], rel=1e-6)) for t in truth if t["key"] == "train/loss"]
    assert points(started, "train/loss") == want


def test_a_failed_commit_rolls_the_event_file_offset_back_with_its_points(
    started: Monitor, workdir: Path
) -> None:
    (recorded,) = FIXTURES.glob("lightning/files/lightning_logs/version_0/events.out.tfevents.*")
    target = workdir / "lightning_logs" / "version_0" / "events.out.tfevents.1.otherhost.1.0"
    target.parent.mkdir(parents=True)
    shutil.copy(recorded, target)
    real_write = started.db.write

    @contextlib.contextmanager
    def crashing_write() -> Iterator[sqlite3.Connection]:
        with real_write() as conn:
            yield conn
            raise OSError("disk full (simulated) before COMMIT")

    started.db.write = crashing_write  # type: ignore[method-assign]
    with pytest.raises(OSError, match="simulated"):
        tick(started)
    assert points(started, "train_loss") == [] and files_row(started) == {}
    started.db.write = real_write  # type: ignore[method-assign]
    started.resync()  # what run_forever does after a failed poll
    tick(started)
    truth = [json.loads(x) for x in (FIXTURES / "lightning" / "truth.jsonl").read_text().splitlines()]
    want = [t["step"] for t in truth if t["via"] == "log_metrics" and t["key"] == "train_loss"]
    assert [s for s, _ in points(started, "train_loss")] == want  # each once


def test_a_rewritten_metrics_csv_with_a_new_column_stores_no_row_twice(
    started: Monitor, workdir: Path
) -> None:
    csv = workdir / "lightning_logs" / "version_0" / "metrics.csv"
    csv.parent.mkdir(parents=True)
    csv.write_text("epoch,step,train_loss\n0,4,2.5\n0,9,2.0\n")
    tick(started)
    # Lightning rewrites the file with a wider header once validation logs val_loss.
    csv.write_text("epoch,step,train_loss,val_loss\n0,4,2.5,\n0,9,2.0,\n0,9,,1.5\n1,14,1.2,\n")
    tick(started)
    assert points(started, "train_loss") == [(4, 2.5), (9, 2.0), (14, 1.2)]
    assert points(started, "val_loss") == [(9, 1.5)] and points(started, "epoch") == [
        (4, 0),
        (9, 0),
        (9, 0),
        (14, 1),
    ]


def test_trainer_state_checkpoints_are_one_history_and_replace_the_printed_series(
    started: Monitor, workdir: Path
) -> None:
    states = sorted((FIXTURES / "hf_trainer_5" / "files" / "out").glob("checkpoint-*/trainer_state.json"))
    history = json.loads(states[-1].read_text())["log_history"]
    exact = [(e["step"], e["loss"]) for e in history if "loss" in e]
    bar = " 10%|█         | {}/50 [00:01<00:09,  4.2it/s]"
    printed = "".join(
        f"\r{bar.format(s)}\r\r{{'loss': '{v:.4g}', 'epoch': '0.1'}}\n\r{bar.format(s)}" for s, v in exact
    )
    started.files.output.write_text(printed + "\n")
    tick(started)
    assert points(started, "loss") == [(s, float(f"{v:.4g}")) for s, v in exact]  # printed: 4 digits
    first = workdir / "out" / "checkpoint-25" / "trainer_state.json"
    first.parent.mkdir(parents=True)
    first.write_text(states[0].read_text())
    tick(started)
    # The file owns 'loss' now: exact values up to its step 25, printed ones beyond it wait for it.
    expect = [(s, v) for s, v in exact if s <= 25] + [(s, float(f"{v:.4g}")) for s, v in exact if s > 25]
    assert sorted(points(started, "loss")) == expect
    second = workdir / "out" / "checkpoint-50" / "trainer_state.json"
    second.parent.mkdir(parents=True)
    second.write_text(states[1].read_text())
    tick(started)
    assert sorted(points(started, "loss")) == exact  # every step once, full precision
    s = started.writer.series["loss"]
    assert (s.source, s.count, s.exact_through) == ("trainer_state", len(exact), 50)
    assert s.min_value == min(v for _, v in exact) and s.last_value == exact[-1][1]
    assert progress(started)["duplicates"] == 0  # the printed points came first: they were replaced
    with open(started.files.output, "a") as fh:
        fh.write("\r\r{'loss': '9.9', 'epoch': '1'}\n\r" + bar.format(50) + "\n")  # step 50 again, printed
    tick(started)
    assert sorted(points(started, "loss")) == exact and progress(started)["duplicates"] == 2  # loss, epoch


def test_files_written_before_the_run_started_are_not_its_own(started: Monitor, workdir: Path) -> None:
    csv = workdir / "lightning_logs" / "version_0" / "metrics.csv"
    csv.parent.mkdir(parents=True)
    csv.write_text("epoch,step,train_loss\n0,4,2.5\n")
    old = time.time() - 3600
    import os

    os.utime(csv, (old, old))
    tick(started)
    assert files_row(started) == {} and points(started, "train_loss") == []
