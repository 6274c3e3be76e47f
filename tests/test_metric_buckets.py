"""Pre-aggregated metric buckets: kept exact batch by batch, and read at the cost of the budget.

The invariant every test comes back to: a series' buckets, however they were written (batch
by batch as the sidecar stores points, rebuilt over a stretch after a log file replaced
printed points, or built by the store's upgrade), equal the buckets rebuilt from its points.
"""

from __future__ import annotations

import contextlib
import json
import math
import sqlite3
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from mcp_server.core.monitoring import metric_buckets as mb
from mcp_server.core.monitoring.downsample import downsample
from mcp_server.core.monitoring.metrics import SeriesRow, series_of
from mcp_server.core.monitoring.monitor_settings import MonitorSettings
from mcp_server.core.services import Services
from mcp_server.core.storage.store import Store
from sidecar.monitor import Monitor
from tests.test_monitor import points as stored_points

FIXTURES = Path(__file__).parent / "fixtures" / "frameworks"


def normalised(rows: list[tuple[Any, ...]]) -> list[tuple[Any, ...]]:
    """Bucket rows with the step of a tied min/max left out (any step holding the value is right)."""
    return [(lvl, b, n, mn, mx, ls, lv) for lvl, b, n, _, mn, _, mx, ls, lv in rows]


def buckets_of(con: sqlite3.Connection, series_id: int) -> list[tuple[Any, ...]]:
    return con.execute(
        f"SELECT level, {mb.COLUMNS} FROM metric_buckets WHERE series_id = ? ORDER BY level, bucket",
        (series_id,),
    ).fetchall()


def assert_buckets_match_points(con: sqlite3.Connection, series_id: int) -> None:
    """The stored buckets equal a rebuild from the points, and each level sums to the points."""
    kept = buckets_of(con, series_id)
    con.execute("SAVEPOINT check_rebuild")
    mb.rebuild(con, series_id)
    rebuilt = buckets_of(con, series_id)
    con.execute("ROLLBACK TO check_rebuild")
    con.execute("RELEASE check_rebuild")
    assert normalised(kept) == normalised(rebuilt)
    (count,) = con.execute("SELECT COUNT(*) FROM metric_points WHERE series_id = ?", (series_id,)).fetchone()
    for level in range(1, len(mb.SHIFTS) + 1):
        assert sum(r[2] for r in kept if r[0] == level) == count
    for _, _, _, min_step, min_value, max_step, max_value, _, _ in kept:
        for step, value in ((min_step, min_value), (max_step, max_value)):
            if step is not None:  # the step given holds that value
                held = con.execute(
                    "SELECT COUNT(*) FROM metric_points WHERE series_id = ? AND step = ? AND value = ?",
                    (series_id, step, value),
                ).fetchone()[0]
                assert held >= 1


@pytest.fixture
def con(tmp_path: Path) -> Iterator[sqlite3.Connection]:
    Store(tmp_path / "research.db").close()
    with contextlib.closing(sqlite3.connect(tmp_path / "research.db", isolation_level=None)) as c:
        c.execute("INSERT INTO metric_series (run_id, key) VALUES ('run-x', 'loss')")
        yield c


def store_batch(con: sqlite3.Connection, batch: list[tuple[int, float]]) -> None:
    """What the sidecar's writer does with one poll's points: insert them, merge their buckets."""
    con.execute("BEGIN IMMEDIATE")
    con.executemany("INSERT INTO metric_points (series_id, step, value, ts) VALUES (1, ?, ?, 0)", batch)
    mb.add_points(con, 1, batch)
    con.execute("COMMIT")


values = st.one_of(
    st.floats(-1e6, 1e6),
    st.sampled_from([math.nan, math.inf, -math.inf, 0.0, 1.0]),  # ties, NaN, ±Inf
)
steps = st.one_of(st.integers(-50, 5000), st.integers(-(2**40), 2**40))
batches = st.lists(st.lists(st.tuples(steps, values), min_size=1, max_size=60), min_size=1, max_size=8)


# The table is emptied at the start of each example, so sharing the store between them is fine.
@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(batches=batches)
def test_buckets_stored_poll_by_poll_equal_a_rebuild_from_the_points(
    con: sqlite3.Connection, batches: list[list[tuple[int, float]]]
) -> None:
    con.execute("DELETE FROM metric_points")
    con.execute("DELETE FROM metric_buckets")
    for batch in batches:
        store_batch(con, batch)
    assert_buckets_match_points(con, 1)


def test_a_stretch_rebuilt_after_points_were_replaced_matches_the_points(con: sqlite3.Connection) -> None:
    store_batch(con, [(s, 1.0 / (s + 1)) for s in range(0, 40_000, 3)])
    # A log file now owns steps 1000..30000: the printed points there go, the file's come in.
    con.execute("BEGIN IMMEDIATE")
    con.execute("DELETE FROM metric_points WHERE series_id = 1 AND step > 999 AND step <= 30000")
    con.executemany(
        "INSERT INTO metric_points (series_id, step, value, ts) VALUES (1, ?, ?, 0)",
        [(s, 5.0 - s / 10_000) for s in range(1000, 30_001, 10)],
    )
    mb.rebuild(con, 1, 1000, 30_000)
    con.execute("COMMIT")
    assert_buckets_match_points(con, 1)


# ---- through the sidecar's writer -----------------------------------------------------------


@pytest.fixture
def monitor(services: Services, workdir: Path) -> Iterator[Monitor]:
    """A monitor of a run that started 10 s ago in ``workdir`` (its files are ours)."""
    run = services.runs.create(name="watched", command="true", workdir=str(workdir), auto_start=False)
    with contextlib.closing(sqlite3.connect(services.state.db_path)) as c, c:
        c.execute("UPDATE runs SET started_at = ? WHERE id = ?", (time.time() - 10, run.id))
    m = Monitor(services.state, run.id, MonitorSettings(discover_s=0.0), launch_grace_s=30)
    assert m.claim()
    m.refresh_run()
    m.resync()
    yield m
    m.db.close()


def tick(m: Monitor) -> None:
    m.discover_files(m.clock(), force=True)
    m.tick()


def every_series_matches(m: Monitor) -> None:
    with contextlib.closing(sqlite3.connect(m.state.db_path, isolation_level=None)) as c:
        for (sid,) in c.execute("SELECT id FROM metric_series WHERE run_id = ?", (m.run_id,)).fetchall():
            assert_buckets_match_points(c, sid)


def test_the_writer_keeps_buckets_exact_through_metrics_jsonl_and_a_log_file_taking_over_printed_points(
    monitor: Monitor, workdir: Path
) -> None:
    # Printed HF dicts first, then trainer_state.json checkpoints replace them stretch by stretch.
    states = sorted((FIXTURES / "hf_trainer_5" / "files" / "out").glob("checkpoint-*/trainer_state.json"))
    history = json.loads(states[-1].read_text())["log_history"]
    exact = [(e["step"], e["loss"]) for e in history if "loss" in e]
    bar = " 10%|█         | {}/50 [00:01<00:09,  4.2it/s]"
    monitor.files.output.write_text(
        "".join(f"\r{bar.format(s)}\r\r{{'loss': '{v:.4g}'}}\n\r{bar.format(s)}" for s, v in exact) + "\n"
    )
    tick(monitor)
    every_series_matches(monitor)
    for state in states:
        step = json.loads(state.read_text())["global_step"]
        target = workdir / "out" / f"checkpoint-{step}" / "trainer_state.json"
        target.parent.mkdir(parents=True)
        target.write_text(state.read_text())
        tick(monitor)
        every_series_matches(monitor)
    assert sorted(stored_points(monitor, "loss")) == exact
    # metrics.jsonl (the top-ranked source) brings a key printed output had: the series is replaced.
    monitor.files.output.write_text(monitor.files.output.read_text() + "step 60: lr=0.5\n")
    with open(monitor.files.metrics, "w") as fh:
        for step in range(2000):
            value = math.nan if step == 777 else 1.0 / (step + 1)
            fh.write(json.dumps({"step": step, "loss": value, "acc": step / 2000}) + "\n")
    for _ in range(20):
        tick(monitor)
    every_series_matches(monitor)


# ---- reading ---------------------------------------------------------------------------------


NONFINITE = "(value IS NULL OR value IN (9e999, -9e999))"  # SQLite stores NaN as NULL; 9e999 is inf


def series(con: sqlite3.Connection, series_id: int = 1) -> SeriesRow:
    """The series' summary row as the sidecar keeps it (the parts a read uses), from its points."""
    con.execute(
        "UPDATE metric_series SET count = (SELECT COUNT(*) FROM metric_points WHERE series_id = ?1), "
        f"nonfinite = (SELECT COUNT(*) FROM metric_points WHERE series_id = ?1 AND {NONFINITE}), "
        f"first_nonfinite_step = (SELECT MIN(step) FROM metric_points WHERE series_id = ?1 AND {NONFINITE}) "
        "WHERE id = ?1",
        (series_id,),
    )
    (row,) = [r for r in series_of(con, ["run-x"]) if r.id == series_id]
    return row


def test_a_downsampled_read_touches_about_as_many_rows_as_it_returns(con: sqlite3.Connection) -> None:
    points = [(s, 1.0 / (1 + s)) for s in range(300_000)]
    points[123_456] = (123_456, 50.0)
    points[200_001] = (200_001, math.nan)
    points[250_000] = (250_000, -3.0)
    store_batch(con, points)
    s = series(con)
    for budget in (20, 100, 1000, 20_000):
        wanted = (budget - 3) // 2
        choice = mb.choose_level(300_000, wanted)
        assert choice is not None
        level, merged = choice
        read = len(mb.read_level(con, 1, level))
        assert read <= (2 * wanted + 2 if merged else wanted)  # rows touched ~ buckets returned
        got, reduced = downsample(con, s, budget)
        assert reduced and budget // 4 <= len(got) <= budget
        values = dict(got)
        assert values[123_456] == 50.0 and values[250_000] == -3.0 and values[200_001] is None
        assert got[0][0] == 0 and got[-1][0] == 299_999
        assert [p[0] for p in got] == sorted(p[0] for p in got)


@settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(batches=batches, budget=st.integers(4, 300))
# The first NaN at the step of a bucket's max, stored after it and before it.
@example(batches=[[(s, 1.0) for s in range(2000)] + [(500, 100.0), (500, math.nan)]], budget=20)
@example(batches=[[(500, math.nan)] + [(s, 1.0) for s in range(2000)] + [(500, 100.0)]], budget=20)
def test_a_read_is_in_step_order_with_both_ends_the_first_nan_and_only_stored_points(
    con: sqlite3.Connection, batches: list[list[tuple[int, float]]], budget: int
) -> None:
    """Whatever was stored (ties, NaN and ±Inf at the same step as finite values), a read is
    a step-ordered subset of the points, nulls for NaN/Inf after the finite values of their
    step, holding the first and last points and the first NaN/Inf."""
    con.execute("DELETE FROM metric_points")
    con.execute("DELETE FROM metric_buckets")
    for batch in batches:
        store_batch(con, batch)
    s = series(con)
    got, reduced = downsample(con, s, budget)
    stored = con.execute("SELECT step, value FROM metric_points ORDER BY step, id").fetchall()
    drawn = [(step, v if v is not None and math.isfinite(v) else None) for step, v in stored]
    if not reduced:
        assert got == drawn
        return
    assert got == sorted(set(got), key=lambda p: (p[0], p[1] is None, p[1] or 0.0))  # ordered, no repeats
    assert drawn[0] in got and got[0][0] == drawn[0][0] and got[-1][0] == drawn[-1][0]
    assert set(got) <= set(drawn)
    if s.first_nonfinite_step is not None:
        assert (s.first_nonfinite_step, None) in got


def test_a_budget_finer_than_the_buckets_reads_the_points_and_keeps_the_same_extremes(
    con: sqlite3.Connection,
) -> None:
    points = [(s, math.sin(s / 50)) for s in range(3000)]
    points[1500] = (1500, 9.0)
    store_batch(con, points)
    assert mb.choose_level(3000, (2000 - 3) // 2) is None  # 16-step buckets are coarser than asked
    got, reduced = downsample(con, series(con), 2000)
    assert reduced and len(got) <= 2000 and dict(got)[1500] == 9.0


def test_points_stored_without_buckets_are_still_read_exactly(con: sqlite3.Connection) -> None:
    """An older sidecar still running after an upgrade writes points but no buckets: reads notice."""
    store_batch(con, [(s, 1.0) for s in range(10_000)])
    con.executemany(
        "INSERT INTO metric_points (series_id, step, value, ts) VALUES (1, ?, ?, 0)",
        [(s, 2.0) for s in range(10_000, 20_000)] + [(15_000, 99.0)],
    )
    got, _ = downsample(con, series(con), 50)
    assert dict(got)[15_000] == 99.0 and got[-1][0] == 19_999


@given(span=st.integers(1, 2**45), buckets=st.integers(1, 20_000))
def test_the_level_read_is_the_finest_with_no_more_rows_than_buckets(span: int, buckets: int) -> None:
    def rows(level: int) -> int:
        return (span >> mb.SHIFTS[level - 1]) + 2

    fitting = [lvl for lvl in range(1, len(mb.SHIFTS) + 1) if rows(lvl) <= buckets]
    choice = mb.choose_level(span, buckets)
    if not fitting:
        assert choice == (len(mb.SHIFTS), True)
    elif 2 * rows(fitting[0]) >= buckets:
        assert choice == (fitting[0], False)
    elif fitting[0] == 1:
        assert choice is None
    else:
        assert choice == (fitting[0] - 1, True)
