"""Every failure reaches the agent as a message it can act on, a bug included."""

from __future__ import annotations

from pathlib import Path

import pytest
from mcp import Client

from mcp_server.app import UNEXPECTED
from mcp_server.core.execution.runs import RunService
from mcp_server.server import create_server

pytestmark = pytest.mark.anyio


async def test_a_bug_in_a_tool_names_itself_instead_of_the_sdks_bare_error(
    state_dir: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    def broken(self: RunService, *args: object, **kwargs: object) -> None:
        raise KeyError("gpus_per_node")

    monkeypatch.setattr(RunService, "get", broken)
    async with Client(create_server(state_dir)) as client:
        result = await client.call_tool("get_run", {"run_id": "run-20260101-000000-abcdef12"})
    text = result.content[0].text  # type: ignore[union-attr]
    assert result.is_error
    assert UNEXPECTED in text and "in get_run: KeyError: 'gpus_per_node'" in text
    assert "doctor" in text  # what to do next
    assert any(r.exc_info and r.exc_info[0] is KeyError for r in caplog.records), "the traceback is logged"


async def test_a_core_error_keeps_its_own_message(state_dir: Path) -> None:
    async with Client(create_server(state_dir)) as client:
        result = await client.call_tool("get_run", {"run_id": "run-20260101-000000-abcdef12"})
    text = result.content[0].text  # type: ignore[union-attr]
    assert result.is_error and UNEXPECTED not in text and "list_runs" in text
