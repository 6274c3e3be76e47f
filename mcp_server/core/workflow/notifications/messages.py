"""The words of a notification, read through the same core services the MCP tools use.

A message is written for a phone's lock screen: the title names the run or sweep and what
happened; the body gives the reason, the key metric and its best value, and the command
to look closer. Rendered once, on a message's first attempt (a run's last metrics are
stored by then: ``runs.get`` waits for its sidecar to drain), and kept for its retries.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from mcp_server.core.errors import NotFound
from mcp_server.core.monitoring.metric_keys import goal, key_metric
from mcp_server.core.run_views import MetricSummary, RunDetail
from mcp_server.core.workflow.notifications.outbox import Delivery

if TYPE_CHECKING:
    from mcp_server.core.services import Services

MAX_BODY = 1500
_LEVEL = {"finished": "success", "failed": "failure", "lost": "failure", "stopped": "info"}
_ALERT_LEVEL = {"critical": "failure", "warning": "warning", "info": "info"}


@dataclass(frozen=True)
class Message:
    title: str
    body: str
    level: str  # apprise notify type: info | success | warning | failure


def fmt(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.4g}"


def duration(seconds: float | None) -> str:
    if seconds is None:
        return "n/a"
    s = round(seconds)
    if s < 120:
        return f"{s}s"
    if s < 7200:
        return f"{s // 60}m{s % 60:02d}s"
    return f"{s // 3600}h{s % 3600 // 60:02d}m"


def metric_line(metrics: list[MetricSummary]) -> str:
    key = key_metric([m.key for m in metrics])
    m = next((m for m in metrics if m.key == key), None)
    if m is None:
        return "no loss- or accuracy-like metric logged" if not metrics else f"metrics: {len(metrics)} keys"
    best = f"best {fmt(m.best)}" + (f" at step {m.best_step}" if m.best_step is not None else "")
    bad = f", {m.nonfinite} NaN/Inf" if m.nonfinite else ""
    return f"{m.key}: {best}, last {fmt(m.last)} ({m.count} points{bad})"


def _look_closer(run_id: str) -> str:
    return f"look closer: research-mcp logs {run_id} -n 50  (agent: get_run {run_id})"


def _sweep_line(services: Services, sweep_id: str | None) -> str | None:
    if sweep_id is None:
        return None
    try:
        row = services.sweeps.get(sweep_id)
    except NotFound:
        return None
    p = row.progress
    return f"sweep {row.name}: {p.done} of {p.total} runs ended ({p.finished} finished, {p.failed} failed)"


def run_ended(services: Services, run: RunDetail) -> Message:
    code = "" if run.exit_code is None else f" (exit {run.exit_code})"
    lines = [f"{run.name} ({run.id}) {run.status}{code} after {duration(run.duration_s)}"]
    if run.status_reason:
        lines.append(f"reason: {run.status_reason}")
    cause = next((a for a in run.open_alerts if a.kind in ("failure", "lost")), None)
    if cause is not None:
        lines.append(f"cause: {cause.message}")
    lines.append(metric_line(run.metrics))
    sweep = _sweep_line(services, run.sweep_id)
    if sweep:
        lines.append(sweep)
    lines.append(_look_closer(run.id))
    return Message(f"run {run.status}: {run.name}", "\n".join(lines), _LEVEL.get(run.status, "info"))


def alert(services: Services, run: RunDetail | None, alert_id: str | None) -> Message:
    found = services.alerts.load(alert_id) if alert_id else None
    severity = found.severity if found else "warning"
    kind = found.kind if found else "alert"
    what = run.name if run is not None else "research-mcp"
    lines = [found.message if found else "an alert was raised"]
    if run is not None:
        lines.append(f"run {run.name} ({run.id}) is {run.status}")
        lines.append(metric_line(run.metrics))
        lines.append(_look_closer(run.id))
    if found is not None:
        lines.append(
            f"resolve with one of: {', '.join(found.choices)} (list_alerts / resolve_alert {found.id})"
        )
    return Message(
        f"{severity} alert ({kind}): {what}", "\n".join(lines), _ALERT_LEVEL.get(severity, "warning")
    )


def sweep_done(services: Services, sweep_id: str) -> Message:
    first = services.sweeps.get(sweep_id)
    key = key_metric(first.metric_keys)
    sweep = services.sweeps.get(sweep_id, metric=key, direction=goal(key) or "min") if key else first
    p = sweep.progress
    lines = [
        f"{sweep.name} ({sweep.id}) {sweep.status}: {p.finished} finished, {p.failed} failed, "
        f"{p.stopped} stopped, {p.lost} lost of {p.total}",
        f"goal: {sweep.goal}",
    ]
    if sweep.best is not None:
        b = sweep.best
        params = ", ".join(f"{k}={v}" for k, v in b.params.items())
        lines.append(
            f"best: {b.name} ({b.run_id}) {sweep.metric} {fmt(b.value)}" + (f" [{params}]" if params else "")
        )
    elif key is None:
        lines.append("no loss- or accuracy-like metric to rank runs by")
    lines.append(f"look closer: research-mcp report --sweep {sweep.id}  (agent: get_sweep / write_report)")
    level = "success" if sweep.status == "completed" else "warning"
    return Message(f"sweep {sweep.status}: {sweep.name}", "\n".join(lines), level)


def render(services: Services, delivery: Delivery) -> Message:
    if delivery.kind == "sweep_done" and delivery.sweep_id:
        message = sweep_done(services, delivery.sweep_id)
    else:
        run = services.runs.get(delivery.run_id) if delivery.run_id else None
        if delivery.kind == "alert" or run is None:
            message = alert(services, run, delivery.alert_id)
        else:
            message = run_ended(services, run)
    body = message.body if len(message.body) <= MAX_BODY else message.body[: MAX_BODY - 1] + "…"
    return Message(f"research-mcp: {message.title}"[:250], body, message.level)
