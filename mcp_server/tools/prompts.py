"""Prompts: agent_mode, plan_mode and wild_mode, rendered with live data and the tool catalog."""

from __future__ import annotations

from typing import Annotated

import anyio.to_thread
from mcp.server.mcpserver import MCPServer
from mcp.shared.exceptions import MCPError
from mcp_types import INVALID_PARAMS
from pydantic import Field

from mcp_server.app import App
from mcp_server.core.errors import ResearchError


def register(mcp: MCPServer, app: App) -> None:
    async def live():  # type: ignore[no-untyped-def]
        from prompts.build import Live
        from resources.context import cluster_of, experiment_context, memory_rules

        tools = tuple((t.name, t.description or "") for t in await mcp.list_tools())
        can_detect = any(name == "detect_cluster" for name, _ in tools)

        def gather() -> Live:
            services = app.services()
            cluster = cluster_of(services, can_detect=can_detect)
            plans = services.plans.list(limit=10).plans
            return Live(
                tools=tools,
                cluster_type=cluster.type,
                cluster_state=cluster.markdown,
                memory_rules=memory_rules(services),
                experiment_context=experiment_context(services, can_detect=can_detect, include_cluster=False),
                recent_plans="\n".join(f"- {p.title} ({p.id}): {p.status}" for p in plans) or "none",
                cpu_run_limit=services.settings.cpu_run_limit,
            )

        return await anyio.to_thread.run_sync(gather)

    def invalid(err: ResearchError) -> MCPError:
        return MCPError(INVALID_PARAMS, str(err))

    @mcp.prompt(
        name="agent_mode",
        title="Agent mode",
        description="Operate experiments through research-mcp: cluster, rules, tools and current state.",
    )
    async def agent_mode() -> str:
        from prompts import build

        return build.agent_mode(await live())

    @mcp.prompt(
        name="plan_mode",
        title="Plan mode",
        description="Write an experiment plan in the reviewed format and save it with save_plan.",
    )
    async def plan_mode(
        goal: Annotated[str, Field(description="what the experiments should find out")],
    ) -> str:
        from prompts import build

        try:
            return build.plan_mode(await live(), goal)
        except ResearchError as err:
            raise invalid(err) from err

    @mcp.prompt(
        name="wild_mode",
        title="Wild mode",
        description="Work autonomously: explore, sweep, wait for events, handle alerts, analyze, decide.",
    )
    async def wild_mode(
        goal: Annotated[str, Field(description="what to achieve")],
        max_iterations: Annotated[int, Field(description="iterations before stopping to report (1-100)")] = 5,
    ) -> str:
        from prompts import build

        try:
            return build.wild_mode(await live(), goal, max_iterations)
        except ResearchError as err:
            raise invalid(err) from err
