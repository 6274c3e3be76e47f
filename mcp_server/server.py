"""``create_server()``: the MCP surface, wired over the core services.

This module, ``notify``, ``app``, ``transports``, ``stdio_transport`` and ``tools`` are the
only places that import the MCP SDK.
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING

from mcp.server.mcpserver import MCPServer

from mcp_server import __version__
from mcp_server.app import App
from mcp_server.notify import Notifier
from mcp_server.tools import cluster as cluster_tools
from mcp_server.tools import events as event_tools
from mcp_server.tools import memory as memory_tools
from mcp_server.tools import monitoring as monitoring_tools
from mcp_server.tools import plans as plan_tools
from mcp_server.tools import prompts as prompt_wiring
from mcp_server.tools import reports as report_tools
from mcp_server.tools import resources as resource_wiring
from mcp_server.tools import runs as run_tools
from mcp_server.tools import sweeps as sweep_tools
from mcp_server.tools.apps import chart_apps
from mcp_server.tools.surface import LeanServer

if TYPE_CHECKING:
    from mcp.server.auth.provider import TokenVerifier
    from mcp.server.auth.settings import AuthSettings

# Sent once at initialize: the workflow, so each tool's description only says what it does.
INSTRUCTIONS = (
    "research-mcp runs and tracks ML experiments. Call detect_cluster once to learn whether runs go to "
    "local GPUs, Slurm or CPU only. Launch every experiment with create_run or create_sweep (never in "
    "your own shell); a job logs metrics by appending JSON lines to $RESEARCH_METRICS_FILE. Smoke-test "
    "one run before a sweep. Wait with wait_for_events instead of polling, read results with get_run, "
    "get_sweep, get_metrics and get_logs, act on list_alerts with resolve_alert, and stop with stop_run "
    "or stop_sweep. The agent_mode prompt explains the workflow; experiment://context summarizes the "
    "current state."
)


def create_server(
    state_dir: str | os.PathLike[str] | None = None,
    *,
    token_verifier: TokenVerifier | None = None,
    auth: AuthSettings | None = None,
) -> MCPServer:
    """The server for one state dir; network transports pass a token verifier and auth settings."""
    app = App(state_dir)
    notifier = Notifier()
    app.notifier = notifier
    mcp: MCPServer = LeanServer(
        "research-mcp",
        version=__version__,
        instructions=INSTRUCTIONS,
        lifespan=app.lifespan,
        log_level="WARNING",
        token_verifier=token_verifier,
        auth=auth,
        subscriptions=notifier.bus,
        extensions=[chart_apps()],
    )
    notifier.install(mcp)
    run_tools.register(mcp, app)
    cluster_tools.register(mcp, app)
    sweep_tools.register(mcp, app)
    plan_tools.register(mcp, app)
    memory_tools.register(mcp, app)
    event_tools.register(mcp, app)
    resource_wiring.register(mcp, app)
    prompt_wiring.register(mcp, app)
    monitoring_tools.register(mcp, app)
    report_tools.register(mcp, app)
    return mcp
