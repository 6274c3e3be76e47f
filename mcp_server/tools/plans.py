"""Plan tools: thin wrappers over ``PlanService``."""

from typing import Annotated, Literal

from mcp.server.mcpserver import MCPServer
from mcp_types import ToolAnnotations
from pydantic import Field

from mcp_server.app import App, tool_errors
from mcp_server.core.workflow_views import PlanDetail, PlanList
from mcp_server.tools import MAX_INT

PlanId = Annotated[str, Field(description="a plan id as returned by save_plan or list_plans")]
PlanStatus = Literal["draft", "approved", "executing", "completed", "archived"]


def register(mcp: MCPServer, app: App) -> None:
    @mcp.tool(
        title="Save a plan",
        annotations=ToolAnnotations(
            read_only_hint=False, destructive_hint=False, idempotent_hint=False, open_world_hint=False
        ),
    )
    @tool_errors
    def save_plan(
        title: Annotated[str, Field(description="one line naming the experiment", max_length=200)],
        goal: Annotated[str, Field(description="the question the experiments answer")],
        raw_markdown: Annotated[
            str,
            Field(
                description="the plan in Markdown with a heading for each section: Objective, Compute "
                "Setup, Approach, Metrics, Success Criteria, Risks & Mitigations, Estimated Effort "
                "(Parameters to Sweep optional)"
            ),
        ],
        session_id: Annotated[str | None, Field(description="the agent session that wrote it")] = None,
    ) -> PlanDetail:
        """Save an experiment plan as a draft for the human to review; refused if a section is missing."""
        return app.services().plans.save(
            title=title, goal=goal, raw_markdown=raw_markdown, session_id=session_id
        )

    @mcp.tool(
        title="List plans",
        annotations=ToolAnnotations(
            read_only_hint=True, destructive_hint=False, idempotent_hint=True, open_world_hint=False
        ),
    )
    @tool_errors
    def list_plans(
        status: Annotated[list[PlanStatus] | None, Field(description="only plans in these statuses")] = None,
        limit: Annotated[int, Field(description="page size", ge=1, le=500)] = 50,
        offset: Annotated[int, Field(description="plans to skip", ge=0, le=MAX_INT)] = 0,
    ) -> PlanList:
        """Saved plans, newest first, without their Markdown (read one with get_plan)."""
        return app.services().plans.list(status=list(status) if status else None, limit=limit, offset=offset)

    @mcp.tool(
        title="Get a plan",
        annotations=ToolAnnotations(
            read_only_hint=True, destructive_hint=False, idempotent_hint=True, open_world_hint=False
        ),
    )
    @tool_errors
    def get_plan(plan_id: PlanId) -> PlanDetail:
        """One plan in full: Markdown, status, the statuses it may move to, linked sweeps and runs."""
        return app.services().plans.get(plan_id)

    @mcp.tool(
        title="Update a plan",
        annotations=ToolAnnotations(
            read_only_hint=False, destructive_hint=False, idempotent_hint=True, open_world_hint=False
        ),
    )
    @tool_errors
    def update_plan(
        plan_id: PlanId,
        status: Annotated[
            PlanStatus | None,
            Field(
                description="draft → approved → executing → completed; any but archived → archived; "
                "approved → draft to revise"
            ),
        ] = None,
        title: Annotated[str | None, Field(description="new title (drafts only)", max_length=200)] = None,
        goal: Annotated[str | None, Field(description="new goal (drafts only)")] = None,
        raw_markdown: Annotated[str | None, Field(description="new Markdown (drafts only)")] = None,
        link_sweep_ids: Annotated[
            list[str] | None, Field(description="sweeps that carry out this plan")
        ] = None,
        link_run_ids: Annotated[list[str] | None, Field(description="runs that carry out this plan")] = None,
    ) -> PlanDetail:
        """Move a plan through its statuses, edit a draft, or link the sweeps and runs that execute it."""
        return app.services().plans.update(
            plan_id,
            status=status,
            title=title,
            goal=goal,
            raw_markdown=raw_markdown,
            link_sweep_ids=link_sweep_ids,
            link_run_ids=link_run_ids,
        )
