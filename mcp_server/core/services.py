"""All core services for one state dir, wired together once per process."""

from __future__ import annotations

import logging
import os
from pathlib import Path

from mcp_server.core.backends.registry import Backends
from mcp_server.core.execution import provenance
from mcp_server.core.execution.jobfiles import JobFiles
from mcp_server.core.execution.reconcile import Reconciler
from mcp_server.core.execution.runs import RunService
from mcp_server.core.execution.settler import ExitSettler
from mcp_server.core.execution.sidecars import SidecarSupervisor, monitor_info, wait_drained
from mcp_server.core.monitoring.alerts import AlertService, open_alerts
from mcp_server.core.monitoring.metrics import MetricsService, summaries
from mcp_server.core.monitoring.monitor_settings import MonitorSettings
from mcp_server.core.paths import StateDir
from mcp_server.core.run_views import RunDetail
from mcp_server.core.scheduling.admission import Admission
from mcp_server.core.scheduling.cluster import ClusterService
from mcp_server.core.search.sweeps import SweepService
from mcp_server.core.settings import Settings
from mcp_server.core.storage.models import Run
from mcp_server.core.storage.store import Store
from mcp_server.core.workflow.memory import MemoryService
from mcp_server.core.workflow.plans import PlanService

log = logging.getLogger(__name__)


class Services:
    def __init__(
        self, state_dir: str | os.PathLike[str] | None = None, settings: Settings | None = None
    ) -> None:
        self.state = StateDir.open(state_dir)
        self.settings = settings or Settings.from_env()
        self.monitor_settings = MonitorSettings.from_env()
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
        self.sweeps = SweepService(self.state, self.store, self.runs, self.reconciler)
        # Runs of a sweep launch through it (parallel cap); a run's end admits the next one.
        self.runs.sweeps = self.sweeps
        self.reconciler.on_terminal.append(self.sweeps.on_run_terminal)
        self.settler = ExitSettler(self.reconciler, after_full=[self.sweeps.top_up, self.recover])
        self.plans = PlanService(self.store)
        self.memory = MemoryService(self.store)
        # Monitoring: a sidecar per launched run, restarted by reconcile; metrics and alerts.
        self.sidecars = SidecarSupervisor(self.state, self.store, self.monitor_settings)
        self.metrics = MetricsService(self.store, self.runs)
        self.alerts = AlertService(self.store, self.runs)
        self.runs.after_launch.append(self.sidecars.start)
        self.runs.detail_extras.append(self.add_monitoring)
        # What each run ran (code, interpreter, host, GPUs), recorded before its job starts.
        self.runs.before_submit.append(self.record_provenance)
        self.runs.detail_extras.append(self.add_provenance)
        self.reconciler.after_reconcile.append(self.sidecars.ensure)

    def recover(self) -> list[str]:
        """Complete creates and launches a killed server interrupted (see core.storage.recovery)."""
        from mcp_server.core.storage.recovery import Recovery

        return Recovery(self.runs).run()

    def add_monitoring(self, detail: RunDetail) -> None:
        """get_run's extra: metric summaries, open alerts and the sidecar's state.

        For an ended run, first let its sidecar store the last lines (and the failure alert)."""
        wait_drained(self.store, [detail.id])
        with self.store.read() as s:
            detail.metrics = summaries(s, detail.id)
            detail.open_alerts = open_alerts(s, detail.id)
            detail.monitor = monitor_info(s, detail.id, self.monitor_settings)

    def record_provenance(self, run: Run, files: JobFiles) -> None:
        provenance.capture(run, files, self.settings.probe_timeout_s)

    def add_provenance(self, detail: RunDetail) -> None:
        detail.provenance = provenance.brief(provenance.load(Path(detail.run_dir)))

    def close(self) -> None:
        self.runs.close()
        self.store.close()
