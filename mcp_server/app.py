"""Per-process application state for the MCP layer.

The core services (and sqlmodel with them) are created on first use, not at import:
a stdio server must answer ``initialize`` about as fast as an empty MCP server
(DESIGN invariant 6). The start-up reconcile runs on a background thread for the same
reason; any tool that needs the services waits for the same one-time initialisation.
"""

from __future__ import annotations

import functools
import logging
import os
import threading
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import TYPE_CHECKING, Any, ParamSpec, TypeVar

from mcp.server.mcpserver.exceptions import ToolError

from mcp_server.core.errors import ResearchError

if TYPE_CHECKING:
    from mcp_server.core.services import Services

log = logging.getLogger("research_mcp")

P = ParamSpec("P")
R = TypeVar("R")


class App:
    def __init__(self, state_dir: str | os.PathLike[str] | None = None) -> None:
        self.state_dir = state_dir
        self._services: Services | None = None
        self._lock = threading.Lock()

    def services(self) -> Services:
        with self._lock:
            if self._services is None:
                from mcp_server.core.services import Services

                self._services = Services(self.state_dir)
            return self._services

    def startup(self) -> None:
        """Open the store and settle runs that ended while no server was looking."""
        try:
            self.services().reconciler.reconcile()
        except Exception:
            log.exception("start-up reconcile failed; it will be retried on the next run query")

    @asynccontextmanager
    async def lifespan(self, _server: Any) -> AsyncIterator[App]:
        threading.Thread(target=self.startup, name="research-mcp-startup", daemon=True).start()
        yield self


def tool_errors(fn: Callable[P, R]) -> Callable[P, R]:
    """Turn core errors into ToolErrors so the model sees the message (others become opaque)."""

    @functools.wraps(fn)
    def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
        try:
            return fn(*args, **kwargs)
        except ResearchError as err:
            raise ToolError(str(err)) from err

    return wrapper
