"""Resource-updated notifications for both protocol eras, driven by the store's event feed.

Runs end and alerts fire in other processes (sidecars, other servers), so nothing inside
this server's request handlers sees them happen. Instead a background task started in the
lifespan polls the event feed (one indexed read every ``interval_s``), settles run endings
itself (so a run's end is noticed even when nobody else looks), and for each new event
notifies the URIs it changes:

- 2026-07-28 clients listen with ``subscriptions/listen``, which MCPServer serves from a
  ``SubscriptionBus``; this server passes its own bus in and publishes on it.
- 2025-era clients use ``resources/subscribe``, which MCPServer has no API for; the
  handlers are registered on its low-level server and each subscription remembers the
  client's connection, so an update is sent on that connection's standalone channel.
"""

from __future__ import annotations

import functools
import logging
from collections import defaultdict
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

import anyio
import anyio.to_thread
from anyio.abc import TaskStatus
from mcp.server.context import ServerRequestContext
from mcp.server.mcpserver import MCPServer
from mcp.server.session import ServerSession
from mcp.server.subscriptions import InMemorySubscriptionBus, ResourceUpdated
from mcp_types import EmptyResult, SubscribeRequestParams, UnsubscribeRequestParams

from mcp_server.core.monitoring.events import EventFeed
from mcp_server.core.workflow.workflow_views import EventRow

if TYPE_CHECKING:
    from mcp_server.app import App

log = logging.getLogger("research_mcp")

CONTEXT_URI = "experiment://context"


def uris_for(events: Iterable[EventRow]) -> list[str]:
    """The resource URIs an event changes, in first-seen order, each once."""
    uris: dict[str, None] = {}
    for event in events:
        if event.run_id:
            uris[f"runs://{event.run_id}"] = None
        if event.sweep_id:
            uris[f"sweeps://{event.sweep_id}"] = None
        uris[CONTEXT_URI] = None
    return list(uris)


class Notifier:
    def __init__(self, interval_s: float = 0.5) -> None:
        self.bus = InMemorySubscriptionBus()
        self.interval_s = interval_s
        # uri -> {connection key: session}; one entry per client connection and URI.
        self._legacy: dict[str, dict[int, ServerSession]] = defaultdict(dict)

    def install(self, mcp: MCPServer) -> None:
        """Serve resources/subscribe and resources/unsubscribe for 2025-era clients."""
        lowlevel = mcp._lowlevel_server  # no public hook for these methods in MCPServer 2.x
        lowlevel.add_request_handler("resources/subscribe", SubscribeRequestParams, self._subscribe)
        lowlevel.add_request_handler("resources/unsubscribe", UnsubscribeRequestParams, self._unsubscribe)

    @staticmethod
    def _connection_key(session: ServerSession) -> int:
        # Each request gets its own ServerSession proxy; the connection behind it is shared.
        return id(getattr(session, "_connection", session))

    async def _subscribe(self, ctx: ServerRequestContext[Any], params: SubscribeRequestParams) -> EmptyResult:
        self._legacy[str(params.uri)][self._connection_key(ctx.session)] = ctx.session
        return EmptyResult()

    async def _unsubscribe(
        self, ctx: ServerRequestContext[Any], params: UnsubscribeRequestParams
    ) -> EmptyResult:
        subscribers = self._legacy.get(str(params.uri))
        if subscribers is not None:
            subscribers.pop(self._connection_key(ctx.session), None)
        return EmptyResult()

    async def publish(self, uris: Iterable[str]) -> None:
        for uri in uris:
            try:
                await self.bus.publish(ResourceUpdated(uri=uri))
            except Exception:  # one failed listener path must not silence the rest
                log.warning("could not publish an update of %s to listeners", uri, exc_info=True)
            for key, session in list(self._legacy.get(uri, {}).items()):
                try:
                    await session.send_resource_updated(uri)
                except Exception:  # the client went away: forget its subscriptions
                    log.debug("dropping legacy subscriber of %s", uri, exc_info=True)
                    self._legacy[uri].pop(key, None)

    async def watch(self, app: App, *, task_status: TaskStatus[None] = anyio.TASK_STATUS_IGNORED) -> None:
        """Poll the event feed for changes made by any process and notify their URIs.

        This task runs in the lifespan's task group, so an exception escaping it would take
        the whole server down: every failure is logged and the loop goes on. Events whose
        notification failed are not retried (the cursor has moved past them); clients still
        read the current state, and wait_for_events reads the feed itself.

        The starting cursor is read before the server answers its first request (the
        lifespan waits for ``task_status.started()``): an event written by a client right
        after it connected is then after the cursor, never silently skipped.
        """
        feed = EventFeed(app.db_path)
        cursor = await anyio.to_thread.run_sync(feed.latest_id)
        task_status.started()
        while True:
            await anyio.sleep(self.interval_s)
            try:
                await anyio.to_thread.run_sync(app.settle)
                events, cursor, _ = await anyio.to_thread.run_sync(functools.partial(feed.read, cursor))
            except Exception:  # keep watching (a locked store is temporary), but do not flood the log
                log.warning("event watcher: could not read the store; retrying in 10 s", exc_info=True)
                await anyio.sleep(10)
                continue
            if not events:
                continue
            try:
                await self.publish(uris_for(events))
            except Exception:
                log.exception("event watcher: could not notify subscribers of %d event(s)", len(events))
