"""The SQLite store every process shares (server processes, sidecars, CLI).

WAL mode lets readers run beside one writer; every write transaction starts with
``BEGIN IMMEDIATE`` so two processes never both read-then-upgrade and deadlock (SQLite
answers that case with "database is locked" at once, ignoring the busy timeout). Writers
queue on the busy timeout, and a claim that still finds the lock taken is retried with
back-off, jittered so a burst of writers does not retry in step, for up to
``WRITE_PATIENCE_S``; only then is it an error (``StoreError``, naming the cause).

Every SQLite failure inside ``read()``/``write()`` leaves as a ``StoreError`` whose text
says what to do (locked, disk full, corrupt), never as SQLite's bare words. The store
file is created 0600 before SQLite opens it, so its -wal and -shm files (which SQLite
creates with the database's mode) are private whatever the umask.
"""

from __future__ import annotations

import contextlib
import os
import random
import sqlite3
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from sqlalchemy import Connection, Engine, create_engine, event, text
from sqlalchemy.engine import URL
from sqlalchemy.exc import DBAPIError
from sqlmodel import Session, select

from mcp_server.core.errors import StoreError
from mcp_server.core.storage import migrations, models
from mcp_server.core.storage.migrations import SCHEMA_VERSION
from mcp_server.core.storage.sqlite_open import configure
from mcp_server.core.storage.sqlread import SqlReader
from mcp_server.core.storage.store_health import check_file, translate

__all__ = ["SCHEMA_VERSION", "Store", "create_private", "now"]

# One wait inside SQLite's busy handler; a claim that times out is retried (see write()).
BUSY_TIMEOUT_MS = 30_000
# How long a write waits for the lock in all before it is an error.
WRITE_PATIENCE_S = 90.0


def _is_busy(err: BaseException) -> bool:
    orig = getattr(err, "orig", err)
    return isinstance(orig, sqlite3.OperationalError) and any(
        w in str(orig).lower() for w in ("locked", "busy")
    )


def _patience() -> float:
    raw = os.environ.get("RESEARCH_MCP_STORE_PATIENCE_S", "")
    try:
        return max(0.1, float(raw)) if raw else WRITE_PATIENCE_S
    except ValueError:
        return WRITE_PATIENCE_S


def create_private(db_path: Path) -> None:
    """Create the store file 0600 (no-op when it exists) and make its WAL files private too."""
    with contextlib.suppress(FileExistsError):
        os.close(os.open(db_path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600))
    for suffix in ("", "-wal", "-shm"):
        with contextlib.suppress(FileNotFoundError):
            os.chmod(f"{db_path}{suffix}", 0o600)


class Store:
    def __init__(self, db_path: Path, *, create: bool = False) -> None:
        """Open (and migrate) the store; ``create`` also makes a new one beside existing run dirs
        (``doctor --repair``), which is otherwise refused so no run dir is silently forgotten."""
        self.db_path = db_path
        self.patience_s = _patience()
        # One wait in SQLite's busy handler; the claim loop retries up to patience_s.
        self.busy_timeout_ms = int(min(BUSY_TIMEOUT_MS, self.patience_s * 1000 / 3))
        if not create:
            check_file(db_path, db_path.parent / "runs")
        create_private(db_path)
        url = URL.create("sqlite", database=str(db_path))
        self.engine: Engine = create_engine(
            url,
            connect_args={"timeout": self.busy_timeout_ms / 1000, "check_same_thread": False},
            # More connections than the MCP layer's worker threads (anyio's default is 40), so a
            # burst of tool calls never times out waiting for a pooled connection.
            pool_size=8,
            max_overflow=56,
        )
        event.listen(self.engine, "connect", self._on_connect)
        event.listen(self.engine, "begin", self._on_begin)
        self._writer = self.engine.execution_options(research_write=True)
        self._migrate_lock = threading.Lock()
        self.migrate()
        # Plain sqlite3 for the hot read paths (lists, metrics, context): no ORM per query.
        self.sql = SqlReader(db_path)

    def _on_connect(self, dbapi_conn: sqlite3.Connection, _record: object) -> None:
        # Let SQLAlchemy's "begin" event issue BEGIN itself (pysqlite would defer it).
        dbapi_conn.isolation_level = None
        configure(dbapi_conn, self.busy_timeout_ms / 1000)

    @staticmethod
    def _on_begin(conn: Connection) -> None:
        write = conn.get_execution_options().get("research_write", False)
        # A read snapshot refuses writes: one would upgrade a deferred transaction to a write,
        # which fails at once with "database is locked" (no busy wait) whenever another
        # process committed since the snapshot began. Refused, it fails every time, in tests.
        read_only, info = not write, conn.connection.info  # info: kept with the pooled connection
        if info.get("query_only") is not read_only:  # set when the connection changes role
            conn.exec_driver_sql(f"PRAGMA query_only={'ON' if read_only else 'OFF'}")
            info["query_only"] = read_only
        conn.exec_driver_sql("BEGIN IMMEDIATE" if write else "BEGIN")

    def migrate(self) -> None:
        with self._migrate_lock, self._translated():
            self._migrate()
        create_private(self.db_path)

    def _migrate(self) -> None:
        """Upgrade the store to this release's schema (``core.storage.migrations``), all in one
        transaction."""
        with self._writer.begin() as conn:
            conn.exec_driver_sql(migrations.META_DDL)
            row = conn.execute(text("SELECT value FROM meta WHERE key='schema_version'")).first()
            latest = migrations.SCHEMA_VERSION
            current = int(row[0]) if row else 0
            if current > latest:
                raise StoreError(
                    f"the store {self.db_path} has schema version {current}, newer than this "
                    f"research-mcp understands ({latest}): a newer research-mcp wrote it; "
                    "upgrade research-mcp (pip install -U research-mcp); the store was not changed."
                )
            migrations.upgrade(conn.exec_driver_sql, current, conn)
            if current != latest:
                conn.execute(
                    text("INSERT OR REPLACE INTO meta(key, value) VALUES ('schema_version', :v)"),
                    {"v": str(latest)},
                )

    def schema_version(self) -> int:
        with self.read() as s:
            row = s.exec(select(models.Meta).where(models.Meta.key == "schema_version")).first()
            return int(row.value) if row else 0

    @contextmanager
    def _translated(self, waited_s: float | None = None) -> Iterator[None]:
        try:
            yield
        except DBAPIError as err:
            translated = translate(err, self.db_path, waited_s)
            if translated is None:
                raise
            raise translated from err
        except sqlite3.DatabaseError as err:
            translated = translate(err, self.db_path, waited_s)
            if translated is None:
                raise
            raise translated from err

    @contextmanager
    def read(self) -> Iterator[Session]:
        """A read snapshot; a write inside it is refused (``query_only``): it would not take the
        write lock."""
        with self._translated(), Session(self.engine, expire_on_commit=False) as session, session.begin():
            try:
                yield session
            except DBAPIError as err:
                if "readonly" in str(err.orig) and os.access(self.db_path, os.W_OK):
                    raise RuntimeError(f"a write inside a read snapshot (a bug): {err.orig}") from err
                raise

    @contextmanager
    def write(self, patience_s: float | None = None) -> Iterator[Session]:
        """One write transaction, committed on exit, rolled back on error.

        The lock is claimed first (``BEGIN IMMEDIATE``), retried with back-off for up to
        ``patience_s``; nothing of the caller's runs until it is held."""
        session = self._claim(self.patience_s if patience_s is None else patience_s)
        with self._translated(), session:
            try:
                yield session
                session.commit()
            except BaseException:
                session.rollback()
                raise

    def _claim(self, patience_s: float) -> Session:
        """A session whose transaction holds the write lock."""
        began = time.monotonic()
        delay = 0.05
        while True:
            session = Session(self._writer, expire_on_commit=False)
            try:
                session.begin()
                session.connection()  # runs BEGIN IMMEDIATE: the lock is ours from here
                return session
            except DBAPIError as err:
                session.close()
                waited = time.monotonic() - began
                if not _is_busy(err) or waited + delay > patience_s:
                    raise translate(err, self.db_path, waited) or err from err
            except BaseException:
                session.close()
                raise
            time.sleep(delay * (0.5 + random.random()))
            delay = min(delay * 2, 2.0)

    def close(self) -> None:
        self.sql.close()
        self.engine.dispose()


def now() -> float:
    return time.time()
