"""wait_for_events: block (bounded) until runs end or alerts fire, with progress notifications."""

from typing import Annotated, Literal

from mcp.server.mcpserver import Context, MCPServer
from mcp_types import ToolAnnotations
from pydantic import Field

from mcp_server.app import App, tool_errors
from mcp_server.core import events as feed
from mcp_server.core.workflow_views import EventBatch


def register(mcp: MCPServer, app: App) -> None:
    @mcp.tool(
        title="Wait for run endings and alerts",
        annotations=ToolAnnotations(
            read_only_hint=True, destructive_hint=False, idempotent_hint=True, open_world_hint=False
        ),
    )
    @tool_errors
    async def wait_for_events(
        ctx: Context,
        cursor: Annotated[
            int | None,
            Field(
                description="the cursor the previous call returned; 0 for every event ever recorded; "
                "leave out to wait for events from now on (with run_ids: also those of these runs "
                "already recorded)"
            ),
        ] = None,
        timeout_s: Annotated[
            float,
            Field(
                ge=feed.MIN_TIMEOUT_S,
                le=feed.MAX_TIMEOUT_S,
                description="longest wait in seconds, 1 to 240 (clients drop calls near 4 min); to wait "
                "longer, call again with the returned cursor",
            ),
        ] = feed.DEFAULT_TIMEOUT_S,
        run_ids: Annotated[list[str] | None, Field(description="only events of these runs")] = None,
        kinds: Annotated[
            list[Literal["run_ended", "run_status", "alert"]] | None,
            Field(
                description="run_ended (finished/failed/stopped/lost), run_status (every status "
                "change), alert. Default: run_ended and alert"
            ),
        ] = None,
    ) -> EventBatch:
        """Wait until a run ends or an alert fires, then return those events and a cursor.

        Returns at once if matching events exist after the cursor, else as soon as one
        arrives, else empty with timed_out=true after timeout_s. Events come from the shared
        store, so changes made by sidecars and other sessions count; passing the returned
        cursor to the next call neither misses nor repeats an event. Without a cursor the
        wait starts now, but with run_ids it also returns those runs' events already
        recorded, so a run that ended before this first call is not missed. Waiting costs no
        tokens: prefer it over polling get_run.
        """

        async def progress(done: float, total: float, message: str) -> None:
            await ctx.report_progress(done, total, message)

        return await feed.wait_for_events(
            feed.EventFeed(app.db_path),
            cursor=cursor,
            timeout_s=timeout_s,
            kinds=list(kinds) if kinds else None,
            run_ids=run_ids,
            settle=app.settle,
            progress=progress,
        )
