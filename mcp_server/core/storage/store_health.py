"""What can be wrong with the store, in words a person can act on. Stdlib only.

SQLite's own messages ("database is locked", "file is not a database") reached clients as
the SDK's opaque "Error executing tool"; a garbage file made the stdio server exit before
``initialize``; a deleted store was silently recreated empty beside hundreds of run dirs.
This module names each case and its next step: ``check_file`` before a store is opened,
``translate`` for an error raised while one is used.
"""

from __future__ import annotations

import os
import shutil
import sqlite3
import stat
from pathlib import Path

from mcp_server.core.errors import StoreError
from mcp_server.core.storage.sqlite_open import connect_readonly

REPAIR = "run `research-mcp doctor --repair` to move it aside and rebuild it from the run dirs"


def run_dirs(runs_dir: Path) -> list[Path]:
    """Run directories that hold a run (its spec or scripts), not leftovers of a create."""
    try:
        entries = list(os.scandir(runs_dir))
    except OSError:
        return []
    return [
        Path(e.path)
        for e in entries
        if e.name.startswith("run-")
        and e.is_dir(follow_symlinks=False)
        and any(os.path.exists(os.path.join(e.path, f)) for f in ("spec.json", "command.sh"))
    ]


def not_a_database(db_path: Path) -> str | None:
    """Why an existing, non-empty store file is not a usable SQLite database, or None.

    Asked through SQLite itself, never by opening the file: closing any descriptor of a
    file drops every POSIX lock this process holds on it, including those of its open
    SQLite connections (the classic way to corrupt a store), while SQLite's own open and
    close keep them.
    """
    try:
        con = connect_readonly(db_path)
    except sqlite3.Error as err:
        return f"cannot be opened ({err})"
    try:
        con.execute("PRAGMA schema_version").fetchone()
    except sqlite3.DatabaseError as err:
        text = str(err)
        if "locked" in text or "busy" in text:
            return None  # busy is not broken
        return "not a SQLite database (corrupt or overwritten)" if "not a database" in text else text
    finally:
        con.close()
    return None


def check_file(db_path: Path, runs_dir: Path) -> None:
    """Refuse a store that is not a SQLite database, or missing/empty beside existing runs."""
    try:
        st = os.stat(db_path)
    except FileNotFoundError:
        st = None
    except OSError as err:
        why = err.strerror
        raise StoreError(f"the store {db_path} cannot be read ({why}); check its permissions.") from None
    if st is not None and stat.S_ISDIR(st.st_mode):
        raise StoreError(f"the store {db_path} is a directory, not a database; {REPAIR}.")
    if st is not None and st.st_size > 0:
        if problem := not_a_database(db_path):
            raise StoreError(f"the store {db_path} is {problem}; {REPAIR}.")
        return
    found = run_dirs(runs_dir)
    if found:
        state = "missing" if st is None else "empty"
        raise StoreError(
            f"the store {db_path} is {state}, but {runs_dir} holds {len(found)} run dir(s); "
            "run `research-mcp doctor --repair` to rebuild it from them (nothing is lost), "
            f"or move {runs_dir} away to start afresh."
        )


def free_mb(path: Path) -> float | None:
    try:
        return shutil.disk_usage(path).free / 2**20
    except OSError:
        return None


def translate(err: BaseException, db_path: Path | None, waited_s: float | None = None) -> StoreError | None:
    """A StoreError for an SQLite failure (raw or wrapped by SQLAlchemy); None for anything else."""
    orig = getattr(err, "orig", None) or err
    if isinstance(orig, sqlite3.IntegrityError) or not isinstance(orig, sqlite3.DatabaseError):
        return None
    text = str(orig)
    where = f"the store {db_path}" if db_path else "the store"
    low = text.lower()
    if "locked" in low or "busy" in low:
        waited = f" for {waited_s:.0f} s" if waited_s else ""
        return StoreError(
            f"{where} stayed locked{waited}: other processes held its write lock (a burst of launches, "
            "or a process stuck mid-write). Nothing was changed; try the call again."
        )
    if "disk is full" in low or "disk full" in low:
        free = free_mb(db_path.parent) if db_path else None
        left = f" ({free:.0f} MB free)" if free is not None else ""
        return StoreError(
            f"the disk holding {where} is full{left}: nothing was changed. Free some space; running "
            "jobs keep their exit codes and are settled when space returns."
        )
    if "not a database" in low or "malformed" in low or "corrupt" in low:
        return StoreError(f"{where} is corrupt ({text}); {REPAIR}.")
    if "readonly" in low or "read-only" in low:
        fix = "give this user write access to it and its directory"
        return StoreError(f"{where} is read-only ({text}); {fix}.")
    return StoreError(f"{where} cannot be used: {text}.")
