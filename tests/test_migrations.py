"""Schema migrations: numbered frozen steps; a store any earlier release made upgrades without loss.

The fixtures (tests/fixtures/stores/README.md) are the schemas earlier releases gave a fresh
store: version 6 (before metric sources) and version 8 (the release before numbered
migrations). A store is built from each, filled with a row in every table as that release
would have written it, opened by today's code, and compared: every old row keeps every value,
new columns get their defaults, and the upgraded schema is the one a fresh store gets. A dump
of a real store release 8 wrote (a run whose sidecar stored two metric series) checks the
data steps: the upgrade keeps every row and builds the metric buckets of existing runs.
"""

from __future__ import annotations

import contextlib
import sqlite3
from pathlib import Path
from typing import Any

import pytest
from sqlmodel import SQLModel

from mcp_server.core.backends.slurm import jobs as slurm_jobs
from mcp_server.core.monitoring.metric_buckets import SHIFTS
from mcp_server.core.services import Services
from mcp_server.core.storage import migrations, models
from mcp_server.core.storage.store import SCHEMA_VERSION, Store
from tests.test_metric_buckets import assert_buckets_match_points

FIXTURES = Path(__file__).parent / "fixtures" / "stores"
RUN_ID = "run-20260101-120000-0000abcd"
JSON_LISTS = {"env_keys", "choices", "tags", "sweep_ids", "run_ids"}
JSON_VALUES = {"params": '{"lr": 0.1}', "options": '{"gpuwrap": {"enabled": false}, "queue": null}'}


def columns(con: sqlite3.Connection, table: str) -> dict[str, tuple[str, int, Any, int]]:
    """name → (type, notnull, default, pk) of a table, as SQLite sees it."""
    return {r[1]: (r[2].upper(), r[3], r[4], r[5]) for r in con.execute(f'PRAGMA table_info("{table}")')}


def schema(db: Path) -> dict[str, Any]:
    """Tables (with their columns, order aside) and indexes (name → table, columns, unique, partial)."""
    with contextlib.closing(sqlite3.connect(db)) as con:
        tables = [r[0] for r in con.execute("SELECT name FROM sqlite_master WHERE type='table'")]
        indexes = {}
        for table in tables:
            for _seq, name, unique, _origin, partial in con.execute(f'PRAGMA index_list("{table}")'):
                cols = [r[2] for r in con.execute(f'PRAGMA index_info("{name}")')]
                indexes[name] = (table, cols, unique, partial)
        return {"tables": {t: columns(con, t) for t in tables}, "indexes": indexes}


def value_for(table: str, name: str, kind: str) -> Any:
    if name == "id" and table == "runs":
        return RUN_ID
    if name in JSON_VALUES and table == "runs":
        return JSON_VALUES[name]
    if kind == "JSON":
        return "[]" if name in JSON_LISTS else "{}"
    if name == "status" and table == "runs":
        return "finished"
    if kind in ("INTEGER", "BOOLEAN"):
        return 1
    if kind == "FLOAT":
        return 1767268800.5
    return f"{table}.{name}"


def old_store(tmp: Path, version: int) -> Path:
    """A store as release ``version`` left it: its schema, and one row in every table."""
    (tmp / "runs").mkdir(parents=True)
    db = tmp / "research.db"
    with contextlib.closing(sqlite3.connect(db)) as con:
        con.executescript((FIXTURES / f"v{version}-schema.sql").read_text())
        con.execute("PRAGMA journal_mode=WAL")
        for (table,) in con.execute("SELECT name FROM sqlite_master WHERE type='table'").fetchall():
            if table in ("meta", "sqlite_sequence"):
                continue
            cols = columns(con, table)
            names = list(cols)
            values = [value_for(table, n, cols[n][0]) for n in names]
            quoted = ", ".join(f'"{n}"' for n in names)
            con.execute(f'INSERT INTO "{table}" ({quoted}) VALUES ({", ".join("?" * len(names))})', values)
        con.commit()
    return db


def rows(db: Path) -> dict[str, list[dict[str, Any]]]:
    with contextlib.closing(sqlite3.connect(db)) as con:
        con.row_factory = sqlite3.Row
        tables = [r[0] for r in con.execute("SELECT name FROM sqlite_master WHERE type='table'")]
        return {t: [dict(r) for r in con.execute(f'SELECT * FROM "{t}"')] for t in tables}


def fresh_store(tmp: Path) -> Path:
    tmp.mkdir(parents=True, exist_ok=True)
    Store(tmp / "fresh.db", create=True).close()
    return tmp / "fresh.db"


@pytest.mark.parametrize("version", [6, 8])
def test_a_store_an_earlier_release_wrote_upgrades_without_losing_a_value(
    tmp_path: Path, version: int
) -> None:
    db = old_store(tmp_path / "state", version)
    before = rows(db)
    Store(db).close()
    after = rows(db)
    assert after["meta"] == [{"key": "schema_version", "value": str(SCHEMA_VERSION)}]
    for table, old in before.items():
        if table in ("meta", "sqlite_sequence"):
            continue
        assert len(after[table]) == len(old) == 1, table
        kept = {k: v for k, v in after[table][0].items() if k in old[0]}
        assert kept == old[0], f"the upgrade changed a value in {table}"
    # The upgraded store has exactly the schema a fresh one gets (column order aside).
    assert schema(db) == schema(fresh_store(tmp_path / "fresh"))


def test_columns_added_by_a_later_step_reach_an_old_store_with_their_defaults(tmp_path: Path) -> None:
    db = old_store(tmp_path / "state", 6)
    Store(db).close()
    (sidecar,) = rows(db)["sidecars"]
    assert (sidecar["output_state"], sidecar["duplicates"], sidecar["non_numeric_example"]) == ("", 0, "")
    (series,) = rows(db)["metric_series"]
    assert series["exact_through"] is None


def test_services_work_on_an_upgraded_store(tmp_path: Path) -> None:
    old_store(tmp_path / "state", 6)
    services = Services(tmp_path / "state")
    try:
        run = services.runs.load(RUN_ID)
        assert (run.status, run.params) == ("finished", {"lr": 0.1})
        assert run.options["gpuwrap"] == {"enabled": False}
        assert services.runs.list().total == 1
    finally:
        services.close()


def test_every_model_column_is_created_by_a_migration_step(tmp_path: Path) -> None:
    # A field added to a model without a step of its own would reach fresh stores only if the
    # steps were generated from the models; they are frozen, so this catches it.
    assert models.Run.__tablename__ and slurm_jobs.SlurmJob.__tablename__  # every table module loaded
    got = schema(fresh_store(tmp_path))["tables"]
    for table in SQLModel.metadata.sorted_tables:
        assert table.name in got, f"no migration step creates table {table.name}"
        assert set(got[table.name]) == {c.name for c in table.columns}, f"{table.name}: add a migration step"


def test_a_step_whose_column_is_already_there_is_applied_again_without_harm(tmp_path: Path) -> None:
    # A store written between two merges that ordered their steps apart (main's step 9 was
    # issue 18's sweep search for a while) meets a step it has partly applied.
    db = fresh_store(tmp_path)
    with contextlib.closing(sqlite3.connect(db)) as con:
        con.execute("UPDATE meta SET value = ? WHERE key = 'schema_version'", (str(SCHEMA_VERSION - 1),))
        con.commit()
    Store(db).close()
    assert rows(db)["meta"] == [{"key": "schema_version", "value": str(SCHEMA_VERSION)}]
    assert schema(db) == schema(fresh_store(tmp_path / "again"))


def test_steps_are_numbered_and_frozen_ddl_parses() -> None:
    assert [s.version for s in migrations.STEPS] == list(range(1, SCHEMA_VERSION + 1))
    for step in migrations.STEPS:
        statements = step.statements()
        assert statements and all(sqlite3.complete_statement(s + ";") for s in statements), step.sql_file
    with pytest.raises(ValueError, match="incomplete SQL"):
        migrations.split_sql("CREATE TABLE x (a INTEGER")


# ---- a store release 8 really wrote: the data steps --------------------------------------

DUMP = Path(__file__).parent / "fixtures" / "stores" / "v8.sql"


def tables(db: Path) -> dict[str, list[tuple[object, ...]]]:
    """Every row of every table, in a stable order."""
    with contextlib.closing(sqlite3.connect(db)) as con:
        names = [r[0] for r in con.execute("SELECT name FROM sqlite_master WHERE type = 'table'")]
        return {n: sorted(con.execute(f'SELECT * FROM "{n}"').fetchall(), key=repr) for n in names}


@pytest.fixture
def v8_store(state_dir: Path) -> Path:
    """The dump of release 8's real store (see the module docstring)."""
    (state_dir / "runs").mkdir(parents=True)
    db = state_dir / "research.db"
    with contextlib.closing(sqlite3.connect(db)) as con:
        con.executescript(DUMP.read_text())
        con.execute("PRAGMA journal_mode=WAL")
    return db


def test_the_upgrade_keeps_every_row_and_builds_the_buckets_of_existing_runs(v8_store: Path) -> None:
    before = tables(v8_store)
    assert before["meta"] == [("schema_version", "8")] and "metric_buckets" not in before
    Store(v8_store).close()
    after = tables(v8_store)
    assert after["meta"] == [("schema_version", str(SCHEMA_VERSION))]
    for name, rows in before.items():
        if name != "meta":
            assert after[name] == rows, f"the upgrade changed table {name}"
    with contextlib.closing(sqlite3.connect(v8_store, isolation_level=None)) as con:
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
    v8_store: Path, state_dir: Path
) -> None:
    sv = Services(state_dir)
    try:
        with contextlib.closing(sqlite3.connect(v8_store)) as con:
            (run_id,) = con.execute("SELECT id FROM runs").fetchone()
            loss_id = con.execute("SELECT id FROM metric_series WHERE key = 'loss'").fetchone()[0]
        (run,) = sv.metrics.get([run_id], ["loss"], max_points=40).runs
        (loss,) = run.series
        assert loss.downsampled and len(loss.points) <= 40
        got = dict(loss.points)
        assert got[1407] == 40.0 and got[2100] is None  # the spike and the NaN survive
        assert (loss.count, loss.nonfinite, loss.first_nonfinite_step) == (429, 1, 2100)
        # The buckets give the same extremes as reading every point would.
        with contextlib.closing(sqlite3.connect(v8_store)) as con:
            stored = [v for (v,) in con.execute(
                "SELECT value FROM metric_points WHERE series_id = ? AND value IS NOT NULL", (loss_id,)
            )]  # fmt: skip
        shown = [v for _, v in loss.points if v is not None]
        assert (min(shown), max(shown)) == (min(stored), max(stored)) == (loss.min, loss.max)
    finally:
        sv.close()
