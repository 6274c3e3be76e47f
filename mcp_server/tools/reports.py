"""The report tool: thin wiring over ``core.workflow.reports``."""

from typing import Annotated, Literal

from mcp.server.mcpserver import MCPServer
from pydantic import Field

from mcp_server.app import App
from mcp_server.core.workflow.reports.answer import ReportAnswer
from mcp_server.tools.runs import EDITS
from mcp_server.tools.surface import answer


def register(mcp: MCPServer, app: App) -> None:
    @mcp.tool(annotations=EDITS)
    @answer
    def write_report(
        sweep_id: str | None = None,
        run_ids: Annotated[list[str] | None, Field(max_length=200)] = None,
        plan_id: str | None = None,
        metrics: Annotated[list[str] | None, Field(max_length=4, description="the first ranks runs")] = None,
        direction: Literal["min", "max"] | None = None,
        name: Annotated[str | None, Field(description="file: reports/<name>/report.md")] = None,
        path: Annotated[str | None, Field(description="or a .md path in the project")] = None,
    ) -> ReportAnswer:
        """Markdown report (runs, best and margin, curves, alerts, rules) of a sweep, run_ids or a
        plan; answers its path."""
        from mcp_server.core.workflow.reports.service import write_report as write

        return write(
            app.services(),
            sweep_id=sweep_id,
            run_ids=run_ids,
            plan_id=plan_id,
            metrics=metrics,
            direction=direction,
            name=name,
            path=path,
        )
