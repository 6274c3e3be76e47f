"""Helpers to talk to a real ``research-mcp serve`` over stdio with the SDK's Client."""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Any

from mcp import Client, StdioServerParameters

from tests.procs import pids_with

MODES = ["auto", "legacy"]

# The stdio client starts the server with a minimal environment; these knobs of the test
# process (see conftest.py) must reach it so it behaves like the in-process services.
PASSED_ENV = (
    "RESEARCH_MCP_CLUSTER_TYPE",
    "RESEARCH_MCP_CPU_RUN_LIMIT",
    "RESEARCH_MCP_QUEUE_POLL_S",
    "RESEARCH_MCP_FAKE_NVML",
    "RESEARCH_MCP_LAUNCH_GRACE_S",
    "RESEARCH_MCP_PROJECT_DIR",
)


def stdio_server(state_dir: Path, **env: str) -> StdioServerParameters:
    """``env`` adds variables; an empty string removes a passed-through one (e.g. the type pin)."""
    merged = {k: os.environ[k] for k in PASSED_ENV if os.environ.get(k)}
    merged.update({"RESEARCH_MCP_STOP_GRACE_S": "1", "PYTHONPATH": os.environ.get("PYTHONPATH", ""), **env})
    return StdioServerParameters(
        command=sys.executable,
        args=["-m", "mcp_server", "serve", "--state-dir", str(state_dir)],
        env={k: v for k, v in merged.items() if v != "" or k == "PYTHONPATH"},
    )


def client(state_dir: Path, mode: str, **env: str) -> Client:
    return Client(stdio_server(state_dir, **env), mode=mode, cache=None)  # type: ignore[arg-type]


async def call(c: Client, tool: str, **args: Any) -> dict[str, Any]:
    """Call a tool that must succeed; return its structured result."""
    result = await c.call_tool(tool, args)
    assert not result.is_error, result.content
    assert result.structured_content is not None
    return result.structured_content


async def call_error(c: Client, tool: str, **args: Any) -> str:
    """Call a tool that must fail with a ToolError; return the error text."""
    result = await c.call_tool(tool, args)
    assert result.is_error, result.structured_content
    return result.content[0].text  # type: ignore[union-attr]


def server_pids(state_dir: Path) -> list[int]:
    """Pids of ``research-mcp serve`` processes for this state dir."""
    return pids_with("serve", str(state_dir))
