"""A page of rows written as JSON by SQLite and validated in one pydantic call.

List answers (alerts, memory rules, plans) are pages of small rows whose JSON columns
are already JSON: SQLite's ``json_object`` writes each row, Python only joins them, and
the page model parses and validates the whole page at once (in Rust). The count uses the
same filter, so ``total`` and ``next_offset`` agree with the rows.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Sequence
from typing import Any, TypeVar

from pydantic import BaseModel

M = TypeVar("M", bound=BaseModel)

# Seconds since the epoch → '2026-01-02T03:04:05Z', as ``views.iso`` writes them (truncated).
ISO = "strftime('%Y-%m-%dT%H:%M:%SZ', CAST({} AS INTEGER), 'unixepoch')"


def where(clauses: Sequence[str]) -> str:
    return (" WHERE " + " AND ".join(clauses)) if clauses else ""


def page(
    conn: sqlite3.Connection,
    model: type[M],
    rows_key: str,
    row_json: str,
    table: str,
    clauses: Sequence[str],
    params: Sequence[Any],
    *,
    limit: int,
    offset: int,
) -> M:
    """``model`` with ``rows_key`` = the rows (newest first), ``total`` and ``next_offset``."""
    cond = where(clauses)
    (total,) = conn.execute(f"SELECT COUNT(*) FROM {table}{cond}", params).fetchone()
    rows = conn.execute(
        f"SELECT {row_json} FROM {table}{cond} ORDER BY pk DESC LIMIT ? OFFSET ?", [*params, limit, offset]
    ).fetchall()
    next_offset = offset + len(rows) if offset + len(rows) < total else None
    body = ",".join(r[0] for r in rows)
    tail = "null" if next_offset is None else str(next_offset)
    return model.model_validate_json(f'{{"{rows_key}":[{body}],"total":{total},"next_offset":{tail}}}')
