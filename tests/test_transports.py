"""HTTP and SSE transports: real uvicorn servers on 127.0.0.1, bearer token required."""

from __future__ import annotations

import os
import socket
import sqlite3
import stat
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import anyio
import httpx2
import pytest
from mcp import Client
from mcp.client.sse import sse_client
from mcp.client.streamable_http import streamable_http_client

pytestmark = pytest.mark.anyio

TOKEN = "test-token-0123456789abcdef"
INIT = {
    "jsonrpc": "2.0",
    "id": 1,
    "method": "initialize",
    "params": {
        "protocolVersion": "2025-11-25",
        "capabilities": {},
        "clientInfo": {"name": "t", "version": "0"},
    },
}
HEADERS = {"content-type": "application/json", "accept": "application/json, text/event-stream"}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_server(state_dir: Path, transport: str, port: int, token: str | None = TOKEN, *extra: str):  # type: ignore[no-untyped-def]
    env = {k: v for k, v in os.environ.items() if k != "RESEARCH_MCP_TOKEN"}
    if token is not None:
        env["RESEARCH_MCP_TOKEN"] = token
    env["RESEARCH_MCP_STOP_GRACE_S"] = "1"
    proc = subprocess.Popen(
        [sys.executable, "-m", "mcp_server", "serve", "--transport", transport, "--port", str(port),
         "--state-dir", str(state_dir), *extra],
        env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise AssertionError(f"server exited: {proc.stderr.read() if proc.stderr else ''}")
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            return proc
        except OSError:
            time.sleep(0.05)
    proc.kill()
    raise AssertionError("server did not start listening")


@pytest.fixture(params=["http", "sse"])
def server(request: pytest.FixtureRequest, state_dir: Path) -> Iterator[tuple[str, str]]:
    port = free_port()
    proc = start_server(state_dir, request.param, port)
    path = "/mcp" if request.param == "http" else "/sse"
    yield request.param, f"http://127.0.0.1:{port}{path}"
    proc.terminate()
    proc.wait(timeout=10)


async def test_requests_without_the_right_token_are_refused(server: tuple[str, str]) -> None:
    transport, url = server
    method = "POST" if transport == "http" else "GET"
    body = INIT if transport == "http" else None
    async with httpx2.AsyncClient() as http:
        missing = await http.request(method, url, json=body, headers=HEADERS)
        wrong = await http.request(
            method, url, json=body, headers={**HEADERS, "Authorization": "Bearer nope"}
        )
        bad_host = await http.request(
            method,
            url,
            json=body,
            headers={**HEADERS, "Authorization": f"Bearer {TOKEN}", "Host": "evil.example"},
        )
    assert missing.status_code == 401 and "bearer" in missing.headers.get("www-authenticate", "").lower()
    assert wrong.status_code == 401
    assert bad_host.status_code == 421


def _transport(kind: str, url: str, token: str):  # type: ignore[no-untyped-def]
    headers = {"Authorization": f"Bearer {token}"}
    if kind == "http":
        return streamable_http_client(url, http_client=httpx2.AsyncClient(headers=headers, timeout=30))
    return sse_client(url, headers=headers)


async def test_with_the_token_a_run_goes_to_finished(server: tuple[str, str], workdir: Path) -> None:
    kind, url = server
    async with Client(_transport(kind, url, TOKEN), mode="legacy", cache=None) as c:
        res = await c.call_tool(
            "create_run", {"name": "net", "command": "echo over-the-wire", "workdir": str(workdir)}
        )
        assert not res.is_error, res.content
        run_id = res.structured_content["id"]  # type: ignore[index]
        with anyio.fail_after(20):
            while True:
                got = (await c.call_tool("get_run", {"run_id": run_id})).structured_content
                if got and got["status"] == "finished":
                    break
                await anyio.sleep(0.1)
        logs = (await c.call_tool("get_logs", {"run_id": run_id})).structured_content
    assert logs and logs["text"] == "over-the-wire\n"


async def test_two_agents_on_one_server_write_at_once_and_lose_nothing(
    server: tuple[str, str], workdir: Path, state_dir: Path
) -> None:
    """Two clients, 40 concurrent create_run calls each: no "database is locked", no lost write."""
    kind, url = server
    made: dict[str, list[str]] = {"a": [], "b": []}
    errors: list[str] = []

    async def agent(tag: str) -> None:
        async with Client(_transport(kind, url, TOKEN), mode="legacy", cache=None) as c:

            async def one(i: int) -> None:
                res = await c.call_tool(
                    "create_run",
                    {"name": f"{tag}-{i}", "command": "true", "workdir": str(workdir), "auto_start": False},
                )
                if res.is_error:
                    errors.append(res.content[0].text)  # type: ignore[union-attr]
                else:
                    made[tag].append(res.structured_content["id"])  # type: ignore[index]

            async with anyio.create_task_group() as tg:
                for i in range(40):
                    tg.start_soon(one, i)

    with anyio.fail_after(120):
        async with anyio.create_task_group() as tg:
            tg.start_soon(agent, "a")
            tg.start_soon(agent, "b")
    assert errors == []
    ids = made["a"] + made["b"]
    assert len(ids) == 80 and len(set(ids)) == 80
    con = sqlite3.connect(state_dir / "research.db")
    try:
        names = sorted(name for (name,) in con.execute("SELECT name FROM runs"))
    finally:
        con.close()
    assert names == sorted(f"{tag}-{i}" for tag in "ab" for i in range(40))


async def test_streamable_http_serves_the_modern_era_too(state_dir: Path) -> None:
    port = free_port()
    proc = start_server(state_dir, "http", port)
    try:
        async with Client(
            _transport("http", f"http://127.0.0.1:{port}/mcp", TOKEN), mode="auto", cache=None
        ) as c:
            names = {t.name for t in (await c.list_tools()).tools}
        assert "create_run" in names
    finally:
        proc.terminate()
        proc.wait(timeout=10)


async def test_oversized_bodies_are_refused(state_dir: Path) -> None:
    port = free_port()
    proc = start_server(state_dir, "http", port, TOKEN, "--max-body", "4096")
    try:
        async with httpx2.AsyncClient() as http:
            big = {**INIT, "params": {**INIT["params"], "padding": "x" * 10_000}}  # type: ignore[dict-item]
            res = await http.post(
                f"http://127.0.0.1:{port}/mcp",
                json=big,
                headers={**HEADERS, "Authorization": f"Bearer {TOKEN}"},
            )
        assert res.status_code == 413
    finally:
        proc.terminate()
        proc.wait(timeout=10)


def test_token_is_generated_once_kept_private_and_never_on_the_command_line(state_dir: Path) -> None:
    port = free_port()
    proc = start_server(state_dir, "http", port, None)
    try:
        token_file = state_dir / "token"
        token = token_file.read_text().strip()
        assert len(token) >= 32 and stat.S_IMODE(token_file.stat().st_mode) == 0o600
        cmdline = Path(f"/proc/{proc.pid}/cmdline").read_bytes().decode()
        assert token not in cmdline
    finally:
        proc.terminate()
        _, err = proc.communicate(timeout=10)
    assert err.count(token) == 2  # shown once: the token line and the Claude Code config
    assert '"type": "http"' in err and "{env:RESEARCH_MCP_TOKEN}" in err

    proc = start_server(state_dir, "http", free_port(), None)
    proc.terminate()
    _, err = proc.communicate(timeout=10)
    assert token not in err and str(state_dir / "token") in err


def test_a_remote_bind_needs_an_explicit_flag_and_allowed_hosts(state_dir: Path) -> None:
    base = [sys.executable, "-m", "mcp_server", "serve", "--transport", "http", "--state-dir", str(state_dir)]
    env = {**os.environ, "RESEARCH_MCP_TOKEN": TOKEN}
    refused = subprocess.run(
        [*base, "--host", "0.0.0.0"], capture_output=True, text=True, env=env, timeout=30
    )
    assert refused.returncode == 2 and "--allow-remote" in refused.stderr
    no_hosts = subprocess.run(
        [*base, "--host", "0.0.0.0", "--allow-remote"], capture_output=True, text=True, env=env, timeout=30
    )
    assert no_hosts.returncode == 2 and "--allowed-host" in no_hosts.stderr
    short = subprocess.run(
        [*base], capture_output=True, text=True, env={**env, "RESEARCH_MCP_TOKEN": "x"}, timeout=30
    )
    assert short.returncode == 2 and "shorter than" in short.stderr
