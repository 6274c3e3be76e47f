"""``create_server()``: the MCP surface, wired over the core services.

This module, ``mcp_server.tools``, ``app``, ``transports`` and ``stdio_transport`` are the
only places that import the MCP SDK.
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING

from mcp.server.mcpserver import MCPServer

from mcp_server import __version__
from mcp_server.app import App
from mcp_server.tools import runs as run_tools

if TYPE_CHECKING:
    from mcp.server.auth.provider import TokenVerifier
    from mcp.server.auth.settings import AuthSettings

INSTRUCTIONS = (
    "research-mcp runs and tracks ML experiments. Launch every experiment with create_run "
    "(never in your own shell), watch it with get_run/list_runs and get_logs, and stop it with stop_run."
)


def create_server(
    state_dir: str | os.PathLike[str] | None = None,
    *,
    token_verifier: TokenVerifier | None = None,
    auth: AuthSettings | None = None,
) -> MCPServer:
    """The server for one state dir; network transports pass a token verifier and auth settings."""
    app = App(state_dir)
    mcp: MCPServer = MCPServer(
        "research-mcp",
        version=__version__,
        instructions=INSTRUCTIONS,
        lifespan=app.lifespan,
        log_level="WARNING",
        token_verifier=token_verifier,
        auth=auth,
    )
    run_tools.register(mcp, app)
    return mcp
