"""A store written by the previous release, opened by this one: nothing lost, the new tables built.

The store is a dump of what release 8's own code wrote (tests/fixtures/stores/README.md):
a finished run whose real sidecar stored two metric series (a spike and a NaN in one).
"""

from __future__ import annotations

import contextlib
import sqlite3
from pathlib import Path

import pytest

from mcp_server.core.metric_buckets import SHIFTS
from mcp_server.core.services import Services
from mcp_server.core.store import SCHEMA_VERSION, Store
from tests.test_metric_buckets import assert_buckets_match_points

DUMP = Path(__file__).parent / "fixtures" / "stores" / "v8.sql"


def tables(db: Path) -> dict[str, list[tuple[object, ...]]]:
    """Every row of every table, in a stable order."""
    with contextlib.closing(sqlite3.connect(db)) as con:
        names = [r[0] for r in con.execute("SELECT name FROM sqlite_master WHERE type = 'table'")]
        return {n: sorted(con.execute(f'SELECT * FROM "{n}"').fetchall(), key=repr) for n in names}


@pytest.fixture
def old_store(state_dir: Path) -> Path:
    (state_dir / "runs").mkdir(parents=True)
    db = state_dir / "research.db"
    with contextlib.closing(sqlite3.connect(db)) as con:
        con.executescript(DUMP.read_text())
        con.execute("PRAGMA journal_mode=WAL")
    return db


def test_the_upgrade_keeps_every_row_and_builds_the_buckets_of_existing_runs(old_store: Path) -> None:
    before = tables(old_store)
    assert before["meta"] == [("schema_version", "8")] and "metric_buckets" not in before
    Store(old_store).close()
    after = tables(old_store)
    assert after["meta"] == [("schema_version", str(SCHEMA_VERSION))]
    for name, rows in before.items():
        if name != "meta":
            assert after[name] == rows, f"the upgrade changed table {name}"
    with contextlib.closing(sqlite3.connect(old_store, isolation_level=None)) as con:
        indexes = {r[0] for r in con.execute("SELECT name FROM sqlite_master WHERE type = 'index'")}
        assert {"ix_alerts_status_pk", "ix_runs_sweep_status", "ix_runs_can_change"} <= indexes
        series = con.execute("SELECT id, count FROM metric_series").fetchall()
        assert sorted(c for _, c in series) == [429, 429]
        for sid, count in series:
            assert_buckets_match_points(con, sid)
            levels = con.execute(
                "SELECT level, SUM(n) FROM metric_buckets WHERE series_id = ? GROUP BY level", (sid,)
            ).fetchall()
            assert levels == [(level, count) for level in range(1, len(SHIFTS) + 1)]


def test_after_the_upgrade_get_metrics_reads_the_buckets_and_answers_as_the_points_do(
    old_store: Path, state_dir: Path
) -> None:
    sv = Services(state_dir)
    try:
        with contextlib.closing(sqlite3.connect(old_store)) as con:
            (run_id,) = con.execute("SELECT id FROM runs").fetchone()
            loss_id = con.execute("SELECT id FROM metric_series WHERE key = 'loss'").fetchone()[0]
        (run,) = sv.metrics.get([run_id], ["loss"], max_points=40).runs
        (loss,) = run.series
        assert loss.downsampled and len(loss.points) <= 40
        got = dict(loss.points)
        assert got[1407] == 40.0 and got[2100] is None  # the spike and the NaN survive
        assert (loss.count, loss.nonfinite, loss.first_nonfinite_step) == (429, 1, 2100)
        # The buckets give the same extremes as reading every point would.
        with contextlib.closing(sqlite3.connect(old_store)) as con:
            stored = [v for (v,) in con.execute(
                "SELECT value FROM metric_points WHERE series_id = ? AND value IS NOT NULL", (loss_id,)
            )]  # fmt: skip
        shown = [v for _, v in loss.points if v is not None]
        assert (min(shown), max(shown)) == (min(stored), max(stored)) == (loss.min, loss.max)
    finally:
        sv.close()
