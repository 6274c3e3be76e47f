"""Per-process application state for the MCP layer.

The core services (and sqlmodel with them) are created on first use, not at import:
a stdio server must answer ``initialize`` about as fast as an empty MCP server
(DESIGN invariant 6). The start-up reconcile runs on a background thread for the same
reason; any tool that needs the services waits for the same one-time initialisation.
"""

from __future__ import annotations

import functools
import inspect
import logging
import os
import threading
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any, ParamSpec, TypeVar

import anyio
import anyio.to_thread
from mcp.server.mcpserver.exceptions import ToolError

from mcp_server.core.errors import ResearchError
from mcp_server.core.paths import resolve_state_dir

if TYPE_CHECKING:
    from mcp_server.core.notifications.watch import NotifyWatch
    from mcp_server.core.services import Services
    from mcp_server.notify import Notifier

log = logging.getLogger("research_mcp")

P = ParamSpec("P")
R = TypeVar("R")


class App:
    def __init__(self, state_dir: str | os.PathLike[str] | None = None) -> None:
        self.state_dir = state_dir
        self._services: Services | None = None
        self._lock = threading.Lock()
        # Set by create_server: pushes resource-updated notifications to subscribed clients.
        self.notifier: Notifier | None = None
        # Starts a notification sender process when a run ends or an alert fires (apprise URLs).
        self.notify_watch: NotifyWatch | None = None

    def services(self) -> Services:
        with self._lock:
            if self._services is None:
                from mcp_server.core.services import Services

                self._services = Services(self.state_dir)
            return self._services

    @property
    def db_path(self) -> Path:
        """The store's path, known without opening it (the watcher starts before the services)."""
        return resolve_state_dir(self.state_dir) / "research.db"

    def startup(self) -> None:
        """Open the store, settle runs that ended while no server was looking, refill sweeps."""
        try:
            services = self.services()
            from mcp_server.core.notifications.watch import NotifyWatch

            self.notify_watch = NotifyWatch(services.state.root).start()
            services.reconciler.reconcile()
            services.sweeps.top_up()
        except Exception:
            log.exception("start-up reconcile failed; it will be retried on the next run query")

    def settle(self) -> None:
        """Record runs that ended (called by waiters and the watcher, in worker threads)."""
        self.services().settler.tick()

    @asynccontextmanager
    async def lifespan(self, _server: Any) -> AsyncIterator[App]:
        threading.Thread(target=self.startup, name="research-mcp-startup", daemon=True).start()
        async with anyio.create_task_group() as tg:
            if self.notifier is not None:
                await tg.start(self.notifier.watch, self)
            yield self
            tg.cancel_scope.cancel()
        if self.notify_watch is not None:
            await anyio.to_thread.run_sync(self.notify_watch.stop)


def tool_errors(fn: Callable[P, R]) -> Callable[P, R]:
    """Turn core errors into ToolErrors so the model sees the message (others become opaque)."""
    if inspect.iscoroutinefunction(fn):

        @functools.wraps(fn)
        async def async_wrapper(*args: P.args, **kwargs: P.kwargs) -> Any:
            try:
                return await fn(*args, **kwargs)
            except ResearchError as err:
                raise ToolError(str(err)) from err

        return async_wrapper  # type: ignore[return-value]

    @functools.wraps(fn)
    def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
        try:
            return fn(*args, **kwargs)
        except ResearchError as err:
            raise ToolError(str(err)) from err

    return wrapper
