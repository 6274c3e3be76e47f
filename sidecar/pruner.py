"""The sidecar's side of early stopping: ask the sweep's pruner as the run's metric advances.

A run of a sweep with a pruner asks ``core.search.pruning`` at most every
``RESEARCH_MCP_PRUNE_CHECK_S`` and only when the sweep's metric reached a new step. A
pruned run gets its reason written to ``stop_reason`` (so whoever records its end says
why), its verdict and a stop request in one transaction, and is stopped the way stop_run
stops a run, on a thread, so this sidecar keeps reading its output meanwhile. Its end
then frees the slot for the sweep's next run like any other ending. A mixin of ``Monitor``.
"""

from __future__ import annotations

import logging
import threading
from typing import TYPE_CHECKING, Any

from mcp_server.core.execution.launch import write_private
from mcp_server.core.execution.run_status import RunStatus
from mcp_server.core.search import pruning

if TYPE_CHECKING:
    from mcp_server.core.execution.jobfiles import JobFiles
    from mcp_server.core.monitoring.monitor_settings import MonitorSettings
    from sidecar.db import RunState, SidecarDB
    from sidecar.writer import Writer

log = logging.getLogger("sidecar")


class PruneMixin:
    run_id: str
    settings: MonitorSettings
    files: JobFiles
    db: SidecarDB
    run: RunState | None
    writer: Writer
    prune_config: tuple[str, dict[str, Any]] | None = None
    prune_due = 0.0
    prune_step: int | None = None
    pruned = False

    if TYPE_CHECKING:  # provided by StatusMixin

        def backend(self) -> Any: ...

    def prune_setup(self) -> None:
        """Read once whether this run belongs to a sweep with a pruner."""
        self.prune_config = pruning.config(self.db.conn.execute, self.run_id)

    def prune_tick(self, t: float) -> None:
        if self.prune_config is None or self.pruned or t < self.prune_due:
            return
        if self.run is None or self.run.status != RunStatus.RUNNING or self.run.stop_requested_at is not None:
            return
        sweep_id, search = self.prune_config
        series = self.writer.series.get(search["metric"])
        if series is None or series.last_step is None or series.last_step == self.prune_step:
            return
        self.prune_due = t + self.settings.prune_check_s
        self.prune_step = series.last_step
        verdict = pruning.check(
            self.db.conn.execute, self.run_id, sweep_id, search, self.settings.prune_min_runs
        )
        if verdict is None or not verdict.prune:
            return
        write_private(self.files.stop_note, verdict.reason + "\n")
        with self.db.write() as c:
            requested = pruning.record(c.execute, self.run_id, sweep_id, verdict, t)
        if requested:
            self.pruned = True
            log.info("%s", verdict.reason)
            threading.Thread(target=self._stop, name="prune-stop", daemon=True).start()

    def _stop(self) -> None:
        from mcp_server.core.settings import Settings

        try:
            self.backend().stop(self.run, self.files, Settings.from_env().stop_grace_s)
        except Exception:
            log.exception("stopping the pruned run %s failed", self.run_id)

