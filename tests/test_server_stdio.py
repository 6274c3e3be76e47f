"""The MCP server over stdio, in both protocol eras, with real tmux and SQLite."""

from __future__ import annotations

import contextlib
import os
import signal
import sqlite3
import time
from pathlib import Path

import anyio
import pytest

from tests.helpers import sidecar_pids
from tests.mcp_client import MODES, call, call_error, client, server_pids

pytestmark = pytest.mark.anyio

# The protocol each client mode must negotiate: "auto" must reach the 2026 era (Claude Code's),
# or the tests run "in both eras" would silently test the legacy one twice.
ERAS = {"auto": "2026-07-28", "legacy": "2025-11-25"}


def _statuses(state_dir: Path, run_ids: list[str]) -> set[str]:
    con = sqlite3.connect(state_dir / "research.db")
    try:
        marks = ",".join("?" * len(run_ids))
        return {r[0] for r in con.execute(f"SELECT status FROM runs WHERE id IN ({marks})", run_ids)}
    finally:
        con.close()


RUN_TOOLS = {"create_run", "start_run", "stop_run", "rerun", "list_runs", "get_run", "get_logs"}


async def wait_run(c, run_id: str, statuses: set[str], timeout: float = 20) -> dict:  # type: ignore[no-untyped-def]
    with anyio.fail_after(timeout):
        while True:
            run = await call(c, "get_run", run_id=run_id)
            if run["status"] in statuses:
                return run
            await anyio.sleep(0.1)


@pytest.mark.parametrize("mode", MODES)
async def test_tools_are_typed_and_annotated(state_dir: Path, mode: str) -> None:
    async with client(state_dir, mode) as c:
        assert c.protocol_version == ERAS[mode]
        tools = {t.name: t for t in (await c.list_tools()).tools}
    assert set(tools) >= RUN_TOOLS
    for name in RUN_TOOLS:
        tool = tools[name]
        assert tool.annotations is not None and tool.description
    assert tools["list_runs"].annotations.read_only_hint is True  # type: ignore[union-attr]
    # Hints at the protocol's default are left out: stop_run is destructive (the default).
    assert tools["stop_run"].annotations.destructive_hint in (None, True)  # type: ignore[union-attr]
    assert tools["create_run"].annotations.destructive_hint is False  # type: ignore[union-attr]


@pytest.mark.parametrize("mode", MODES)
async def test_run_lifecycle_over_stdio(state_dir: Path, workdir: Path, mode: str) -> None:
    async with client(state_dir, mode) as c:
        ok = await call(
            c, "create_run", name="ok", command="sleep 0.5; echo finished-ok", workdir=str(workdir)
        )
        assert ok["status"] in {"queued", "launching", "running"}
        running = await wait_run(c, ok["id"], {"running", "finished"})
        assert running["status"] in {"running", "finished"}
        done = await wait_run(c, ok["id"], {"finished"})
        assert done["exit_code"] == 0

        bad = await call(c, "create_run", name="three", command="exit 3", workdir=str(workdir))
        failed = await wait_run(c, bad["id"], {"failed"})
        assert failed["exit_code"] == 3

        long = await call(
            c, "create_run", name="long", command="echo up; sleep 300 & wait", workdir=str(workdir)
        )
        long = await wait_run(c, long["id"], {"running"})
        pgid = int((Path(long["run_dir"]) / "pgid").read_text())
        stopped = await call(c, "stop_run", run_id=long["id"])
        assert stopped["status"] == "stopped"
        with pytest.raises(ProcessLookupError):
            os.killpg(pgid, 0)

        logs = await call(c, "get_logs", run_id=ok["id"], lines=5)
        assert logs["text"] == "finished-ok\n"
        page = await call(c, "list_runs", status=["finished", "failed"])
        assert {r["id"] for r in page["runs"]} == {ok["id"], bad["id"]}


@pytest.mark.parametrize("mode", MODES)
async def test_bad_input_gets_a_tool_error_and_creates_nothing(
    state_dir: Path, workdir: Path, mode: str
) -> None:
    async with client(state_dir, mode) as c:
        assert "no run with id" in await call_error(c, "get_run", run_id="run-20000101-000000-00000000")
        assert "not a valid run id" in await call_error(c, "stop_run", run_id="../../etc/passwd")
        assert "does not exist" in await call_error(
            c, "create_run", name="x", command="true", workdir="/no/such/dir"
        )
        assert "command is empty" in await call_error(
            c, "create_run", name="x", command="  ", workdir=str(workdir)
        )
        assert "not allowed" in await call_error(
            c, "create_run", name="a/b", command="true", workdir=str(workdir)
        )
        assert "not allowed" in await call_error(
            c, "create_run", name="x;rm -rf /", command="true", workdir=str(workdir)
        )
        assert "not allowed" in await call_error(
            c, "create_run", name="$(id)", command="true", workdir=str(workdir)
        )
        page = await call(c, "list_runs")
    assert page["total"] == 0
    assert list((state_dir / "runs").iterdir()) == []


def _kill_sidecars(state_dir: Path) -> None:
    """SIGKILL every sidecar of the state dir until none is left (one may still be starting)."""
    quiet_since = time.monotonic()
    while time.monotonic() - quiet_since < 0.5:
        pids = sidecar_pids(state_dir)
        if pids:
            quiet_since = time.monotonic()
        for pid in pids:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        time.sleep(0.05)


@pytest.mark.parametrize("sidecars", ["survive", "killed"])
@pytest.mark.parametrize("mode", MODES)
async def test_runs_survive_kill_9_of_the_server(
    state_dir: Path, workdir: Path, mode: str, sidecars: str
) -> None:
    """Jobs outlive a kill -9 of the server; a new server reports each with its true exit code.

    With the sidecars killed too, nothing records the endings until the new server's
    start-up reconcile reads the exit-code files: that is what the "killed" case shows.
    """
    gate = workdir / "gate"
    codes = {"zero": 0, "three": 3, "five": 5}
    ids: dict[str, str] = {}
    stack = contextlib.AsyncExitStack()
    c = await stack.enter_async_context(client(state_dir, mode))
    assert c.protocol_version == ERAS[mode]
    for name, code in codes.items():
        run = await call(
            c,
            "create_run",
            name=name,
            command=f"while [ ! -f gate ]; do sleep 0.05; done; exit {code}",
            workdir=str(workdir),
        )
        ids[name] = run["id"]
    for run_id in ids.values():
        await wait_run(c, run_id, {"running"})
    with anyio.fail_after(15):  # each run has its sidecar
        while len(sidecar_pids(state_dir)) < len(ids):
            await anyio.sleep(0.05)
    pids = server_pids(state_dir)
    assert len(pids) == 1
    os.kill(pids[0], signal.SIGKILL)
    with contextlib.suppress(Exception):
        await stack.aclose()
    if sidecars == "killed":
        await anyio.to_thread.run_sync(_kill_sidecars, state_dir)
    pgids = [int((state_dir / "runs" / rid / "pgid").read_text()) for rid in ids.values()]
    for pgid in pgids:
        os.killpg(pgid, 0)  # every job is still alive after the server died
    gate.touch()
    with anyio.fail_after(15):
        while not all((state_dir / "runs" / rid / "exit_code").exists() for rid in ids.values()):
            await anyio.sleep(0.05)
    if sidecars == "killed":
        # With no server and no sidecar, the jobs ended but nobody has recorded it.
        await anyio.sleep(1.0)
        assert await anyio.to_thread.run_sync(_statuses, state_dir, list(ids.values())) == {"running"}
    async with client(state_dir, mode) as c2:
        assert c2.protocol_version == ERAS[mode]
        # The new server settles them at start-up, before anyone asks about a run.
        with anyio.fail_after(15):
            while await anyio.to_thread.run_sync(_statuses, state_dir, list(ids.values())) & {
                "running",
                "launching",
            }:
                await anyio.sleep(0.1)
        for name, run_id in ids.items():
            run = await call(c2, "get_run", run_id=run_id)
            assert run["exit_code"] == codes[name]
            assert run["status"] == ("finished" if codes[name] == 0 else "failed")
