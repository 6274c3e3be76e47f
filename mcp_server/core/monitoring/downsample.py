"""A series cut to a point budget, extremes kept, at the cost of the budget rather than the series.

The answer is the same shape whatever is stored: the series' first and last points, its
first NaN/Inf, and for each of ``(budget - 3) // 2`` step buckets the point holding the
bucket's min and the one holding its max, so a spike or a NaN never disappears from a plot
the way it would with every-k-th sampling.

The buckets are read from the pre-aggregated levels (``core.monitoring.metric_buckets``): the level
whose rows are closest to the buckets wanted, each row giving its min and max point (or,
when only a finer level is close enough, its rows merged pairwise or so). Only when the
budget is finer than the finest level (16 steps) are the points themselves read, at most
about 16 per wanted bucket. Either way a read touches O(budget) rows.
"""

from __future__ import annotations

import bisect
import math
import sqlite3
from collections.abc import Iterable
from typing import Any, Protocol

from mcp_server.core.monitoring import metric_buckets as mb

Point = tuple[int, float | None]


class SeriesLike(Protocol):
    @property
    def id(self) -> Any: ...
    @property
    def count(self) -> int: ...
    @property
    def first_nonfinite_step(self) -> int | None: ...
    @property
    def nonfinite(self) -> int: ...


def finite(value: float | None) -> float | None:
    return value if value is not None and math.isfinite(value) else None


def _order(p: Point) -> tuple[int, bool, float]:
    return (p[0], p[1] is None, p[1] or 0.0)


__all__ = ["downsample", "finite"]


def downsample(conn: sqlite3.Connection, series: SeriesLike, budget: int) -> tuple[list[Point], bool]:
    """Up to ``budget`` [step, value] points of a series, extremes kept; True when reduced.

    On every metrics read's path (once per series): plain arithmetic and one loop over the
    rows, no helper calls where the usual case does not need them."""
    sid = series.id
    if series.count <= budget:
        rows = conn.execute(POINTS_SQL, (sid,)).fetchall()
        return [(int(step), finite(value)) for step, value in rows], False
    row = conn.execute(ENDS, (sid, LEVELS)).fetchone()
    if row is None:  # the summary was ahead of a snapshot: nothing to draw
        return [], False
    lo, first, hi, last, bucketed = row
    buckets = (budget - 3) // 2 or 1
    span = hi - lo + 1  # first and last by step: hi >= lo
    choice = mb.choose_level(span, buckets)
    # Buckets that do not account for every point (an older sidecar still writing after an
    # upgrade stores points without them) are not used: the points are read instead.
    if choice is not None and bucketed == series.count:
        level, pairs = choice
        level_rows = conn.execute(LEVEL_SQL, (sid, level))
        points = _extremes(_paired(level_rows) if pairs else level_rows, clean=not series.nonfinite)
    else:  # finer than the buckets, or points stored without them
        points = _extremes(_from_points(conn, sid, lo, span, buckets))
    # The bucket points are in step order already. The first and last points go at the ends
    # when their steps are outside the buckets' points (the usual case: no search).
    p = (lo, first if first is not None and -math.inf < first < math.inf else None)  # finite(), inlined
    if points and lo < points[0][0]:
        points.insert(0, p)
    else:
        _place(points, p)
    p = (hi, last if last is not None and -math.inf < last < math.inf else None)
    if hi > points[-1][0]:
        points.append(p)
    else:
        _place(points, p)
    step = series.first_nonfinite_step
    if step is not None:
        # After the finite points at its step (the order _place keeps), unless it is there.
        at = bisect.bisect_left(points, (step,))
        end = len(points)
        while at < end and points[at][0] == step and points[at][1] is not None:
            at += 1
        if at == end or points[at] != (step, None):
            points.insert(at, (step, None))
    return points, True


def _place(points: list[Point], p: Point) -> None:
    """Insert ``p`` into step-ordered ``points`` unless it is there. The series' first and last
    points go at an end (checked first: this is on every read's path)."""
    if not points or _order(p) < _order(points[0]):
        points.insert(0, p)
    elif _order(p) > _order(points[-1]):
        points.append(p)
    else:
        at = bisect.bisect_left(points, _order(p), key=_order)
        if points[at] != p:
            points.insert(at, p)


Row = tuple[Any, ...]  # (bucket, min_step, min_value, max_step, max_value)
LEVELS = len(mb.SHIFTS)
POINTS_SQL = "SELECT step, value FROM metric_points WHERE series_id = ? ORDER BY step, id"
LEVEL_SQL = (
    "SELECT bucket, min_step, min_value, max_step, max_value FROM metric_buckets "
    "WHERE series_id = ? AND level = ? ORDER BY bucket"
)

# The series' first and last points and how many points its coarsest level accounts for, in
# one statement (each part an indexed lookup of a row or two).
ENDS = (
    "SELECT f.step, f.value, l.step, l.value, "
    "(SELECT SUM(n) FROM metric_buckets WHERE series_id = ?1 AND level = ?2) FROM "
    "(SELECT step, value FROM metric_points WHERE series_id = ?1 ORDER BY step, id LIMIT 1) f, "
    "(SELECT step, value FROM metric_points WHERE series_id = ?1 ORDER BY step DESC, id DESC LIMIT 1) l"
)


def _extremes(rows: Iterable[Row], clean: bool = False) -> list[Point]:
    """Each bucket's min and max point (one when they are the same point), in step order.
    ``clean``: the series has no NaN/Inf, so no value needs mapping to null.

    The one loop over the rows a read touches, kept tight (no call per row): it should cost
    about what fetching them does."""
    out: list[Point] = []
    add = out.append
    if clean:
        for _, mns, mnv, mxs, mxv in rows:
            if mns < mxs:
                add((mns, mnv))
                add((mxs, mxv))
            elif mns > mxs:
                add((mxs, mxv))
                add((mns, mnv))
            else:
                add((mns, mnv))
        return out
    inf = math.inf
    for _, mns, mnv, mxs, mxv in rows:
        if mns is None:  # only NaN in this bucket
            continue
        if mns == mxs:
            add((mns, mnv if -inf < mnv < inf else None))
        elif mns < mxs:
            add((mns, mnv if -inf < mnv < inf else None))
            add((mxs, mxv if -inf < mxv < inf else None))
        else:
            add((mxs, mxv if -inf < mxv < inf else None))
            add((mns, mnv if -inf < mnv < inf else None))
    return out


def _paired(rows: Iterable[Row]) -> Iterable[Row]:
    """Rows of aligned bucket pairs merged (a bucket whose twin has no points stays alone)."""
    key = None
    mns = mnv = mxs = mxv = None
    for b, s1, v1, s2, v2 in rows:
        if b >> 1 == key:
            if v1 is not None and (mnv is None or v1 < mnv):
                mns, mnv = s1, v1
            if v2 is not None and (mxv is None or v2 > mxv):
                mxs, mxv = s2, v2
            yield key, mns, mnv, mxs, mxv
            key = None
            continue
        if key is not None:
            yield key, mns, mnv, mxs, mxv
        key, mns, mnv, mxs, mxv = b >> 1, s1, v1, s2, v2
    if key is not None:
        yield key, mns, mnv, mxs, mxv


def _from_points(conn: sqlite3.Connection, sid: Any, lo: int, span: int, buckets: int) -> list[Row]:
    out: dict[int, mb.Agg] = {}
    get = out.get
    for step, value in conn.execute(POINTS_SQL, (sid,)):
        k = (step - lo) * buckets // span
        a = get(k)
        if a is None:
            out[k] = mb.new_agg(step, value)
        else:
            mb.add_point(a, step, value)
    return [(k, a[1], a[2], a[3], a[4]) for k, a in sorted(out.items())]  # (bucket, min, max)
