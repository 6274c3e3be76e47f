"""experiment://context: a bounded Markdown digest of what is going on.

An agent reads this at the start of a session (and the agent prompt embeds it), so it
must stay small whatever the history: each section shows a capped number of rows, long
texts are cut, and the whole document is cut at ``max_chars``.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING

from mcp_server.core.execution import run_list
from resources.cluster import ClusterSection, cluster_section, current_cluster

if TYPE_CHECKING:
    from mcp_server.core.services import Services

MAX_CHARS = 12_000
ACTIVE_ROWS = 15
RECENT_ROWS = 10
SWEEP_ROWS = 8
ALERT_ROWS = 10
MEMORY_ROWS = 20
PLAN_ROWS = 8
CELL_CHARS = 80
MEMORY_CHARS = 300


def cut(text: str, limit: int) -> str:
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 1] + "…"


def cell(text: object) -> str:
    return cut(str(text if text is not None else ""), CELL_CHARS).replace("|", "\\|")


def _runs(services: Services) -> list[str]:
    # experiment_context has just settled the runs: read both pages as they are, in one snapshot.
    with services.store.sql.snapshot() as conn:
        page = run_list.page(conn, status=["queued", "launching", "running", "ready"], limit=ACTIVE_ROWS)
        ended = run_list.page(conn, status=["finished", "failed", "stopped", "lost"], limit=RECENT_ROWS)
    out = [f"## Runs not ended yet ({page.total})"]
    if page.runs:
        out += ["| id | name | status | why | sweep |", "|---|---|---|---|---|"]
        out += [
            f"| {r.id} | {cell(r.name)} | {r.status} | {cell(r.status_reason)} | {r.sweep_id or ''} |"
            for r in page.runs
        ]
        if page.total > len(page.runs):
            out.append(f"… {page.total - len(page.runs)} more: list_runs(status=[...])")
    else:
        out.append("none")
    out += ["", f"## Recently ended runs ({ended.total} in all)"]
    if ended.runs:
        out += ["| id | name | status | exit | ended |", "|---|---|---|---|---|"]
        out += [
            f"| {r.id} | {cell(r.name)} | {r.status} | {'' if r.exit_code is None else r.exit_code} "
            f"| {r.ended_at or ''} |"
            for r in ended.runs
        ]
    else:
        out.append("none")
    return out


def _sweeps(services: Services) -> list[str]:
    rows = services.sweeps.list(limit=SWEEP_ROWS)
    out = ["## Sweeps"]
    for sw in rows:
        p = sw.progress
        cap = f", parallel {sw.parallel}" if sw.parallel else ""
        out.append(
            f"- {sw.name} ({sw.id}): {sw.status}; {p.done}/{p.total} done, {p.active} active, "
            f"{p.waiting} waiting{cap} — {cut(sw.goal, CELL_CHARS)}"
        )
    return out if rows else [*out, "none"]


def _alerts(services: Services) -> list[str]:
    page = services.alerts.list(status="open", limit=ALERT_ROWS)
    out = [f"## Open alerts ({page.total})"]
    out += [
        f"- [{a.severity}] {a.run_id or 'no run'}: {cut(a.message, 160)} ({a.id}; choices: "
        f"{', '.join(a.choices)})"
        for a in page.alerts
    ]
    return out if page.alerts else [*out, "none"]


def _memory(services: Services) -> list[str]:
    rules = services.memory.list(active_only=True, limit=MEMORY_ROWS)
    out = [f"## Memory rules (active: {rules.total})"]
    out += [
        f"- **{cut(m.title, 120)}** — {cut(m.content, MEMORY_CHARS)}"
        + (f" [{', '.join(m.tags)}]" if m.tags else "")
        + f" ({m.id})"
        for m in rules.memories
    ]
    return out if rules.memories else [*out, "none"]


def _plans(services: Services) -> list[str]:
    plans = services.plans.list(status=["draft", "approved", "executing"], limit=PLAN_ROWS)
    out = [f"## Open plans ({plans.total})"]
    out += [f"- {cut(p.title, 120)} ({p.id}): {p.status}" for p in plans.plans]
    return out if plans.plans else [*out, "none"]


def memory_rules(services: Services) -> str:
    return "\n".join(_memory(services)[1:])


def cluster_of(services: Services, *, can_detect: bool) -> ClusterSection:
    return cluster_section(current_cluster(services), can_detect=can_detect)


def experiment_context(
    services: Services, *, can_detect: bool, include_cluster: bool = True, max_chars: int = MAX_CHARS
) -> str:
    services.reconciler.reconcile()
    stamp = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    lines = ["# Experiment context", f"_as of {stamp}; state dir {services.state.root}_", ""]
    if include_cluster:
        lines += ["## Cluster", cluster_of(services, can_detect=can_detect).markdown, ""]
    for section in (_runs, _sweeps, _alerts, _memory, _plans):
        lines += [*section(services), ""]
    text = "\n".join(lines).rstrip() + "\n"
    if len(text) > max_chars:
        cut_at = text.rfind("\n", 0, max_chars - 80)
        text = text[: max(cut_at, 0)] + "\n\n… (cut to stay short; use list_runs, get_sweep, list_plans)\n"
    return text
