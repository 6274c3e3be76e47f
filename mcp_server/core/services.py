"""All core services for one state dir, wired together once per process."""

from __future__ import annotations

import os

from mcp_server.core.backends.registry import Backends
from mcp_server.core.paths import StateDir
from mcp_server.core.reconcile import Reconciler
from mcp_server.core.runs import RunService
from mcp_server.core.settings import Settings
from mcp_server.core.store import Store


class Services:
    def __init__(
        self, state_dir: str | os.PathLike[str] | None = None, settings: Settings | None = None
    ) -> None:
        self.state = StateDir.open(state_dir)
        self.settings = settings or Settings.from_env()
        self.store = Store(self.state.db_path)
        self.backends = Backends(self.state, self.store, self.settings)
        self.reconciler = Reconciler(self.state, self.store, self.backends, self.settings)
        self.runs = RunService(self.state, self.store, self.backends, self.reconciler, self.settings)

    def close(self) -> None:
        self.store.close()
