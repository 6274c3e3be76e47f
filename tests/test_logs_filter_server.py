"""A pathological get_logs filter gets a clear error; the server keeps answering meanwhile.

With Python's ``re`` the filter ``(a+)+$`` over a 41-character line never finishes and
holds the GIL, so no other call (and no new client) was answered: stdio and HTTP alike.
"""

from __future__ import annotations

import time
from pathlib import Path

import anyio
import httpx2
import pytest
from mcp import Client
from mcp.client.streamable_http import streamable_http_client

from tests.mcp_client import call, client
from tests.test_transports import TOKEN, free_port, start_server

# A filter's time bound is measured alone (see conftest's serial marker).
pytestmark = [pytest.mark.anyio, pytest.mark.serial]

# Exponential for both engines; ``(a+)+$`` is exponential for ``re`` only (``regex`` sees through it).
EVIL = "(a|aa)+$"
LINE = "a" * 40 + "!"


async def _make_run(c: Client, workdir: Path) -> str:
    run = await call(c, "create_run", name="aaa", command=f"echo '{LINE}'", workdir=str(workdir))
    with anyio.fail_after(30):
        while (await call(c, "get_run", run_id=run["id"]))["status"] != "finished":
            await anyio.sleep(0.1)
    return str(run["id"])


async def _evil_and_another_call(c: Client, other: Client, run_id: str) -> tuple[str, float]:
    """Start the evil filter, then time another call; return the filter's error and that time."""
    answer: dict[str, object] = {}

    async def evil() -> None:
        answer["result"] = await c.call_tool("get_logs", {"run_id": run_id, "filter": EVIL})

    async with anyio.create_task_group() as tg:
        tg.start_soon(evil)
        await anyio.sleep(0.3)  # the filter is running now
        began = time.monotonic()
        with anyio.fail_after(15):
            await call(other, "list_runs")
        took = time.monotonic() - began
        with anyio.fail_after(30):
            while "result" not in answer:
                await anyio.sleep(0.05)
    result = answer["result"]
    assert result.is_error  # type: ignore[attr-defined]
    return result.content[0].text, took  # type: ignore[attr-defined]


async def test_over_stdio_the_filter_is_refused_and_other_calls_are_answered(
    state_dir: Path, workdir: Path
) -> None:
    async with client(state_dir, "legacy") as c:
        run_id = await _make_run(c, workdir)
        error, took = await _evil_and_another_call(c, c, run_id)
        with anyio.fail_after(10):
            nested = await call(c, "get_logs", run_id=run_id, filter="(a+)+$")
        ok = await call(c, "get_logs", run_id=run_id, filter="a+!")
    assert "did not finish within" in error and EVIL in error and "Simplify" in error
    assert took < 5
    assert nested["lines"] == 0 and ok["text"] == LINE + "\n"


async def test_over_http_a_new_client_connects_while_the_filter_runs(state_dir: Path, workdir: Path) -> None:
    port = free_port()
    proc = start_server(state_dir, "http", port)
    url = f"http://127.0.0.1:{port}/mcp"

    def connect() -> Client:
        http = httpx2.AsyncClient(headers={"Authorization": f"Bearer {TOKEN}"}, timeout=60)
        return Client(streamable_http_client(url, http_client=http), mode="legacy", cache=None)

    try:
        async with connect() as first:
            run_id = await _make_run(first, workdir)

            async def second_client_lists() -> float:
                began = time.monotonic()
                async with connect() as second:
                    await call(second, "list_runs")
                return time.monotonic() - began

            answer: dict[str, object] = {}

            async def evil() -> None:
                answer["result"] = await first.call_tool("get_logs", {"run_id": run_id, "filter": EVIL})

            async with anyio.create_task_group() as tg:
                tg.start_soon(evil)
                await anyio.sleep(0.3)
                with anyio.fail_after(15):
                    took = await second_client_lists()
                with anyio.fail_after(30):
                    while "result" not in answer:
                        await anyio.sleep(0.05)
        assert took < 5
        assert answer["result"].is_error  # type: ignore[attr-defined]
        assert "did not finish within" in answer["result"].content[0].text  # type: ignore[attr-defined]
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except Exception:
            proc.kill()
