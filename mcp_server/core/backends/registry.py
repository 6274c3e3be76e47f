"""Backends by name, constructed on first use (Slurm helpers are not imported otherwise)."""

from __future__ import annotations

import threading

from mcp_server.core.backends.base import Backend
from mcp_server.core.errors import InvalidInput
from mcp_server.core.paths import StateDir

BACKEND_NAMES: tuple[str, ...] = ("local",)


class Backends:
    def __init__(self, state: StateDir) -> None:
        self.state = state
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
        raise InvalidInput(f"backend {name!r} is not known; valid backends: {', '.join(BACKEND_NAMES)}.")
