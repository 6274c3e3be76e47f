"""The one way every process opens the store with sqlite3: the same pragmas, a busy timeout.

The store's engine (SQLAlchemy's pool calls ``configure`` on each new connection), the
sidecar, the event and point feeds, the notification outbox, and doctor's read-only checks
all come through here, so no connection can miss WAL mode (readers beside a writer), the
busy timeout (wait for a lock instead of failing at once) or the synchronous level.
Stdlib only: the sidecar imports it.

``isolation_level=None``: transactions are begun explicitly (``BEGIN IMMEDIATE`` for every
writer, so two processes never both read-then-upgrade and deadlock).
"""

from __future__ import annotations

import sqlite3
from pathlib import Path

# WAL lets readers run beside one writer; NORMAL is durable in WAL at a commit's fsync cost.
PRAGMAS: tuple[str, ...] = ("journal_mode=WAL", "synchronous=NORMAL", "foreign_keys=ON")


def configure(conn: sqlite3.Connection, busy_timeout_s: float, *, writer: bool = True) -> None:
    """Apply the store's pragmas to an open connection.

    A reader only needs the busy timeout: WAL is a property of the file, set by the first
    writer, and asking for it reads the file (a reader of a corrupt store should fail at its
    query, where it says so, not while connecting)."""
    conn.execute(f"PRAGMA busy_timeout={int(busy_timeout_s * 1000)}")
    if writer:
        for pragma in PRAGMAS:
            conn.execute(f"PRAGMA {pragma}")


def connect(
    db_path: Path | str, busy_timeout_s: float, *, writer: bool = True, check_same_thread: bool = True
) -> sqlite3.Connection:
    """A connection with the store's pragmas (explicit transactions); ``writer=False`` for one
    that only reads (the event and point feeds)."""
    conn = sqlite3.connect(
        db_path, timeout=busy_timeout_s, isolation_level=None, check_same_thread=check_same_thread
    )
    try:
        configure(conn, busy_timeout_s, writer=writer)
    except BaseException:
        conn.close()
        raise
    return conn


def connect_if_present(db_path: Path, busy_timeout_s: float) -> sqlite3.Connection | None:
    """A reading connection (``writer=False``), or None while the store does not exist yet: the
    feeds (events, live points) poll before any server has created it."""
    return connect(db_path, busy_timeout_s, writer=False) if db_path.exists() else None


def connect_readonly(
    db_path: Path | str, busy_timeout_s: float = 10.0, *, check_same_thread: bool = True
) -> sqlite3.Connection:
    """A read-only connection (doctor, health checks, the plain-SQL reads of ``core.storage.sqlread``):
    it can neither change the file nor create it.

    No journal mode is set (that would be a write); the busy timeout still applies."""
    conn = sqlite3.connect(
        f"file:{db_path}?mode=ro",
        uri=True,
        timeout=busy_timeout_s,
        isolation_level=None,
        check_same_thread=check_same_thread,
    )
    conn.execute(f"PRAGMA busy_timeout={int(busy_timeout_s * 1000)}")
    return conn
