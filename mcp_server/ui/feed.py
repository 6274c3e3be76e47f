"""One reader of the store's feeds per process, fanned out to every open page.

Each open page holds one server-sent-events stream. Were each stream to poll the store,
ten tabs would cost ten times one; instead a single task reads the event feed (run status
changes, alerts) and the point feed (metrics as the sidecars store them) after its
cursors, and hands each subscriber the part it asked for. A message is serialised once
per distinct subscription, so identical tabs share the work too. The task runs only
while someone listens.

Logs are followed by file events (``core.execution.follow``): one thread watches the run dirs of the
runs pages watch, and an output.log that grows is told to its pages at once (a tick with
its new size only), not at the next poll of the store.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import threading
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import anyio
import anyio.to_thread

from mcp_server.core.execution.follow import follow_dirs
from mcp_server.core.monitoring.events import EventFeed
from mcp_server.core.monitoring.live import LivePoint, PointFeed, active_run_ids, file_size

log = logging.getLogger("research_mcp.ui")

POLL_S = 0.25
# A page (or a browser's shared feed worker) may watch every run: the points of all runs,
# and the log sizes of every active one.
ALL_RUNS = frozenset({"*"})
QUEUE_DEPTH = 64
# A run that got more points than this in one poll is re-read downsampled by its pages.
MAX_LIVE_POINTS_PER_RUN = 2000


@dataclass(eq=False)
class Subscriber:
    runs: frozenset[str]
    queue: asyncio.Queue[str] = field(default_factory=lambda: asyncio.Queue(QUEUE_DEPTH))
    lagging: bool = False


@dataclass
class Tick:
    """What one poll found: events, points grouped by run and key, log sizes of watched runs."""

    events: list[dict[str, Any]]
    points: dict[str, dict[str, list[tuple[int, float | None]]]]
    flooded: set[str]
    logs: dict[str, int]

    def message_for(self, runs: frozenset[str]) -> dict[str, Any] | None:
        changed = sorted(self.points)
        if runs == ALL_RUNS:
            runs = frozenset(self.points) | frozenset(self.logs) | frozenset(self.flooded)
        mine = {r: self.points[r] for r in runs if r in self.points and r not in self.flooded}
        resync = sorted(r for r in runs if r in self.flooded)
        logs = {r: self.logs[r] for r in runs if r in self.logs}
        if not (self.events or changed or logs):
            return None
        return {"events": self.events, "changed": changed, "points": mine, "resync": resync, "logs": logs}


class Broadcaster:
    def __init__(self, db_path: Path, output_of: Callable[[str], Path], interval_s: float = POLL_S) -> None:
        self.events = EventFeed(db_path)
        self.points = PointFeed(db_path)
        self.output_of = output_of
        self.interval_s = interval_s
        self._subscribers: set[Subscriber] = set()
        self._task: asyncio.Task[None] | None = None
        self._log_sizes: dict[str, int] = {}
        self._watched: set[str] = set()  # runs whose logs pages follow, as of the last poll
        self._wake = threading.Event()  # set when _watched changes: the log watcher re-reads it
        self.polls = 0  # how many times the store was read (the bench and tests look)

    @property
    def subscribers(self) -> int:
        return len(self._subscribers)

    @contextlib.asynccontextmanager
    async def subscribe(self, runs: frozenset[str]) -> AsyncIterator[Subscriber]:
        sub = Subscriber(runs)
        self._subscribers.add(sub)
        if self._task is None or self._task.done():
            cursors = await anyio.to_thread.run_sync(
                lambda: (self.events.latest_id(), self.points.latest_id())
            )
            if self._task is None or self._task.done():
                self._task = asyncio.create_task(self._run(*cursors))
        try:
            yield sub
        finally:
            self._subscribers.discard(sub)

    def _read(self, event_cursor: int, point_cursor: int) -> tuple[Tick, int, int]:
        events, event_cursor, _ = self.events.read(event_cursor)
        points, point_cursor, more = self.points.read(point_cursor)
        grouped: dict[str, dict[str, list[tuple[int, float | None]]]] = {}
        counts: dict[str, int] = {}
        p: LivePoint
        for p in points:
            grouped.setdefault(p.run_id, {}).setdefault(p.key, []).append((p.step, p.value))
            counts[p.run_id] = counts.get(p.run_id, 0) + 1
        flooded = {r for r, n in counts.items() if n > MAX_LIVE_POINTS_PER_RUN or more}
        watched: set[str] = set().union(*(s.runs for s in self._subscribers)) if self._subscribers else set()
        if "*" in watched:
            watched = (watched - ALL_RUNS) | set(active_run_ids(self.events.db_path))
        before, self._watched = self._watched, watched
        if watched != before:
            self._wake.set()  # the log watcher looks at the new set of runs now
        logs = self._grown(watched)
        tick = Tick([e.model_dump() for e in events], grouped, flooded, logs)
        return tick, event_cursor, point_cursor

    def _grown(self, runs: set[str]) -> dict[str, int]:
        """Output logs of ``runs`` whose size changed since last told (and forget other runs)."""
        logs: dict[str, int] = {}
        for run_id in runs:
            size = file_size(self.output_of(run_id))
            if size != self._log_sizes.get(run_id):
                self._log_sizes[run_id] = size
                logs[run_id] = size
        for gone in set(self._log_sizes) - runs:
            del self._log_sizes[gone]
        return logs

    def _run_dirs(self) -> list[Path]:
        return [self.output_of(run_id).parent for run_id in list(self._watched)]

    async def _run(self, event_cursor: int, point_cursor: int) -> None:
        loop = asyncio.get_running_loop()
        grew = asyncio.Event()
        stop = threading.Event()

        def changed(paths: set[Path]) -> None:
            # A log file, or a run dir itself (newly watched, or followed by polling where file
            # events are missing).
            if stop.is_set() or not any(p.name == "output.log" or p.parent.name == "runs" for p in paths):
                return
            with contextlib.suppress(RuntimeError):  # the loop closed meanwhile: the feed has ended
                loop.call_soon_threadsafe(grew.set)

        watcher = threading.Thread(
            target=follow_dirs,
            args=(self._run_dirs, changed, stop),
            kwargs={"wake": self._wake},
            name="dashboard-logs",
            daemon=True,
        )
        watcher.start()
        try:
            await self._poll(event_cursor, point_cursor, grew)
        finally:
            stop.set()

    async def _poll(self, event_cursor: int, point_cursor: int, grew: asyncio.Event) -> None:
        next_poll = time.monotonic() + self.interval_s
        while self._subscribers:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(grew.wait(), timeout=max(0.0, next_poll - time.monotonic()))
            if grew.is_set():  # a followed log grew: tell its pages now, poll the store on time
                grew.clear()
                logs = self._grown(self._watched)
                if logs:
                    self._send(Tick([], {}, set(), logs))
                if time.monotonic() < next_poll:
                    continue
            next_poll = time.monotonic() + self.interval_s
            try:
                tick, event_cursor, point_cursor = await anyio.to_thread.run_sync(
                    self._read, event_cursor, point_cursor
                )
            except Exception:  # a locked or busy store is temporary: keep the pages connected
                log.warning("dashboard feed: could not read the store", exc_info=True)
                continue
            self.polls += 1
            self._send(tick)
        self._task = None

    def _send(self, tick: Tick) -> None:
        encoded: dict[frozenset[str], str | None] = {}
        for sub in list(self._subscribers):
            if sub.runs not in encoded:
                message = tick.message_for(sub.runs)
                encoded[sub.runs] = None if message is None else json.dumps(message)
            text = encoded[sub.runs]
            if text is None:
                continue
            try:
                sub.queue.put_nowait(text)
            except asyncio.QueueFull:  # a page that stopped reading re-reads everything
                sub.lagging = True
