"""Monitoring tools: metrics and alerts, thin wrappers over ``MetricsService``/``AlertService``."""

from typing import Annotated, Literal

from mcp.server.mcpserver import MCPServer
from mcp_types import ToolAnnotations
from pydantic import Field

from mcp_server.app import App, tool_errors
from mcp_server.core.views import AlertPage, AlertResolution, MetricsAnswer
from mcp_server.tools import MAX_INT
from mcp_server.tools.apps import CHART_META
from mcp_server.tools.runs import READ_ONLY


def register(mcp: MCPServer, app: App) -> None:
    @mcp.tool(title="Get metrics", annotations=READ_ONLY, meta=CHART_META)
    @tool_errors
    def get_metrics(
        run_ids: Annotated[
            list[str],
            Field(description="one or more run ids (up to 20) to compare", min_length=1, max_length=20),
        ],
        keys: Annotated[
            list[str] | None,
            Field(description="metric keys, e.g. ['loss', 'val_loss']; omit for every key the runs have"),
        ] = None,
        max_points: Annotated[
            int,
            Field(
                description="total point budget, shared by all returned series (each gets at least 10)",
                ge=10,
                le=20000,
            ),
        ] = 1000,
    ) -> MetricsAnswer:
        """Metric series of runs, downsampled to a point budget (min/max per bucket kept, so spikes
        and NaNs stay visible), with min/max/last/best, step range and counts per key. Lists every
        key a run has; a key you asked for that a run lacks is reported with similar existing keys.
        """
        return app.services().metrics.get(run_ids, keys, max_points)

    @mcp.tool(title="List alerts", annotations=READ_ONLY)
    @tool_errors
    def list_alerts(
        run_id: Annotated[str | None, Field(description="only alerts of this run")] = None,
        status: Annotated[
            Literal["open", "resolved", "all"], Field(description="open (default), resolved or all")
        ] = "open",
        severity: Annotated[
            list[Literal["info", "warning", "critical"]] | None, Field(description="only these severities")
        ] = None,
        limit: Annotated[int, Field(description="page size", ge=1, le=200)] = 50,
        offset: Annotated[
            int, Field(description="rows to skip (next_offset of the previous page)", ge=0, le=MAX_INT)
        ] = 0,
    ) -> AlertPage:
        """Alerts raised by the run monitors (NaN/Inf, loss spikes, divergence, stalls, failures with
        their cause, the LLM judge), newest first. Each has choices; act with resolve_alert.
        """
        return app.services().alerts.list(
            run_id=run_id,
            status=status,
            severity=list(severity) if severity else None,
            limit=limit,
            offset=offset,
        )

    @mcp.tool(
        title="Resolve an alert",
        annotations=ToolAnnotations(
            read_only_hint=False, destructive_hint=True, idempotent_hint=False, open_world_hint=False
        ),
    )
    @tool_errors
    def resolve_alert(
        alert_id: Annotated[str, Field(description="the alert's id from list_alerts or get_run")],
        choice: Annotated[str, Field(description="one of the alert's choices, e.g. 'Ignore' or 'Stop run'")],
    ) -> AlertResolution:
        """Resolve an alert with one of its choices. "Stop run" stops the run (SIGINT, then SIGTERM,
        then SIGKILL); "Rerun" starts the run again; "Ignore" just closes the alert.
        """
        return app.services().alerts.resolve(alert_id, choice)
