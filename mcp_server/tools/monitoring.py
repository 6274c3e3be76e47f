"""Monitoring tools: metrics and alerts, thin wrappers over ``MetricsService``/``AlertService``."""

from typing import Annotated, Any, Literal

from mcp.server.mcpserver import MCPServer
from pydantic import Field

from mcp_server.app import App
from mcp_server.core.monitoring import alert_list
from mcp_server.core.run_views import AlertPage, AlertResolution, MetricsAnswer
from mcp_server.tools import MAX_INT
from mcp_server.tools.apps import CHART_META
from mcp_server.tools.runs import DEFAULT_ROWS, READ_ONLY, STOPS
from mcp_server.tools.surface import answer, fitting

# Without keys, a run's first keys are summarised; the rest are listed by name.
DEFAULT_KEYS = 16


def register(mcp: MCPServer, app: App) -> None:
    @mcp.tool(annotations=READ_ONLY, meta=CHART_META)
    @answer
    def get_metrics(
        run_ids: Annotated[list[str], Field(min_length=1, max_length=20)],
        keys: Annotated[list[str] | None, Field(description="default: every key (16 per run)")] = None,
        max_points: Annotated[
            int | None,
            Field(description="shared by all series; default: a sketch, ≤ 20 each", ge=4, le=20000),
        ] = None,
    ) -> MetricsAnswer:
        """Per key: count, steps, last, min, max, best, NaN/Inf count, and [step, value] points
        keeping each bucket's extremes (null: NaN/Inf)."""
        return app.services().metrics.get(run_ids, keys, max_points, max_keys=None if keys else DEFAULT_KEYS)

    @mcp.tool(annotations=READ_ONLY)
    @answer
    def list_alerts(
        run_id: str | None = None,
        status: Literal["open", "resolved", "all"] = "open",
        severity: list[Literal["info", "warning", "critical"]] | None = None,
        limit: Annotated[int, Field(ge=1, le=200)] = DEFAULT_ROWS,
        offset: Annotated[int, Field(ge=0, le=MAX_INT)] = 0,
    ) -> AlertPage:
        """Alerts (NaN/Inf, spike, divergence, stall, failure cause, LLM judge), newest first; act
        with resolve_alert."""
        args: dict[str, Any] = {
            "run_id": run_id,
            "status": status,
            "severity": list(severity) if severity else None,
            "limit": limit,
            "offset": offset,
        }
        # A new server answers from plain SQL while its services load.
        page = app.read_light(lambda conn: alert_list.known_page(conn, **args)) or app.services().alerts.list(
            **args
        )
        if (n := fitting(page.alerts, limit=limit, default=DEFAULT_ROWS)) < len(page.alerts):
            page.alerts, page.next_offset = page.alerts[:n], offset + n
        return page

    @mcp.tool(annotations=STOPS)
    @answer
    def resolve_alert(
        alert_id: str,
        choice: Annotated[str, Field(description="one of the alert's choices")],
    ) -> AlertResolution:
        """Close an alert: 'Stop run' stops its run (closing its other stop-only alerts), 'Rerun'
        reruns it, 'Ignore' closes it."""
        return app.services().alerts.resolve(alert_id, choice)
