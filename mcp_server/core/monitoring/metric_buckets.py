"""Each metric series, pre-aggregated: count, min, max and last per step bucket, at a few widths.

A downsampled read should cost what it returns, not what is stored: an agent asking for
20 points of a 10M-point run must not scan 10M rows. So beside the exact points, the
sidecar keeps one row per bucket of ``2**shift`` steps for each shift in ``SHIFTS``
(16 steps, 32, 64, ... 2G: each level 2× coarser, so some level always has between half
and all of the rows a read wants), written in the same transaction as the points they
summarise. A read takes the finest level with no more rows than the buckets it wants and
uses each row as one bucket; min and max keep their own steps, so a spike survives
downsampling exactly as it would from the raw points.

Level rows of a series always sum to its point count (``metric_series.count``): a reader
that finds otherwise (points written by an older sidecar) reads the points instead.

Stdlib only: the sidecar's writer, the store's migration and the readers share it.
"""

from __future__ import annotations

import functools
import itertools
import sqlite3
from collections.abc import Iterable, Iterator
from typing import Any

# Level n (1-based) groups steps by ``step >> SHIFTS[n - 1]``.
SHIFTS = tuple(range(4, 32))
FANOUT = 2  # each level's buckets are this many times wider than the level below

# One bucket's aggregate, as a mutable list (the ingest hot path builds millions of these):
# [n, min_step, min_value, max_step, max_value, last_step, last_value]. Values are None for
# NaN (SQLite stores NaN as NULL); min/max skip NaN but keep ±inf (as SQL's MIN/MAX do).
Agg = list[Any]
N, MIN_STEP, MIN_VALUE, MAX_STEP, MAX_VALUE, LAST_STEP, LAST_VALUE = range(7)

COLUMNS = "bucket, n, min_step, min_value, max_step, max_value, last_step, last_value"
SQL_UPSERT = (
    f"INSERT INTO metric_buckets (series_id, level, {COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?) "
    "ON CONFLICT (series_id, level, bucket) DO UPDATE SET n = n + excluded.n, "
    "min_step = CASE WHEN min_value IS NULL OR excluded.min_value < min_value "
    "THEN excluded.min_step ELSE min_step END, "
    "min_value = CASE WHEN min_value IS NULL OR excluded.min_value < min_value "
    "THEN excluded.min_value ELSE min_value END, "
    "max_step = CASE WHEN max_value IS NULL OR excluded.max_value > max_value "
    "THEN excluded.max_step ELSE max_step END, "
    "max_value = CASE WHEN max_value IS NULL OR excluded.max_value > max_value "
    "THEN excluded.max_value ELSE max_value END, "
    "last_step = CASE WHEN excluded.last_step >= last_step THEN excluded.last_step ELSE last_step END, "
    "last_value = CASE WHEN excluded.last_step >= last_step THEN excluded.last_value ELSE last_value END"
)
SQL_INSERT = f"INSERT INTO metric_buckets (series_id, level, {COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"


def new_agg(step: int, value: float | None) -> Agg:
    if value is not None and value != value:  # NaN
        value = None
    if value is None:
        return [1, None, None, None, None, step, None]
    return [1, step, value, step, value, step, value]


def add_point(a: Agg, step: int, value: float | None) -> None:
    """Fold one point (later in insertion order than the ones already in ``a``) into ``a``."""
    a[0] += 1
    if value is not None and value == value:
        if a[2] is None or value < a[2]:
            a[1], a[2] = step, value
        if a[4] is None or value > a[4]:
            a[3], a[4] = step, value
    else:
        value = None
    if step >= a[5]:
        a[5], a[6] = step, value


def merge(a: Agg, b: Agg) -> None:
    """Fold aggregate ``b`` (later points, or a later bucket) into ``a``."""
    a[0] += b[0]
    if b[2] is not None and (a[2] is None or b[2] < a[2]):
        a[1], a[2] = b[1], b[2]
    if b[4] is not None and (a[4] is None or b[4] > a[4]):
        a[3], a[4] = b[3], b[4]
    if b[5] >= a[5]:
        a[5], a[6] = b[5], b[6]


def fold(points: Iterable[tuple[int, float | None]], shift: int = SHIFTS[0]) -> dict[int, Agg]:
    """Points (in insertion order) → their aggregates per bucket of ``2**shift`` steps."""
    out: dict[int, Agg] = {}
    get = out.get
    for step, value in points:
        b = step >> shift
        a = get(b)
        if a is None:
            out[b] = new_agg(step, value)
        else:
            add_point(a, step, value)
    return out


def coarsen(aggs: dict[int, Agg], by: int) -> dict[int, Agg]:
    """Aggregates of one level → the next one (buckets ``2**by`` times wider)."""
    out: dict[int, Agg] = {}
    for b in sorted(aggs):
        a = aggs[b]
        parent = out.get(b >> by)
        if parent is None:
            out[b >> by] = list(a)
        else:
            merge(parent, a)
    return out


def levels_of(points: Iterable[tuple[int, float | None]]) -> list[dict[int, Agg]]:
    """Every level's aggregates of a batch of points (level 1 first)."""
    level = fold(points)
    out = [level]
    for prev, shift in itertools.pairwise(SHIFTS):
        level = coarsen(level, shift - prev)
        out.append(level)
    return out


def add_points(conn: sqlite3.Connection, series_id: int, points: Iterable[tuple[int, float | None]]) -> None:
    """Merge a batch of newly stored points into the series' buckets (inside the writer's transaction)."""
    rows = [
        (series_id, level, b, *a)
        for level, aggs in enumerate(levels_of(points), 1)
        for b, a in aggs.items()
    ]
    conn.executemany(SQL_UPSERT, rows)


def delete_series(conn: sqlite3.Connection, series_id: int) -> None:
    conn.execute("DELETE FROM metric_buckets WHERE series_id = ?", (series_id,))


def _stream_fold(rows: Iterable[tuple[Any, ...]], shift: int, from_points: bool) -> Iterator[tuple[int, Agg]]:
    """Sorted points (or sorted child buckets) → (bucket, aggregate), one bucket at a time."""
    current: Agg | None = None
    key = 0
    for row in rows:
        if from_points:
            step, value = row
            b = step >> shift
            if current is not None and b == key:
                add_point(current, step, value)
                continue
            if current is not None:
                yield key, current
            key, current = b, new_agg(step, value)
        else:
            b = row[0] >> shift
            a = list(row[1:])
            if current is not None and b == key:
                merge(current, a)
                continue
            if current is not None:
                yield key, current
            key, current = b, a
    if current is not None:
        yield key, current


def rebuild(conn: sqlite3.Connection, series_id: int, lo: int | None = None, hi: int | None = None) -> None:
    """Recompute the series' buckets that cover steps ``lo``..``hi`` (default: all) from its points.

    Level 1 is read from the points, each coarser level from the one below it, so a range
    costs about what it covers at each level, not the whole series (a log file replacing
    printed points up to its latest step rebuilds only that stretch)."""
    if lo is None or hi is None:
        first = conn.execute(
            "SELECT step FROM metric_points WHERE series_id = ? ORDER BY step LIMIT 1", (series_id,)
        ).fetchone()
        last = conn.execute(
            "SELECT step FROM metric_points WHERE series_id = ? ORDER BY step DESC LIMIT 1", (series_id,)
        ).fetchone()
        delete_series(conn, series_id)
        if first is None:
            return
        lo, hi = int(first[0]), int(last[0])
    prev = 0
    for level, shift in enumerate(SHIFTS, 1):
        b_lo, b_hi = lo >> shift, hi >> shift
        conn.execute(
            "DELETE FROM metric_buckets WHERE series_id = ? AND level = ? AND bucket BETWEEN ? AND ?",
            (series_id, level, b_lo, b_hi),
        )
        if level == 1:
            source: Iterable[tuple[Any, ...]] = conn.execute(
                "SELECT step, value FROM metric_points WHERE series_id = ? AND step BETWEEN ? AND ? "
                "ORDER BY step, id",
                (series_id, b_lo << shift, ((b_hi + 1) << shift) - 1),
            )
        else:  # the level below, read whole first: this statement inserts into the same table
            by = shift - prev
            source = conn.execute(
                f"SELECT {COLUMNS} FROM metric_buckets WHERE series_id = ? AND level = ? "
                "AND bucket BETWEEN ? AND ? ORDER BY bucket",
                (series_id, level - 1, b_lo << by, ((b_hi + 1) << by) - 1),
            ).fetchall()
        conn.executemany(
            SQL_INSERT,
            (
                (series_id, level, b, *a)
                for b, a in _stream_fold(source, shift if level == 1 else shift - prev, level == 1)
            ),
        )
        prev = shift


def rebuild_all(conn: sqlite3.Connection) -> int:
    """Buckets for every stored series (the store's upgrade); returns how many series."""
    ids = [r[0] for r in conn.execute("SELECT id FROM metric_series ORDER BY id").fetchall()]
    for series_id in ids:
        rebuild(conn, series_id)
    return len(ids)


# ---- reading -------------------------------------------------------------------------------


@functools.lru_cache(maxsize=1024)  # on every read's path; a dashboard asks the same few again
def choose_level(span: int, buckets: int) -> tuple[int, bool] | None:
    """The level to read for ``buckets`` buckets over ``span`` steps, and whether to merge its
    rows in aligned pairs.

    The finest level with no more rows than ``buckets`` is read as it is when it has at
    least half as many (with levels 2× apart it always has, but at the ends of the range);
    else the level below it is read and merged pairwise. So a read touches about as many
    rows as it has buckets. None when level 1 itself has fewer than half the rows asked
    for: the points are then the cheapest exact answer (at most 32 per wanted bucket)."""

    def rows(i: int) -> int:
        return (span >> SHIFTS[i]) + 2  # a span not aligned to the buckets straddles one more

    last = len(SHIFTS) - 1
    # Start where span / 2**shift ≈ buckets, then settle on the finest level that fits.
    i = max(0, min(last, (span // max(1, buckets)).bit_length() - SHIFTS[0]))
    if rows(i) <= buckets:
        while i > 0 and rows(i - 1) <= buckets:
            i -= 1
    else:
        while i < last and rows(i) > buckets:
            i += 1
        if rows(i) > buckets:
            return last + 1, True
    if 2 * rows(i) >= buckets:
        return i + 1, False
    return None if i == 0 else (i, True)


def read_level(conn: Any, series_id: int, level: int) -> list[tuple[Any, ...]]:
    """A series' rows at one level, in step order: (bucket, min_step, min_value, max_step, max_value)."""
    return conn.execute(
        "SELECT bucket, min_step, min_value, max_step, max_value FROM metric_buckets "
        "WHERE series_id = ? AND level = ? ORDER BY bucket",
        (series_id, level),
    ).fetchall()
