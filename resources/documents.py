"""The per-object resources: runs://{run_id}, its logs and metrics, sweeps://, plans://."""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any

from mcp_server.core import metric_summary

if TYPE_CHECKING:
    from mcp_server.core.services import Services

LOG_LINES = 200
LOG_BYTES = 64 * 1024
RECENT_METRIC_RECORDS = 20


def _json(data: Any) -> str:
    return json.dumps(data, indent=2, sort_keys=False, default=str)


def run_document(services: Services, run_id: str) -> str:
    detail = services.runs.get(run_id)
    summary = metric_summary.metric_summary(services.state, run_id)
    return _json(
        {
            **detail.model_dump(),
            "metrics": {
                k: {"last": v.last, "min": v.min, "max": v.max, "count": v.count} for k, v in summary.items()
            },
        }
    )


def run_logs(services: Services, run_id: str) -> str:
    chunk = services.runs.logs(run_id, lines=LOG_LINES, max_bytes=LOG_BYTES)
    return chunk.text


def run_metrics(services: Services, run_id: str) -> str:
    services.runs.load(run_id)
    summary = metric_summary.metric_summary(services.state, run_id)
    recent = metric_summary.recent_records(services.state, run_id, RECENT_METRIC_RECORDS)
    return _json(
        {
            "run_id": run_id,
            "metrics": {
                k: {
                    "count": v.count,
                    "last": v.last,
                    "last_step": v.last_step,
                    "min": v.min,
                    "min_step": v.min_step,
                    "max": v.max,
                    "max_step": v.max_step,
                }
                for k, v in summary.items()
            },
            "recent": recent,
        }
    )


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
