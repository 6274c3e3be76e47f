"""All core services for one state dir, wired together once per process."""

from __future__ import annotations

import os

from mcp_server.core.admission import Admission
from mcp_server.core.backends.registry import Backends
from mcp_server.core.cluster import ClusterService
from mcp_server.core.lifecycle import RunStatus
from mcp_server.core.memory import MemoryService
from mcp_server.core.models import Run
from mcp_server.core.paths import StateDir
from mcp_server.core.plans import PlanService
from mcp_server.core.reconcile import Reconciler
from mcp_server.core.runs import RunService
from mcp_server.core.settings import Settings
from mcp_server.core.settle import ExitSettler
from mcp_server.core.store import Store
from mcp_server.core.sweeps import SweepService


class Services:
    def __init__(
        self, state_dir: str | os.PathLike[str] | None = None, settings: Settings | None = None
    ) -> None:
        self.state = StateDir.open(state_dir)
        self.settings = settings or Settings.from_env()
        self.store = Store(self.state.db_path)
        self.backends = Backends(self.state, self.store, self.settings)
        self.reconciler = Reconciler(self.state, self.store, self.backends, self.settings)
        self.admission = Admission(self.state, self.settings)
        self.cluster = ClusterService(self.state, self.store, self.settings, self.admission)
        self.runs = RunService(
            self.state,
            self.store,
            self.backends,
            self.reconciler,
            self.settings,
            self.cluster,
            self.admission,
        )
        self.reconciler.on_terminal.append(self._release)
        self.sweeps = SweepService(self.state, self.store, self.runs, self.reconciler)
        # Runs of a sweep launch through it (parallel cap); a run's end admits the next one.
        self.runs.sweeps = self.sweeps
        self.reconciler.on_terminal.append(self.sweeps.on_run_terminal)
        self.settler = ExitSettler(self.reconciler, after_full=[self.sweeps.top_up])
        self.plans = PlanService(self.store)
        self.memory = MemoryService(self.store)

    def _release(self, run: Run) -> None:
        """A run that ended gives up its GPU lease or run slot at once (the queue would reclaim it anyway).

        Not a lost one: its job may still be running on the GPUs; the queue reclaims that lease
        when the job's process group is gone."""
        if run.status == RunStatus.LOST:
            return
        with self.store.write() as s:
            self.admission.release(s, run.id)

    def close(self) -> None:
        self.store.close()
