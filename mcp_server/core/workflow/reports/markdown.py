"""The report's Markdown: sections a reader expects, tables that survive any renderer."""

from __future__ import annotations

import json
from collections import Counter
from dataclasses import dataclass
from typing import Any

from mcp_server.core.backends import registry
from mcp_server.core.monitoring.metric_keys import goal
from mcp_server.core.run_views import iso
from mcp_server.core.workflow.reports.gather import ReportData
from mcp_server.core.workflow.reports.ranking import Verdict, best_value, summary_of

MAX_PARAM_COLUMNS = 8
MAX_COMMANDS = 20
MAX_FAILURE_LINES = 8


@dataclass(frozen=True)
class Image:
    file: str
    caption: str
    per_run: bool


def fmt(value: Any) -> str:
    if value is None:
        return "–"
    if isinstance(value, float):
        return f"{value:.4g}"
    return str(value)


def cell(value: Any) -> str:
    return fmt(value).replace("|", "\\|").replace("\n", " ").strip() or "–"


def duration(seconds: float | None) -> str:
    if seconds is None:
        return "–"
    s = round(seconds)
    return (
        f"{s}s"
        if s < 120
        else (f"{s // 60}m{s % 60:02d}s" if s < 7200 else f"{s // 3600}h{s % 3600 // 60:02d}m")
    )


def _table(headers: list[str], rows: list[list[str]]) -> list[str]:
    out = ["| " + " | ".join(headers) + " |", "|" + "|".join("---" for _ in headers) + "|"]
    out += ["| " + " | ".join(r) + " |" for r in rows]
    return out


def _compute(data: ReportData) -> list[str]:
    lines = []
    c = data.cluster
    if c is not None:
        gpus = Counter(g.name for g in c.gpus)
        gpu_text = ", ".join(f"{n}× {name}" for name, n in gpus.items()) if gpus else "no GPU"
        mem = f", {c.host.memory_total_mib / 1024:.0f} GiB memory" if c.host.memory_total_mib else ""
        lines.append(
            f"- Machine: `{c.type}` on {c.host.hostname} ({c.host.cpus} CPUs{mem}; {gpu_text}); "
            f"detected {c.detected_at}."
        )
        lines += [f"- {line}" for line in registry.describe(c.backends)]
    else:
        lines.append("- Machine: not detected yet (`detect_cluster` was never run here).")
    backends = Counter(r.backend for r in data.runs)
    gpus_per_run = Counter(r.gpus for r in data.runs)
    lines.append(
        "- Runs: "
        + ", ".join(f"{n} on {b}" for b, n in backends.items())
        + "; GPUs per run: "
        + ", ".join(f"{g} ({n} runs)" for g, n in sorted(gpus_per_run.items()))
        + "."
    )
    if data.compute_notes:
        lines += ["", "From the plan:", "", *("> " + line for line in data.compute_notes.splitlines())]
    return lines


def _runs_table(data: ReportData, verdict: Verdict) -> list[str]:
    ranked_ids = {s.run.id for s in verdict.ranked}
    order = [s.run for s in verdict.ranked] + [r for r in data.runs if r.id not in ranked_ids]
    params = list(dict.fromkeys(k for r in data.runs for k in r.params))
    shown, extra = params[:MAX_PARAM_COLUMNS], params[MAX_PARAM_COLUMNS:]
    headers = ["rank", "run", "status", "duration", *[f"`{p}`" for p in shown]]
    headers += ["other params"] if extra else []
    for key in data.metrics:
        headers += [f"{key} best", f"{key} last"]
    ranks = {s.run.id: i for i, s in enumerate(verdict.ranked, 1)}
    rows = []
    for run in order:
        rank_text = str(ranks[run.id]) if run.id in ranks else "–"
        if run.id in ranks and ranks[run.id] == 1:
            rank_text = "**1** ★"
        row = [rank_text, f"{cell(run.name)} (`{run.id}`)", run.status, duration(run.duration_s)]
        row += [cell(run.params.get(p)) for p in shown]
        if extra:
            row.append(cell(", ".join(f"{p}={fmt(run.params[p])}" for p in extra if p in run.params)))
        for key in data.metrics:
            summary = summary_of(run, key)
            direction = data.direction if key == data.metrics[0] else _own(key, data)
            found = best_value(summary, direction) if summary else None
            row += [cell(found[0] if found else None), cell(summary.last if summary else None)]
        rows.append(row)
    return _table(headers, rows)


def _own(key: str, data: ReportData) -> str:
    return goal(key) or data.direction


def _best(data: ReportData, verdict: Verdict) -> list[str]:
    best = verdict.best
    if best is None:
        return [f"No run can be called best: {verdict.words}."]
    metric = data.metrics[0]
    run = best.run
    at = f" at step {best.step}" if best.step is not None else ""
    params = ", ".join(f"`{k}={fmt(v)}`" for k, v in run.params.items()) or "no params"
    lines = [f"**{run.name}** (`{run.id}`): best {metric} **{fmt(best.value)}**{at} ({params})."]
    second = verdict.runner_up
    if second is not None and verdict.margin is not None:
        rel = f" ({verdict.relative:.1%})" if verdict.relative is not None else ""
        noise = (
            f"; noise (std of each run's last 10 values) {fmt(verdict.noise)}"
            if verdict.noise is not None
            else ""
        )
        versus = f"{second.run.name} ({fmt(second.value)})"
        lines.append(f"Margin over the runner-up, {versus}: {fmt(verdict.margin)}{rel}{noise}.")
    lines.append(f"How sure: {verdict.words}.")
    return lines


def _failures_and_alerts(data: ReportData) -> list[str]:
    lines: list[str] = []
    failed = [r for r in data.runs if r.status in ("failed", "lost")]
    if failed:
        lines += ["### Failures", ""]
        for run in failed:
            code = f", exit {run.exit_code}" if run.exit_code is not None else ""
            cause = next((a for a in data.alerts.get(run.id, []) if a.kind in ("failure", "lost")), None)
            why = cause.message if cause else run.status_reason
            lines.append(f"- **{run.name}** (`{run.id}`) {run.status}{code}: {why}")
            evidence = [str(x) for x in (cause.data.get("lines") or [])][-MAX_FAILURE_LINES:] if cause else []
            if evidence:
                lines += ["", "  ```", *(f"  {line}" for line in evidence), "  ```"]
        lines.append("")
    alerts = [
        (run, a)
        for run in data.runs
        for a in data.alerts.get(run.id, [])
        if a.kind not in ("failure", "lost")
    ]
    if alerts:
        lines += ["### Alerts", ""]
        rows = [
            [
                cell(run.name),
                a.severity,
                a.kind,
                cell(a.message),
                a.status + (f" ({a.resolution})" if a.resolution else ""),
            ]
            for run, a in alerts
        ]
        lines += _table(["run", "severity", "kind", "message", "status"], rows)
    if not lines:
        lines = ["No failures and no alerts."]
    return lines


def _memories(data: ReportData) -> list[str]:
    if not data.memories:
        return ["No active memory rules."]
    started = min((r.created_at for r in data.runs), default="")
    before = [m for m in data.memories if m.created_at <= started]
    after = [m for m in data.memories if m.created_at > started]
    lines = []
    for label, rules in (("In force when these runs started:", before), ("Learned since:", after)):
        if rules:
            lines += [label, "", *(f"- **{cell(m.title)}**: {cell(m.content)}" for m in rules), ""]
    return lines


def _reproduce(data: ReportData) -> list[str]:
    if data.sweep is not None and data.sweep.base_command:
        sw = data.sweep
        return [
            f"Sweep `{sw.id}` ({sw.method}, {len(sw.runs)} runs): `{cell(sw.base_command)}` over",
            "",
            "```json",
            json.dumps(sw.parameters, indent=1, default=str)[:2000],
            "```",
        ]
    lines = []
    for run in data.runs[:MAX_COMMANDS]:
        lines.append(f"- {cell(run.name)}: `{cell(run.command[:300])}` (in `{cell(run.workdir)}`)")
    if len(data.runs) > MAX_COMMANDS:
        lines.append(f"- … and {len(data.runs) - MAX_COMMANDS} more (`get_run` shows each command)")
    return lines


def render(data: ReportData, verdict: Verdict, images: list[Image], written_at: float) -> str:
    metric = data.metrics[0] if data.metrics else None
    ranking = f"ranked by `{metric}` ({data.direction}imized)" if metric else "no metric to rank by"
    out = [
        f"# Report: {data.title}",
        "",
        f"Written {iso(written_at)} by research-mcp from {len(data.runs)} run(s); {ranking}.",
        "",
        "## Objective",
        "",
        data.objective or "No objective recorded (these runs belong to no sweep or plan with a goal).",
        "",
        "## Compute setup",
        "",
        *_compute(data),
        "",
        "## Runs",
        "",
        *_runs_table(data, verdict),
        "",
        "## Best run",
        "",
        *_best(data, verdict),
        "",
        "## Curves",
        "",
    ]
    overlays = [i for i in images if not i.per_run]
    per_run = [i for i in images if i.per_run]
    if not images:
        out += ["No metric curves to draw.", ""]
    for image in overlays:
        out += [f"![{image.caption}]({image.file})", ""]
    if per_run:
        out += ["### Each run", ""]
        for image in per_run:
            out += [f"![{image.caption}]({image.file})", ""]
    out += [
        "## Alerts and failures",
        "",
        *_failures_and_alerts(data),
        "",
        "## Memory rules",
        "",
        *_memories(data),
    ]
    out += ["", "## Reproduce", "", *_reproduce(data), ""]
    return "\n".join(out)


def summary_line(data: ReportData, verdict: Verdict, images: int) -> str:
    statuses = Counter(r.status for r in data.runs)
    parts = [f"{len(data.runs)} runs (" + ", ".join(f"{n} {s}" for s, n in statuses.items()) + ")"]
    best = verdict.best
    if best is not None:
        text = f"best {best.run.name} {data.metrics[0]}={fmt(best.value)}"
        if verdict.runner_up is not None and verdict.margin is not None:
            text += f", margin {fmt(verdict.margin)} over {verdict.runner_up.run.name}"
        parts.append(text + f" ({verdict.words})")
    else:
        parts.append(verdict.words)
    alerts = sum(len(a) for a in data.alerts.values())
    parts.append(f"{images} images, {alerts} alerts")
    return "; ".join(parts)[:600]
