"""wait_for_events: block (bounded) until runs end or alerts fire, with progress notifications."""

from typing import Annotated, Literal

from mcp.server.mcpserver import Context, MCPServer
from pydantic import Field

from mcp_server.app import App
from mcp_server.core.monitoring import events as feed
from mcp_server.core.workflow.workflow_views import EventBatch
from mcp_server.tools.runs import READ_ONLY
from mcp_server.tools.surface import answer, fitting


def register(mcp: MCPServer, app: App) -> None:
    @mcp.tool(annotations=READ_ONLY)
    @answer
    async def wait_for_events(
        ctx: Context,
        cursor: Annotated[
            int | None, Field(description="the last call's cursor; 0: all; omit: from now")
        ] = None,
        timeout_s: Annotated[
            float, Field(ge=feed.MIN_TIMEOUT_S, le=feed.MAX_TIMEOUT_S)
        ] = feed.DEFAULT_TIMEOUT_S,
        run_ids: list[str] | None = None,
        kinds: Annotated[
            list[Literal["run_ended", "run_status", "alert"]] | None,
            Field(description="default: run_ended, alert"),
        ] = None,
    ) -> EventBatch:
        """Block until runs end or alerts fire; answers them and a cursor for the next call (none
        missed or repeated)."""

        async def progress(done: float, total: float, message: str) -> None:
            await ctx.report_progress(done, total, message)

        batch = await feed.wait_for_events(
            feed.EventFeed(app.db_path),
            cursor=cursor,
            timeout_s=timeout_s,
            kinds=list(kinds) if kinds else None,
            run_ids=run_ids,
            settle=app.settle,
            progress=progress,
        )
        if (n := fitting(batch.events)) < len(batch.events):
            batch.events, batch.cursor, batch.more = batch.events[:n], batch.events[n - 1].id, True
        return batch
