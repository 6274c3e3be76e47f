"""The adversary's smaller findings: token races and leaks, a remote URL that works, hostile input."""

from __future__ import annotations

import multiprocessing
import os
import subprocess
from pathlib import Path
from typing import Any

import httpx2
import pytest
from mcp import Client

from mcp_server.core.errors import InvalidInput
from mcp_server.core.paths import StateDir
from mcp_server.core.services import Services
from mcp_server.server import create_server
from mcp_server.transports import load_or_create_token, public_base, security_settings
from tests.helpers import wait_for
from tests.test_transports import HEADERS, INIT, TOKEN, free_port, start_server


def _token_in(root: str, barrier: Any, out: Any) -> None:
    os.environ.pop("RESEARCH_MCP_TOKEN", None)
    barrier.wait()
    try:
        out.put(load_or_create_token(Path(root)).value)
    except Exception as err:  # what the test reports
        out.put(f"error: {err!r}")


def test_servers_starting_together_agree_on_one_token(tmp_path: Path) -> None:
    ctx = multiprocessing.get_context("fork")
    for attempt in range(5):
        root = tmp_path / f"s{attempt}"
        root.mkdir()
        barrier, out = ctx.Barrier(12), ctx.Queue()
        procs = [ctx.Process(target=_token_in, args=(str(root), barrier, out)) for _ in range(12)]
        for p in procs:
            p.start()
        tokens = [out.get(timeout=30) for _ in procs]
        for p in procs:
            p.join(10)
        assert len(set(tokens)) == 1 and not tokens[0].startswith("error"), tokens
        assert (root / "token").read_text().strip() == tokens[0]
        assert [p.name for p in root.iterdir()] == ["token"]  # no temporary file left


def test_the_token_reaches_no_tmux_window(
    state_dir: Path, workdir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    secret = "tok-" + "s3cr3t" * 4
    monkeypatch.setenv("RESEARCH_MCP_TOKEN", secret)
    services = Services(state_dir)
    try:
        run = services.runs.create(name="env", command="env > env.txt", workdir=str(workdir))
        wait_for(lambda: services.runs.get(run.id).status == "finished", 30, what="the run")
        assert secret not in (workdir / "env.txt").read_text()
        socket = StateDir(state_dir).tmux_socket
        panes = subprocess.run(
            ["tmux", "-L", socket, "list-panes", "-a", "-F", "#{pane_pid}"], capture_output=True, text=True
        ).stdout.split()
        assert panes  # the home window at least
        for pid in panes:
            assert secret.encode() not in Path(f"/proc/{pid}/environ").read_bytes(), "a pane holds the token"
        shown = subprocess.run(
            ["tmux", "-L", socket, "show-environment", "-g"], capture_output=True, text=True
        )
        assert secret not in shown.stdout
    finally:
        services.close()


@pytest.mark.anyio
async def test_the_url_printed_for_a_remote_bind_is_one_that_answers(state_dir: Path) -> None:
    port = free_port()
    base = public_base("0.0.0.0", port, ["localhost"])
    assert base == f"http://localhost:{port}"
    assert security_settings("0.0.0.0", port, True, ["localhost"]).allowed_hosts == [f"localhost:{port}"]
    remote = ("--host", "0.0.0.0", "--allow-remote", "--allowed-host", "localhost")
    proc = start_server(state_dir, "http", port, TOKEN, *remote)
    try:
        err = proc.stderr
        async with httpx2.AsyncClient() as http:
            auth = {**HEADERS, "Authorization": f"Bearer {TOKEN}"}
            answer = await http.post(f"{base}/mcp", json=INIT, headers=auth)
        assert answer.status_code == 200, answer.text
    finally:
        proc.terminate()
        proc.wait(10)
    assert err is not None and f"{base}/mcp" in err.read()


def test_a_workdir_name_too_long_is_a_clear_error(services: Services) -> None:
    with pytest.raises(InvalidInput, match="cannot be used: File name too long"):
        services.runs.create(name="x", command="true", workdir="/" + "a" * 300)


@pytest.mark.anyio
@pytest.mark.parametrize("value", ["1", True, 1.0])
async def test_gpus_must_be_a_whole_number_not_a_string_or_boolean(state_dir: Path, value: object) -> None:
    async with Client(create_server(state_dir), mode="legacy") as c:
        result = await c.call_tool("create_run", {"name": "x", "command": "true", "gpus": value})
        sweep = await c.call_tool(
            "create_sweep", {"name": "s", "goal": "g", "gpus_per_run": value, "auto_start": False}
        )
    assert result.is_error and "gpus" in result.content[0].text  # type: ignore[union-attr]
    assert sweep.is_error and "gpus_per_run" in sweep.content[0].text  # type: ignore[union-attr]
