"""Per-process application state for the MCP layer.

The core services (and sqlmodel with them) are created on first use, not at import:
a stdio server must answer ``initialize`` about as fast as an empty MCP server
(DESIGN invariant 6), and its first tool answers too. So the most common first calls
(list_runs, list_alerts) are answered from plain SQL (``read_light``) while the services
are not loaded yet and nothing needs settling; the services load, and the start-up
reconcile runs, on a background thread once the first answer is out (or after
``PRELOAD_AFTER_S``), so loading them does not compete with that answer for the GIL. Any
tool that needs the services waits for the same one-time initialisation.
"""

from __future__ import annotations

import functools
import inspect
import logging
import os
import sqlite3
import sys
import threading
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any, ParamSpec, TypeVar

import anyio
import anyio.to_thread
from mcp.server.mcpserver.exceptions import ToolError

from mcp_server.core.errors import ResearchError
from mcp_server.core.paths import resolve_state_dir
from mcp_server.core.storage.migrations import SCHEMA_VERSION
from mcp_server.core.storage.sqlread import SqlReader
from mcp_server.core.storage.store_health import run_dirs

if TYPE_CHECKING:
    from mcp_server.core.services import Services
    from mcp_server.core.workflow.notifications.watch import NotifyWatch
    from mcp_server.notify import Notifier

log = logging.getLogger("research_mcp")

P = ParamSpec("P")
R = TypeVar("R")
T = TypeVar("T")

# The services load in the background this long after start-up at the latest (sooner: once the
# first tool answer is out, or at once when a call needs them).
PRELOAD_AFTER_S = 1.0
# An answer computed is on the wire this much later: loading the services (imports hold the
# GIL) waits that long rather than delay it.
ANSWER_OUT_S = 0.1


class App:
    def __init__(self, state_dir: str | os.PathLike[str] | None = None) -> None:
        self.state_dir = state_dir
        self._services: Services | None = None
        self._lock = threading.Lock()
        self._reader: SqlReader | None = None
        self._answered = threading.Event()  # a first tool answer is out: load the services now
        # Set by create_server: pushes resource-updated notifications to subscribed clients.
        self.notifier: Notifier | None = None
        # Starts a notification sender process when a run ends or an alert fires (apprise URLs).
        self.notify_watch: NotifyWatch | None = None

    def services(self) -> Services:
        self._answered.set()
        with self._lock:
            if self._services is None:
                from mcp_server.core.services import Services

                self._services = Services(self.state_dir)
            return self._services

    def read_light(self, read: Callable[[sqlite3.Connection | None], T | None]) -> T | None:
        """``read``'s answer from plain SQL while the services are not loaded yet, or None: then
        ask the services. ``read`` gets None when there is no store yet, and answers None
        itself when it cannot answer without the services (a run to settle first). A store
        that is being created or upgraded right now (a table or column missing) is left to
        the services too."""
        if self._services is not None:
            return None
        try:
            path = self.db_path
            if not path.is_file():
                # No store yet is no runs, unless run dirs say one was lost: the services say so.
                return None if run_dirs(path.parent / "runs") else read(None)
            if self._reader is None:
                self._reader = SqlReader(path)
            with self._reader.snapshot() as conn:
                row = conn.execute("SELECT value FROM meta WHERE key = 'schema_version'").fetchone()
                if row is None or int(row[0]) != SCHEMA_VERSION:  # an older store (to upgrade) or a newer one
                    return None
                return read(conn)
        except sqlite3.Error:
            return None
        finally:
            self._answered.set()

    @property
    def db_path(self) -> Path:
        """The store's path, known without opening it (the watcher starts before the services)."""
        return resolve_state_dir(self.state_dir) / "research.db"

    def startup(self) -> None:
        """Open the store, settle runs that ended while no server was looking, refill sweeps:
        once the first answer is out, or after PRELOAD_AFTER_S.

        A store that cannot be used (corrupt, missing beside run dirs, too new) is said on
        stderr at once, and every tool answers with the same words until it is fixed: the
        server still starts, so a client is never left hanging before ``initialize``."""
        if self._answered.wait(PRELOAD_AFTER_S) and self._services is None:
            time.sleep(ANSWER_OUT_S)
        try:
            services = self.services()
            services.recover()  # first: a launch a killed server interrupted is submitted, not lost
            from mcp_server.core.workflow.notifications.watch import NotifyWatch

            self.notify_watch = NotifyWatch(services.state.root).start()
            services.reconciler.reconcile()
            services.sweeps.top_up()
        except ResearchError as err:
            note = "tools answer with this until it is fixed"
            print(f"research-mcp: {err} ({note})", file=sys.stderr, flush=True)
        except Exception:
            log.exception("start-up reconcile failed; it will be retried on the next run query")

    def settle(self) -> None:
        """Record runs that ended (called by waiters and the watcher, in worker threads).

        Before the services have loaded, ask for them (in the background) and return: their
        start-up reconcile settles everything then."""
        services = self._services
        if services is None:
            self._answered.set()
            return
        services.settler.tick()

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


# How an unexpected failure (a bug) starts its message: never the SDK's bare "Error executing
# tool X", which tells an agent nothing; the fuzz test fails on it.
UNEXPECTED = "research-mcp failed unexpectedly (a bug, not your input)"


def _as_tool_error(err: Exception, tool: str) -> ToolError:
    if isinstance(err, ToolError):
        return err
    if isinstance(err, ResearchError):
        return ToolError(str(err))
    from mcp_server.core.storage.store_health import translate  # an SQLite error that escaped the store

    translated = translate(err, None)
    if translated is not None:
        return ToolError(str(translated))
    log.error("%s: unexpected error", tool, exc_info=err)  # the traceback goes to the server's log
    detail = " ".join(str(err).split())[:300]
    return ToolError(
        f"{UNEXPECTED} in {tool}: {type(err).__name__}: {detail or '(no message)'}. "
        "The server's log has the traceback; `research-mcp doctor` checks the state dir, and "
        "list_runs shows whether a run was created before it failed."
    )


def tool_errors(fn: Callable[P, R]) -> Callable[P, R]:
    """Every error becomes a ToolError whose message the model sees: core errors as they are,
    anything else as an unexpected failure that names itself (logged with its traceback)."""
    if inspect.iscoroutinefunction(fn):

        @functools.wraps(fn)
        async def async_wrapper(*args: P.args, **kwargs: P.kwargs) -> Any:
            try:
                return await fn(*args, **kwargs)
            except Exception as err:
                raise _as_tool_error(err, fn.__name__) from err

        return async_wrapper  # type: ignore[return-value]

    @functools.wraps(fn)
    def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
        try:
            return fn(*args, **kwargs)
        except Exception as err:
            raise _as_tool_error(err, fn.__name__) from err

    return wrapper
