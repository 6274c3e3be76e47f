"""Memory tools: thin wrappers over ``MemoryService``."""

from typing import Annotated

from mcp.server.mcpserver import MCPServer
from pydantic import Field

from mcp_server.app import App
from mcp_server.core.workflow.workflow_views import MemoryList, MemoryRow
from mcp_server.tools import MAX_INT
from mcp_server.tools.runs import CREATES, DEFAULT_ROWS, EDITS, READ_ONLY
from mcp_server.tools.surface import answer, fitting


def register(mcp: MCPServer, app: App) -> None:
    @mcp.tool(annotations=CREATES)
    @answer
    def add_memory(
        title: Annotated[str, Field(max_length=200)],
        content: Annotated[str, Field(description="the rule and the runs showing it")],
        tags: list[str] | None = None,
        source: Annotated[str, Field(description="user, agent, a run or sweep id", max_length=200)] = "agent",
    ) -> MemoryRow:
        """Remember a rule learned from experiments (shown in experiment://context)."""
        return app.services().memory.add(title=title, content=content, tags=tags, source=source)

    @mcp.tool(annotations=READ_ONLY)
    @answer
    def list_memories(
        active_only: bool = False,
        tag: str | None = None,
        limit: Annotated[int, Field(ge=1, le=500)] = DEFAULT_ROWS,
        offset: Annotated[int, Field(ge=0, le=MAX_INT)] = 0,
    ) -> MemoryList:
        """Remembered rules, newest first."""
        page = app.services().memory.list(active_only=active_only, tag=tag, limit=limit, offset=offset)
        if (n := fitting(page.memories, limit=limit, default=DEFAULT_ROWS)) < len(page.memories):
            page.memories, page.next_offset = page.memories[:n], offset + n
        return page

    @mcp.tool(annotations=EDITS)
    @answer
    def update_memory(
        memory_id: str,
        title: Annotated[str | None, Field(max_length=200)] = None,
        content: str | None = None,
        tags: list[str] | None = None,
        active: bool | None = None,
    ) -> MemoryRow:
        """Edit a rule, or switch it off (kept, but out of the context) or on."""
        return app.services().memory.update(memory_id, title=title, content=content, tags=tags, active=active)
