"""Backends by name, constructed on first use (Slurm helpers are not imported otherwise)."""

from __future__ import annotations

import threading
from typing import TYPE_CHECKING

from mcp_server.core.backends.base import Backend
from mcp_server.core.errors import InvalidInput
from mcp_server.core.paths import StateDir
from mcp_server.core.settings import Settings

if TYPE_CHECKING:
    from mcp_server.core.store import Store

BACKEND_NAMES: tuple[str, ...] = ("local", "slurm")


class Backends:
    def __init__(self, state: StateDir, store: Store, settings: Settings) -> None:
        self.state = state
        self.store = store
        self.settings = settings
        self._made: dict[str, Backend] = {}
        self._lock = threading.Lock()

    def get(self, name: str) -> Backend:
        with self._lock:
            if name not in self._made:
                self._made[name] = self._make(name)
            return self._made[name]

    def _make(self, name: str) -> Backend:
        if name == "local":
            from mcp_server.core.backends.local import LocalTmuxBackend

            return LocalTmuxBackend(self.state)
        if name == "slurm":
            from mcp_server.core.backends.slurm import SlurmBackend

            return SlurmBackend(self.store, self.settings)
        raise InvalidInput(f"backend {name!r} is not known; valid backends: {', '.join(BACKEND_NAMES)}.")
