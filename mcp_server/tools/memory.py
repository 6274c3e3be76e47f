"""Memory tools: thin wrappers over ``MemoryService``."""

from typing import Annotated

from mcp.server.mcpserver import MCPServer
from mcp_types import ToolAnnotations
from pydantic import Field

from mcp_server.app import App, tool_errors
from mcp_server.core.workflow_views import MemoryList, MemoryRow


def register(mcp: MCPServer, app: App) -> None:
    @mcp.tool(
        title="Remember a rule",
        annotations=ToolAnnotations(
            read_only_hint=False, destructive_hint=False, idempotent_hint=False, open_world_hint=False
        ),
    )
    @tool_errors
    def add_memory(
        title: Annotated[str, Field(description="the rule in a few words", max_length=200)],
        content: Annotated[
            str, Field(description="the rule and the evidence for it, e.g. which runs showed it")
        ],
        tags: Annotated[
            list[str] | None, Field(description="lowercase tags such as 'lr', 'oom', 'model:resnet50'")
        ] = None,
        source: Annotated[
            str, Field(description="where it came from: 'user', 'agent', a run or sweep id", max_length=200)
        ] = "agent",
    ) -> MemoryRow:
        """Save a heuristic rule learned from experiments; active rules appear in experiment://context."""
        return app.services().memory.add(title=title, content=content, tags=tags, source=source)

    @mcp.tool(
        title="List remembered rules",
        annotations=ToolAnnotations(
            read_only_hint=True, destructive_hint=False, idempotent_hint=True, open_world_hint=False
        ),
    )
    @tool_errors
    def list_memories(
        active_only: Annotated[bool, Field(description="only rules that are switched on")] = False,
        tag: Annotated[str | None, Field(description="only rules with this tag")] = None,
        limit: Annotated[int, Field(description="at most this many, newest first", ge=1, le=500)] = 100,
    ) -> MemoryList:
        """Remembered rules, newest first."""
        return app.services().memory.list(active_only=active_only, tag=tag, limit=limit)

    @mcp.tool(
        title="Update a remembered rule",
        annotations=ToolAnnotations(
            read_only_hint=False, destructive_hint=False, idempotent_hint=True, open_world_hint=False
        ),
    )
    @tool_errors
    def update_memory(
        memory_id: Annotated[
            str, Field(description="a memory id as returned by add_memory or list_memories")
        ],
        title: Annotated[str | None, Field(description="new title", max_length=200)] = None,
        content: Annotated[str | None, Field(description="new content")] = None,
        tags: Annotated[list[str] | None, Field(description="replacement tags")] = None,
        active: Annotated[bool | None, Field(description="switch the rule on (true) or off (false)")] = None,
    ) -> MemoryRow:
        """Edit a rule or switch it on or off (off: kept, but no longer shown in the experiment context)."""
        return app.services().memory.update(memory_id, title=title, content=content, tags=tags, active=active)
