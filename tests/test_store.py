import sqlite3
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from sqlmodel import select

from mcp_server.core.errors import ResearchError
from mcp_server.core.storage import migrations
from mcp_server.core.storage.models import Event, Run
from mcp_server.core.storage.store import SCHEMA_VERSION, Store


def test_store_is_wal_with_a_busy_timeout_and_private(tmp_path: Path) -> None:
    s = Store(tmp_path / "r.db")
    with s.read() as session:
        conn = session.connection()
        assert conn.exec_driver_sql("PRAGMA journal_mode").scalar() == "wal"
        assert conn.exec_driver_sql("PRAGMA busy_timeout").scalar() >= 30_000
    assert (tmp_path / "r.db").stat().st_mode & 0o777 == 0o600
    assert s.schema_version() == SCHEMA_VERSION


def test_a_write_inside_a_read_snapshot_is_refused_and_writes_still_work(tmp_path: Path) -> None:
    s = Store(tmp_path / "r.db")
    with pytest.raises(RuntimeError, match="a write inside a read snapshot"), s.read() as session:
        session.connection().exec_driver_sql("INSERT INTO meta (key, value) VALUES ('a', 'b')")
    with s.write() as session:  # the same pooled connection, writable again
        session.connection().exec_driver_sql("INSERT INTO meta (key, value) VALUES ('a', 'b')")
    with s.read() as session:
        assert session.connection().exec_driver_sql("SELECT value FROM meta WHERE key = 'a'").scalar() == "b"


def test_migrations_bring_an_old_store_up_to_date(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    db = tmp_path / "r.db"
    Store(db).close()
    applied: list[int] = []

    def step(conn) -> None:  # type: ignore[no-untyped-def]
        conn.exec_driver_sql("CREATE TABLE IF NOT EXISTS extra (x INTEGER)")
        applied.append(1)

    extra = migrations.Step(SCHEMA_VERSION + 1, "0001_runs_events.sql", run=step)  # its DDL: IF NOT EXISTS
    monkeypatch.setattr(migrations, "STEPS", (*migrations.STEPS, extra))
    monkeypatch.setattr(migrations, "SCHEMA_VERSION", SCHEMA_VERSION + 1)
    s = Store(db)
    assert applied == [1] and s.schema_version() == SCHEMA_VERSION + 1
    Store(db)  # already current: nothing re-applied
    assert applied == [1]
    tables = {r[0] for r in sqlite3.connect(db).execute("SELECT name FROM sqlite_master WHERE type='table'")}
    assert {"runs", "events", "extra", "meta"} <= tables


def test_a_newer_store_is_refused_rather_than_damaged(tmp_path: Path) -> None:
    db = tmp_path / "r.db"
    Store(db).close()
    con = sqlite3.connect(db)
    con.execute("UPDATE meta SET value='999' WHERE key='schema_version'")
    con.commit()
    with pytest.raises(ResearchError, match="upgrade research-mcp"):
        Store(db)


WRITER = textwrap.dedent(
    """
    import sys, time
    from mcp_server.core.storage.store import Store
    from mcp_server.core.storage.models import Run, Event
    s = Store(__import__("pathlib").Path(sys.argv[1]))
    tag = sys.argv[2]
    for i in range(60):
        with s.write() as session:
            t = time.time()
            session.add(Run(id=f"run-{tag}-{i}", name="n", command="c", workdir="/", status="ready",
                            created_at=t, updated_at=t))
            session.add(Event(ts=t, kind="test", run_id=f"run-{tag}-{i}"))
    """
)


def test_several_processes_write_at_once_without_locking_errors(tmp_path: Path) -> None:
    db = tmp_path / "r.db"
    Store(db).close()
    procs = [
        subprocess.Popen([sys.executable, "-c", WRITER, str(db), str(n)], stderr=subprocess.PIPE, text=True)
        for n in range(4)
    ]
    errors = [p.communicate(timeout=120)[1] for p in procs]
    assert all(p.returncode == 0 for p in procs), errors
    with Store(db).read() as session:
        runs = session.exec(select(Run)).all()
        events = session.exec(select(Event).order_by(Event.id)).all()  # type: ignore[arg-type]
    assert len(runs) == 240 and len({r.id for r in runs}) == 240
    ids = [e.id for e in events]
    assert len(ids) == 240 and ids == sorted(ids)
