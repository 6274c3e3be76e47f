"""Plan tools: thin wrappers over ``PlanService``."""

from typing import Annotated, Literal

from mcp.server.mcpserver import MCPServer
from pydantic import Field

from mcp_server.app import App
from mcp_server.core.workflow.workflow_views import PlanDetail, PlanList, PlanSaved
from mcp_server.tools import MAX_INT
from mcp_server.tools.runs import CREATES, DEFAULT_ROWS, EDITS, READ_ONLY
from mcp_server.tools.surface import answer, fitting

PlanStatus = Literal["draft", "approved", "executing", "completed", "archived"]
SECTIONS = (
    "headings: Objective, Compute Setup, Approach, (Parameters to Sweep), Metrics, Success Criteria, "
    "Risks & Mitigations, Estimated Effort"
)


def register(mcp: MCPServer, app: App) -> None:
    @mcp.tool(annotations=CREATES)
    @answer
    def save_plan(
        title: Annotated[str, Field(max_length=200)],
        goal: str,
        raw_markdown: Annotated[str, Field(description=SECTIONS)],
        session_id: str | None = None,
    ) -> PlanSaved:
        """Save an experiment plan as a draft for the human to review."""
        return app.services().plans.save(
            title=title, goal=goal, raw_markdown=raw_markdown, session_id=session_id
        )

    @mcp.tool(annotations=READ_ONLY)
    @answer
    def list_plans(
        status: list[PlanStatus] | None = None,
        limit: Annotated[int, Field(ge=1, le=500)] = DEFAULT_ROWS,
        offset: Annotated[int, Field(ge=0, le=MAX_INT)] = 0,
    ) -> PlanList:
        """Saved plans, newest first (get_plan has the Markdown)."""
        page = app.services().plans.list(status=list(status) if status else None, limit=limit, offset=offset)
        if (n := fitting(page.plans, limit=limit, default=DEFAULT_ROWS)) < len(page.plans):
            page.plans, page.next_offset = page.plans[:n], offset + n
        return page

    @mcp.tool(annotations=READ_ONLY)
    @answer
    def get_plan(plan_id: str) -> PlanDetail:
        """One plan: Markdown, status, next statuses, linked sweeps and runs."""
        return app.services().plans.get(plan_id)

    @mcp.tool(annotations=EDITS)
    @answer
    def update_plan(
        plan_id: str,
        status: Annotated[
            PlanStatus | None,
            Field(description="draft → approved → executing → completed; any → archived; approved → draft"),
        ] = None,
        title: Annotated[str | None, Field(max_length=200)] = None,
        goal: str | None = None,
        raw_markdown: str | None = None,
        link_sweep_ids: list[str] | None = None,
        link_run_ids: list[str] | None = None,
    ) -> PlanSaved:
        """Change a plan's status, edit a draft (title, goal, Markdown) or link sweeps and runs."""
        return app.services().plans.update(
            plan_id,
            status=status,
            title=title,
            goal=goal,
            raw_markdown=raw_markdown,
            link_sweep_ids=link_sweep_ids,
            link_run_ids=link_run_ids,
        )
