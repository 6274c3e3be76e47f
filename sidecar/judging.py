"""The optional LLM judge, from the sidecar's side: when to ask, what to send, what to record.

It never blocks monitoring: ``sidecar.judge`` runs the call in a thread; a poll only
collects a finished verdict and submits a new digest when data changed and the interval
passed. A mixin of ``Monitor`` (sidecar/monitor.py).
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

from mcp_server.core.execution.logs import tail_lines
from mcp_server.core.monitoring.alert_specs import AlertSpec

if TYPE_CHECKING:
    from mcp_server.core.execution.jobfiles import JobFiles
    from mcp_server.core.monitoring.monitor_settings import MonitorSettings
    from sidecar.db import RunState, SidecarDB
    from sidecar.writer import Writer

log = logging.getLogger("sidecar")

SQL_OPEN_ALERTS = (
    "SELECT severity, message FROM alerts WHERE run_id = ? AND status = 'open' ORDER BY pk DESC LIMIT 10"
)
SQL_JUDGE_USAGE = (
    "UPDATE sidecars SET judge_calls = judge_calls + 1, judge_errors = judge_errors + ?, "
    "judge_prompt_tokens = judge_prompt_tokens + ?, "
    "judge_completion_tokens = judge_completion_tokens + ?, "
    "judge_cost_usd = judge_cost_usd + ?, judge_last_at = ? WHERE run_id = ?"
)


class JudgeMixin:
    run_id: str
    settings: MonitorSettings
    files: JobFiles
    db: SidecarDB
    run: RunState | None
    writer: Writer
    judge: Any
    judge_due: float
    data_version: int
    judged_version: int

    if TYPE_CHECKING:  # provided by Monitor

        def _raise(self, execute: Any, spec: AlertSpec) -> dict[str, Any] | None: ...

    def judge_tick(self, t: float) -> None:
        if self.judge is None:
            from sidecar.judge import Judge

            self.judge = Judge(self.settings.judge_model or "", self.settings.judge_timeout_s)
        result = self.judge.collect()
        if result is not None:
            self.record_verdict(result, t)
        if self.judge.busy or t < self.judge_due or self.data_version == self.judged_version:
            return
        self.judge_due = t + self.settings.judge_interval_s
        self.judged_version = self.data_version
        self.judge.submit(self.digest(t))

    def digest(self, t: float) -> str:
        from sidecar.judge import build_digest

        run = self.run
        assert run is not None
        metrics = []
        for key, s in sorted(self.writer.series.items()):
            recent = [v for _, v in self.writer.recent.get(key, ())]
            first = self.db.one(
                "SELECT value FROM metric_points WHERE series_id = ? ORDER BY step, id LIMIT 1", (s.id,)
            )
            metrics.append(
                {
                    "key": key, "count": s.count, "first": first[0] if first else None,
                    "min": s.min_value, "max": s.max_value, "last": s.last_value, "last_step": s.last_step,
                    "recent": recent, "nonfinite": s.nonfinite,
                }
            )  # fmt: skip
        alerts = [f"[{sev}] {msg}" for sev, msg in self.db.conn.execute(SQL_OPEN_ALERTS, (self.run_id,))]
        elapsed = round(t - run.started_at, 1) if run.started_at else None
        return build_digest(
            run={
                "id": run.id,
                "name": run.name,
                "status": run.status,
                "command": run.command,
                "elapsed_s": elapsed,
            },
            metrics=metrics,
            log_tail=tail_lines(self.files.output, 40, 4096).text,
            open_alerts=alerts,
        )

    def record_verdict(self, result: Any, t: float) -> None:
        from sidecar.judge import verdict_alert

        spec = None
        if result.error:
            log.warning("%s", result.error)
        elif result.verdict is not None and result.verdict.action == "alert":
            spec = verdict_alert(result.verdict, self.settings.judge_model or "")
        with self.db.write() as c:
            usage = (
                1 if result.error else 0,
                result.prompt_tokens,
                result.completion_tokens,
                result.cost_usd,
            )
            c.execute(SQL_JUDGE_USAGE, (*usage, t, self.run_id))
            row = self._raise(c.execute, spec) if spec is not None else None
        if row is not None and spec is not None:
            log.info("judge alert %s [%s] %s", row["id"], spec.severity, spec.message)
        elif spec is not None:
            log.info("judge alert not raised: the same concern was raised recently")
        elif result.verdict is not None and not result.error:
            log.info("judge: %s", result.verdict.action)
