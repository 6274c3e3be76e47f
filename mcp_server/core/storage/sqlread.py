"""Plain sqlite3 reads of the store, for the paths an agent calls most (lists, metrics, context).

The ORM costs about 30 µs per query and per row before SQLite does any work, which made
``list_runs`` 40× its own SQL; these reads go straight to SQLite. One connection per
thread (the MCP layer runs tools in a pool of worker threads), kept open: opening one
costs more than most of these queries. Each read is one snapshot (``BEGIN`` … ``COMMIT``),
so what it returns is consistent however many statements it takes, and the connection
refuses writes (``query_only``): every write still goes through ``Store.write``.

Stdlib only, so a server can answer its first calls before the ORM is even imported.
"""

from __future__ import annotations

import sqlite3
import threading
from pathlib import Path
from typing import Any

from mcp_server.core.storage.sqlite_open import connect_readonly

BUSY_TIMEOUT_S = 30.0


class Snapshot:
    """A read transaction on ``conn`` for a ``with`` block (a class rather than a generator-based
    context manager: it is entered on every read, and costs about a third as much)."""

    __slots__ = ("conn",)

    def __init__(self, conn: sqlite3.Connection) -> None:
        self.conn = conn

    def __enter__(self) -> sqlite3.Connection:
        self.conn.execute("BEGIN")
        return self.conn

    def __exit__(self, *exc: object) -> None:
        self.conn.execute("COMMIT")


class SqlReader:
    def __init__(self, db_path: Path) -> None:
        self.db_path = db_path
        self._local = threading.local()
        self._all: list[sqlite3.Connection] = []
        self._lock = threading.Lock()

    def connection(self) -> sqlite3.Connection:
        """This thread's read connection, for a caller that runs its own ``BEGIN`` … ``COMMIT``
        (the hottest reads: it saves the snapshot object)."""
        conn: sqlite3.Connection | None = getattr(self._local, "conn", None)
        if conn is None:
            # Read-only (mode=ro): reading never creates a store that is not there.
            conn = connect_readonly(self.db_path, BUSY_TIMEOUT_S, check_same_thread=False)
            conn.execute("PRAGMA query_only=ON")
            self._local.conn = conn
            with self._lock:
                self._all.append(conn)
        return conn

    def exists(self) -> bool:
        return self.db_path.is_file()

    def snapshot(self) -> Snapshot:
        """One consistent read of the store (a read transaction): ``with reader.snapshot() as conn``."""
        return Snapshot(self.connection())

    def close(self) -> None:
        with self._lock:
            conns, self._all = self._all, []
        for conn in conns:
            conn.close()
        self._local = threading.local()


def driver_of(conn: Any) -> sqlite3.Connection:
    """The sqlite3 connection under a SQLAlchemy ``Connection`` (same transaction)."""
    raw = conn.connection.driver_connection
    if not isinstance(raw, sqlite3.Connection):
        raise TypeError(f"expected a sqlite3 connection under {conn!r}")
    return raw
