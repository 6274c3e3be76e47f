"""The per-object resources: runs://{run_id}, its logs and metrics, sweeps://, plans://."""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any

from mcp_server.core.execution.sidecars import wait_drained
from mcp_server.core.monitoring.metrics import recent_points, summaries
from mcp_server.core.storage.sqlread import driver_of

if TYPE_CHECKING:
    from mcp_server.core.services import Services

LOG_LINES = 200
LOG_BYTES = 64 * 1024
RECENT_METRIC_POINTS = 20


def _json(data: Any) -> str:
    return json.dumps(data, indent=2, sort_keys=False, default=str)


def run_document(services: Services, run_id: str) -> str:
    """The run in full; its metric summaries and open alerts are part of get_run's answer."""
    return services.runs.get(run_id).model_dump_json(indent=2)


def run_logs(services: Services, run_id: str) -> str:
    chunk = services.runs.logs(run_id, lines=LOG_LINES, max_bytes=LOG_BYTES)
    return chunk.text


def run_metrics(services: Services, run_id: str) -> str:
    services.runs.load(run_id)
    wait_drained(services.store, [run_id])
    with services.store.read() as s:
        summary = summaries(s, run_id)
        recent = recent_points(driver_of(s.connection()), run_id, RECENT_METRIC_POINTS)
    by_key = {m.key: m.model_dump(exclude={"key"}) for m in summary}
    return _json({"run_id": run_id, "metrics": by_key, "recent": recent})


def run_provenance(services: Services, run_id: str) -> str:
    from mcp_server.core.execution.provenance import load

    services.runs.load(run_id)
    doc = load(services.runs.files(run_id).run_dir)
    return _json(doc if doc is not None else {"note": "no provenance: the run was never launched"})


def sweep_document(services: Services, sweep_id: str) -> str:
    return services.sweeps.get(sweep_id).model_dump_json(indent=2)


def plan_document(services: Services, plan_id: str) -> str:
    plan = services.plans.get(plan_id)
    links = ", ".join([*plan.sweep_ids, *plan.run_ids]) or "none"
    head = (
        f"<!-- plan {plan.id} | status: {plan.status} | next: {', '.join(plan.next_statuses) or 'none'} "
        f"| linked: {links} | updated {plan.updated_at} -->\n"
    )
    return head + plan.raw_markdown
