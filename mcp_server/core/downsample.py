"""A series cut to a point budget, extremes kept, at the cost of the budget rather than the series.

The answer is the same shape whatever is stored: the series' first and last points, its
first NaN/Inf, and for each of ``(budget - 3) // 2`` step buckets the point holding the
bucket's min and the one holding its max, so a spike or a NaN never disappears from a plot
the way it would with every-k-th sampling.

The buckets are read from the pre-aggregated levels (``core.metric_buckets``): the finest
level with at most 8 rows per wanted bucket, merged in Python. Only when the budget is
finer than the finest level (16 steps) are the points themselves read, which then are at
most about 16 per wanted bucket. Either way a read touches O(budget) rows.
"""

from __future__ import annotations

import math
import sqlite3
from typing import Any, Protocol

from mcp_server.core import metric_buckets as mb

Point = tuple[int, float | None]


class SeriesLike(Protocol):
    @property
    def id(self) -> Any: ...
    @property
    def count(self) -> int: ...
    @property
    def first_nonfinite_step(self) -> int | None: ...


def finite(value: float | None) -> float | None:
    return value if value is not None and math.isfinite(value) else None


def _order(p: Point) -> tuple[int, bool, float]:
    return (p[0], p[1] is None, p[1] or 0.0)


def downsample(conn: sqlite3.Connection, series: SeriesLike, budget: int) -> tuple[list[Point], bool]:
    """Up to ``budget`` [step, value] points of a series, extremes kept; True when reduced."""
    sid = series.id
    if series.count <= budget:
        rows = conn.execute(
            "SELECT step, value FROM metric_points WHERE series_id = ? ORDER BY step, id", (sid,)
        ).fetchall()
        return [(int(step), finite(value)) for step, value in rows], False
    end = "SELECT step, value FROM metric_points WHERE series_id = ? ORDER BY "
    first = conn.execute(end + "step, id LIMIT 1", (sid,)).fetchone()
    last = conn.execute(end + "step DESC, id DESC LIMIT 1", (sid,)).fetchone()
    if first is None or last is None:  # the summary was ahead of a snapshot: nothing to draw
        return [], False
    lo, hi = int(first[0]), int(last[0])
    buckets = max(1, (budget - 3) // 2)
    span = max(1, hi - lo + 1)
    merged = _from_levels(conn, series, lo, span, buckets)
    if merged is None:
        merged = _from_points(conn, sid, lo, span, buckets)
    chosen: dict[Point, None] = {}
    for a in merged.values():
        if a[mb.MIN_STEP] is not None:
            chosen[(int(a[mb.MIN_STEP]), finite(a[mb.MIN_VALUE]))] = None
            chosen[(int(a[mb.MAX_STEP]), finite(a[mb.MAX_VALUE]))] = None
    chosen[(lo, finite(first[1]))] = None
    chosen[(hi, finite(last[1]))] = None
    if series.first_nonfinite_step is not None:
        chosen[(series.first_nonfinite_step, None)] = None
    return sorted(chosen, key=_order), True


def _from_levels(
    conn: sqlite3.Connection, series: SeriesLike, lo: int, span: int, buckets: int
) -> dict[int, mb.Agg] | None:
    """The wanted buckets merged from one pre-aggregated level; None when the points must be read."""
    level = mb.choose_level(span, buckets)
    if level is None:
        return None
    rows = mb.read_level(conn, series.id, level)
    if sum(r[1] for r in rows) != series.count:
        return None  # points stored without buckets (an older sidecar still writing): read them
    shift = mb.SHIFTS[level - 1]
    out: dict[int, mb.Agg] = {}
    top = buckets - 1
    for bucket, *agg in rows:
        start = bucket << shift
        k = 0 if start <= lo else min(top, (start - lo) * buckets // span)
        have = out.get(k)
        if have is None:
            out[k] = agg
        else:
            mb.merge(have, agg)
    return out


def _from_points(conn: sqlite3.Connection, sid: Any, lo: int, span: int, buckets: int) -> dict[int, mb.Agg]:
    out: dict[int, mb.Agg] = {}
    get = out.get
    for step, value in conn.execute(
        "SELECT step, value FROM metric_points WHERE series_id = ? ORDER BY step, id", (sid,)
    ):
        k = (step - lo) * buckets // span
        a = get(k)
        if a is None:
            out[k] = mb.new_agg(step, value)
        else:
            mb.add_point(a, step, value)
    return out
