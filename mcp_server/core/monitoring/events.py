"""The event feed: read run endings, status changes and alerts after a cursor; wait for them.

Events are rows of the store's append-only ``events`` table, whose AUTOINCREMENT id is
the cursor: every process (servers, sidecars, the CLI) writes there, so a reader sees
changes made anywhere, and reading "after cursor N" can neither miss nor repeat one.

This module uses the standard library's sqlite3, not the ORM: server start-up imports it
(the notification watcher), and a poll is one indexed range scan.
"""

from __future__ import annotations

import functools
import json
import math
import sqlite3
import time
from collections.abc import Awaitable, Callable, Iterable
from contextlib import closing
from pathlib import Path
from typing import Any

import anyio
import anyio.to_thread

from mcp_server.core.errors import InvalidInput
from mcp_server.core.execution.run_status import TERMINAL
from mcp_server.core.ids import validate_id
from mcp_server.core.run_views import iso
from mcp_server.core.storage import sqlite_open
from mcp_server.core.workflow.workflow_views import EventBatch, EventRow

EVENT_KINDS: tuple[str, ...] = ("run_ended", "run_status", "alert")
DEFAULT_KINDS: tuple[str, ...] = ("run_ended", "alert")
# Whole seconds, so the tool's schema advertises them as such (minimum 1, maximum 240).
MIN_TIMEOUT_S = 1
MAX_TIMEOUT_S = 240
DEFAULT_TIMEOUT_S = 60
MAX_RUN_IDS = 500
MAX_EVENTS = 100
POLL_S = 0.2
PROGRESS_EVERY_S = 5.0
_TERMINAL = frozenset(s.value for s in TERMINAL)
_SCAN = 500
FEED_BUSY_TIMEOUT_S = 10.0

Progress = Callable[[float, float, str], Awaitable[None]]


def _kind_of(stored_kind: str, data: dict[str, Any]) -> str | None:
    if stored_kind == "run_status":
        return "run_ended" if data.get("status") in _TERMINAL else "run_status"
    if stored_kind == "alert":
        return "alert"
    return None  # a kind this reader does not know (a newer writer): skipped, cursor moves on


def _matches(kind: str, kinds: frozenset[str]) -> bool:
    return kind in kinds or (kind == "run_ended" and "run_status" in kinds)


def _row(
    event_id: int, ts: float, kind: str, run_id: str | None, data: dict[str, Any], extra: tuple
) -> EventRow:
    sweep_id, run_name = extra
    code = data.get("exit_code")
    return EventRow(
        id=event_id,
        ts=iso(ts) or "",
        kind=kind,  # type: ignore[arg-type]
        run_id=run_id,
        run_name=data.get("name") or run_name,
        sweep_id=sweep_id,
        status=data.get("status"),
        previous=data.get("previous"),
        reason=data.get("reason"),
        exit_code=code if isinstance(code, int) else None,
        alert_id=data.get("alert_id"),
        severity=data.get("severity"),
        message=data.get("message"),
    )


class EventFeed:
    def __init__(self, db_path: Path) -> None:
        self.db_path = db_path

    def _connect(self) -> sqlite3.Connection | None:
        return sqlite_open.connect_if_present(self.db_path, FEED_BUSY_TIMEOUT_S)

    def latest_id(self) -> int:
        con = self._connect()
        if con is None:
            return 0
        with closing(con):
            try:
                return int(con.execute("SELECT coalesce(max(id), 0) FROM events").fetchone()[0])
            except sqlite3.DatabaseError:  # being created right now, or corrupt (tools say so)
                return 0

    def before_first_of(self, run_ids: Iterable[str]) -> int | None:
        """The position just before the first event of any of ``run_ids``; None if they have none.

        A waiter that names its runs but has no cursor starts here, so a run that ended
        between create_run and the wait is still reported instead of waited for in vain.
        """
        ids = list(dict.fromkeys(run_ids))
        con = self._connect() if ids else None
        if con is None:
            return None
        with closing(con):
            sql = f"SELECT min(id) FROM events WHERE run_id IN ({','.join('?' * len(ids))})"
            try:
                (first,) = con.execute(sql, ids).fetchone()
            except sqlite3.OperationalError:
                return None
        return None if first is None else int(first) - 1

    def read(
        self,
        after: int,
        *,
        kinds: Iterable[str] = EVENT_KINDS,
        run_ids: Iterable[str] | None = None,
        limit: int = MAX_EVENTS,
    ) -> tuple[list[EventRow], int, bool]:
        """Matching events after ``after`` (oldest first), the new cursor, and whether more match.

        The cursor advances past events that do not match too: it is a position in the feed,
        so the next call never re-reads them.
        """
        wanted = frozenset(kinds)
        only_runs = frozenset(run_ids) if run_ids is not None else None
        con = self._connect()
        if con is None:
            return [], after, False
        out: list[EventRow] = []
        cursor = after
        with closing(con):
            while True:
                try:
                    rows = con.execute(
                        "SELECT e.id, e.ts, e.kind, e.run_id, e.data, r.sweep_id, r.name FROM events e "
                        "LEFT JOIN runs r ON r.id = e.run_id WHERE e.id > ? ORDER BY e.id LIMIT ?",
                        (cursor, _SCAN),
                    ).fetchall()
                except sqlite3.OperationalError:
                    return out, cursor, False
                for event_id, ts, stored_kind, run_id, raw, sweep_id, run_name in rows:
                    try:
                        data = json.loads(raw) if raw else {}
                    except ValueError:
                        data = {}
                    kind = _kind_of(stored_kind, data)
                    if (
                        kind is not None
                        and _matches(kind, wanted)
                        and (only_runs is None or run_id in only_runs)
                    ):
                        if len(out) == limit:
                            return out, cursor, True
                        out.append(_row(event_id, ts, kind, run_id, data, (sweep_id, run_name)))
                    cursor = event_id
                if len(rows) < _SCAN:
                    return out, cursor, False


def validate_wait(
    cursor: int | None, timeout_s: float, kinds: list[str] | None, run_ids: list[str] | None
) -> tuple[float, tuple[str, ...], list[str] | None]:
    if isinstance(timeout_s, bool) or not isinstance(timeout_s, int | float) or not math.isfinite(timeout_s):
        raise InvalidInput(
            f"timeout_s={timeout_s!r} must be a number of seconds from 1 to {MAX_TIMEOUT_S:g}."
        )
    if timeout_s > MAX_TIMEOUT_S:
        raise InvalidInput(
            f"timeout_s={timeout_s:g} is above the cap of {MAX_TIMEOUT_S:g} s (some MCP clients drop a call "
            "after about 4 minutes). Wait up to 240 s, then call wait_for_events again with the returned "
            "cursor."
        )
    if timeout_s < MIN_TIMEOUT_S:
        raise InvalidInput(
            f"timeout_s={timeout_s:g} is below {MIN_TIMEOUT_S} s; give {MIN_TIMEOUT_S} to {MAX_TIMEOUT_S}."
        )
    if cursor is not None and (isinstance(cursor, bool) or not isinstance(cursor, int) or cursor < 0):
        raise InvalidInput(
            f"cursor={cursor!r} is not valid: pass the cursor a previous call returned, 0 for every event "
            "in the feed, or leave it out to wait for events from now on."
        )
    chosen = tuple(dict.fromkeys(kinds)) if kinds else DEFAULT_KINDS
    unknown = [k for k in chosen if k not in EVENT_KINDS]
    if unknown:
        raise InvalidInput(
            f"event kind(s) {', '.join(map(repr, unknown))} unknown; valid: {', '.join(EVENT_KINDS)}."
        )
    if run_ids is not None:
        if len(run_ids) > MAX_RUN_IDS:
            raise InvalidInput(f"{len(run_ids)} run_ids given; the limit is {MAX_RUN_IDS}.")
        for run_id in run_ids:
            validate_id(run_id, "run", "run id")
    return float(timeout_s), chosen, run_ids


async def wait_for_events(
    feed: EventFeed,
    *,
    cursor: int | None,
    timeout_s: float = DEFAULT_TIMEOUT_S,
    kinds: list[str] | None = None,
    run_ids: list[str] | None = None,
    settle: Callable[[], object] | None = None,
    progress: Progress | None = None,
    poll_s: float = POLL_S,
    progress_every_s: float = PROGRESS_EVERY_S,
) -> EventBatch:
    """Return the matching events after ``cursor`` as soon as there are any, or none at ``timeout_s``.

    ``cursor=None`` means "from now": only events written after the call starts count —
    unless ``run_ids`` is given: then every recorded event of those runs counts too, so a
    run that ended before the first wait is reported at once rather than missed (an agent
    leaves the cursor out on its first call, often after the run already finished).
    ``settle`` runs each poll (in a thread) so run endings are recorded promptly even when
    no other process is watching the runs; ``progress`` is awaited every
    ``progress_every_s`` (and at the start) while nothing has arrived.
    """
    timeout, chosen, only = validate_wait(cursor, timeout_s, kinds, run_ids)
    start = time.monotonic()
    latest = await anyio.to_thread.run_sync(feed.latest_id)
    position: int
    if cursor is None:
        first = None if only is None else await anyio.to_thread.run_sync(feed.before_first_of, only)
        position = latest if first is None else min(first, latest)
    elif cursor > latest:
        raise InvalidInput(
            f"cursor={cursor} is ahead of the event feed (latest event {latest}); pass the cursor your last "
            "wait_for_events call returned, or leave it out to wait from now."
        )
    else:
        position = cursor
    last_progress = -math.inf
    what = ", ".join(chosen) + (f" of {len(only)} run(s)" if only is not None else "")
    while True:
        if settle is not None:
            await anyio.to_thread.run_sync(settle)
        events, position, more = await anyio.to_thread.run_sync(
            functools.partial(feed.read, position, kinds=chosen, run_ids=only)
        )
        elapsed = time.monotonic() - start
        if events or elapsed >= timeout:
            return EventBatch(
                events=events, cursor=position, timed_out=not events, more=more, waited_s=round(elapsed, 3)
            )
        if progress is not None and elapsed - last_progress >= progress_every_s:
            last_progress = elapsed
            await progress(
                round(elapsed, 1), timeout, f"waiting for {what}: {elapsed:.0f} s of {timeout:g} s"
            )
        await anyio.sleep(min(poll_s, max(0.0, timeout - elapsed)))
