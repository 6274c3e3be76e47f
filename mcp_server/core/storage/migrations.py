"""The store's schema as numbered, frozen steps: version N is steps 1..N applied in order.

Each step's DDL is written out (``core/storage/schema/NNNN_name.sql``) as it was when the step was
released, never generated from today's models: a column added to a model later reaches an
existing store only through a new step of its own, and a store made by any release upgrades
to exactly the schema a fresh one gets (``tests/test_migrations.py`` checks both, against a
copy of the last release's schema). A step may add a Python ``run`` for data (e.g. rebuilding
a derived table from rows an older release wrote); it runs after its SQL, in the same
transaction as every other step of the upgrade, so a reader never sees half an upgrade.

To change the schema: add the model field, add ``NNNN_what.sql`` with the DDL (``ALTER TABLE
... ADD COLUMN``, ``CREATE TABLE``/``INDEX``), append a ``Step`` here; never edit a released
one. Other branches append too; whoever merges renumbers the later step.
"""

from __future__ import annotations

import re
import sqlite3
from collections.abc import Callable
from dataclasses import dataclass
from importlib import resources
from typing import Any

# The DB-API-like call a step runs its statements through (SQLAlchemy's exec_driver_sql, or
# sqlite3's Connection.execute).
Execute = Callable[[str], Any]


@dataclass(frozen=True)
class Step:
    version: int
    sql_file: str  # in mcp_server/core/storage/schema/
    run: Callable[[Any], None] | None = None  # data work after the DDL, given the migration's connection

    def statements(self) -> list[str]:
        text = resources.files("mcp_server.core.storage.schema").joinpath(self.sql_file).read_text()
        return split_sql(text)


def split_sql(text: str) -> list[str]:
    """The statements of a DDL script (not ``executescript``: that would commit the transaction)."""
    out: list[str] = []
    pending: list[str] = []
    for line in text.splitlines():
        if not pending and (not line.strip() or line.lstrip().startswith("--")):
            continue
        pending.append(line)
        statement = "\n".join(pending)
        if sqlite3.complete_statement(statement):
            out.append(statement.strip().rstrip(";"))
            pending = []
    if pending and "\n".join(pending).strip():
        raise ValueError(f"incomplete SQL statement at the end of a schema step: {pending[0][:60]!r}")
    return out


def _rebuild_metric_buckets(connection: Any) -> None:
    """Step 9's data: buckets for the points an older release stored (a reader of the upgraded
    store never sees a series without them)."""
    from mcp_server.core.monitoring.metric_buckets import rebuild_all
    from mcp_server.core.storage.sqlread import driver_of

    rebuild_all(driver_of(connection))


STEPS: tuple[Step, ...] = (
    Step(1, "0001_runs_events.sql"),
    Step(2, "0002_alerts.sql"),
    Step(3, "0003_cluster_queue_leases.sql"),
    Step(4, "0004_slurm_jobs.sql"),
    Step(5, "0005_sweeps_plans_memories.sql"),
    Step(6, "0006_metrics_sidecars.sql"),
    Step(7, "0007_metric_files.sql"),
    Step(8, "0008_notifications.sql"),
    Step(9, "0009_metric_buckets.sql", run=_rebuild_metric_buckets),
    Step(10, "0010_read_indexes.sql"),
    Step(11, "0011_sweep_search.sql"),
)
SCHEMA_VERSION = len(STEPS)
assert [s.version for s in STEPS] == list(range(1, SCHEMA_VERSION + 1)), "steps are numbered 1..N in order"

_ADD_COLUMN = re.compile(r"\s*ALTER\s+TABLE\s+\S+\s+ADD\s+COLUMN\s", re.IGNORECASE)

META_DDL = "CREATE TABLE IF NOT EXISTS meta (key VARCHAR PRIMARY KEY, value VARCHAR NOT NULL)"


def upgrade(execute: Execute, current: int, connection: Any = None) -> int:
    """Apply the steps after ``current`` (inside the caller's write transaction); the new version."""
    for step in STEPS[current:]:
        for statement in step.statements():
            try:
                execute(statement)
            except Exception as err:
                # A column a step adds may be there already (tables and indexes say IF NOT
                # EXISTS): a store written between two merges whose steps were ordered apart.
                if not (_ADD_COLUMN.match(statement) and "duplicate column name" in str(err)):
                    raise
        if step.run is not None:
            step.run(connection)
    return SCHEMA_VERSION
