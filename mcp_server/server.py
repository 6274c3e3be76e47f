"""``create_server()``: the MCP surface, wired over the core services.

This module and ``mcp_server.tools`` are the only places that import the MCP SDK.
"""

from __future__ import annotations

import os

from mcp.server.mcpserver import MCPServer

from mcp_server import __version__
from mcp_server.app import App
from mcp_server.tools import monitoring as monitoring_tools
from mcp_server.tools import runs as run_tools

INSTRUCTIONS = (
    "research-mcp runs and tracks ML experiments. Launch every experiment with create_run "
    "(never in your own shell), watch it with get_run/list_runs, get_logs and get_metrics, react to "
    "list_alerts with resolve_alert, and stop it with stop_run."
)


def create_server(state_dir: str | os.PathLike[str] | None = None) -> MCPServer:
    app = App(state_dir)
    mcp: MCPServer = MCPServer(
        "research-mcp",
        version=__version__,
        instructions=INSTRUCTIONS,
        lifespan=app.lifespan,
        log_level="WARNING",
    )
    run_tools.register(mcp, app)
    monitoring_tools.register(mcp, app)
    return mcp
