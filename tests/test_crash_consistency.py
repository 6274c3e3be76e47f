"""kill -9 of a server in the middle of create_sweep/create_run: nothing, or runs that will run.

A killed create used to leave configurations 'lost' that never ran (still counting toward
max_runs), 'ready' runs nobody would start, and run dirs (with env.sh) without a row.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from sqlmodel import select

from mcp_server.core.services import Services
from mcp_server.core.storage.models import Run, Sweep
from tests.helpers import wait_for

pytestmark = pytest.mark.serial  # kill -9 at set moments: timed alone

ENDED = {"finished", "failed", "stopped", "lost"}


def _serve(state_dir: Path) -> subprocess.Popen[bytes]:
    env = {**os.environ, "RESEARCH_MCP_LAUNCH_GRACE_S": "1"}
    proc = subprocess.Popen(
        [sys.executable, "-m", "mcp_server", "serve", "--state-dir", str(state_dir)],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, env=env,
    )  # fmt: skip
    assert proc.stdin is not None and proc.stdout is not None

    def send(msg: dict[str, object]) -> None:
        proc.stdin.write((json.dumps(msg) + "\n").encode())  # type: ignore[union-attr]
        proc.stdin.flush()  # type: ignore[union-attr]

    hello = {"protocolVersion": "2025-11-25", "capabilities": {}, "clientInfo": {"name": "t", "version": "0"}}
    send({"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": hello})
    proc.stdout.readline()
    send({"jsonrpc": "2.0", "method": "notifications/initialized"})
    send(tool_call(2, "list_runs", {}))
    proc.stdout.readline()  # the services are up: the next call goes straight to work
    proc.send = send  # type: ignore[attr-defined]
    return proc


def tool_call(msg_id: int, name: str, arguments: dict[str, object]) -> dict[str, object]:
    params = {"name": name, "arguments": arguments}
    return {"jsonrpc": "2.0", "id": msg_id, "method": "tools/call", "params": params}


def recover(services: Services) -> None:
    """What a restarted server does first (and again on every full settle)."""
    services.recover()


def _check_after_recovery(state_dir: Path) -> tuple[int, int]:
    """Recover like a restarted server; every run must then end finished. Returns (sweeps, runs)."""
    os.environ["RESEARCH_MCP_LAUNCH_GRACE_S"] = "1"
    try:
        services = Services(state_dir)
    finally:
        del os.environ["RESEARCH_MCP_LAUNCH_GRACE_S"]
    try:
        time.sleep(1.2)  # older than the launch grace: whoever created them is gone
        recover(services)

        def all_ended() -> bool:
            services.settler.tick()
            recover(services)
            with services.store.read() as s:
                runs = s.exec(select(Run)).all()
            return all(r.status in ENDED for r in runs)

        try:
            wait_for(all_ended, 60, 0.2, what="every run to end")
        except AssertionError:
            with services.store.read() as s:
                left = [(r.id, r.status, r.status_reason, r.backend_ref) for r in s.exec(select(Run)).all()]
            raise AssertionError([x for x in left if x[1] not in ENDED]) from None
        with services.store.read() as s:
            runs = list(s.exec(select(Run)).all())
            sweeps = list(s.exec(select(Sweep)).all())
        assert [(r.name, r.status, r.status_reason) for r in runs if r.status != "finished"] == []
        # No run dir without a row, no staging dir left (they hold env.sh).
        dirs = {p.name for p in services.state.runs_dir.iterdir()}
        assert dirs == {r.id for r in runs}, dirs ^ {r.id for r in runs}
        for sweep in sweeps:
            mine = [r for r in runs if r.sweep_id == sweep.id]
            assert len(mine) == sweep.max_runs, "a sweep is created with all its runs or not at all"
        assert {r.sweep_id for r in runs if r.sweep_id} <= {sw.id for sw in sweeps}
        return len(sweeps), len(runs)
    finally:
        services.close()


@pytest.mark.parametrize("delay", [0.05, 0.3, 0.8])
def test_kill_9_during_create_sweep_leaves_nothing_or_runs_that_run(
    state_dir: Path, workdir: Path, delay: float
) -> None:
    proc = _serve(state_dir)
    sweep = {
        "name": "crash", "goal": "survive a kill", "base_command": "echo {x}",
        "parameters": {"x": list(range(12))}, "workdir": str(workdir), "env": {"SECRET": "s3cret"},
    }  # fmt: skip
    proc.send(tool_call(3, "create_sweep", sweep))  # type: ignore[attr-defined]
    time.sleep(delay)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    _check_after_recovery(state_dir)


@pytest.mark.parametrize("delay", [0.05, 0.3])
def test_kill_9_during_a_burst_of_create_run_leaves_nothing_or_runs_that_run(
    state_dir: Path, workdir: Path, delay: float
) -> None:
    proc = _serve(state_dir)
    for i in range(8):
        run = {"name": f"r{i}", "command": "echo hi", "workdir": str(workdir), "env": {"SECRET": "s3cret"}}
        proc.send(tool_call(10 + i, "create_run", run))  # type: ignore[attr-defined]
    time.sleep(delay)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    _check_after_recovery(state_dir)
