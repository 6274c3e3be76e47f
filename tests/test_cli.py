"""The ``research-mcp`` command as a person uses it."""

import contextlib
import importlib.metadata
import os
import pty
import queue
import re
import select
import signal
import sqlite3
import subprocess
import sys
import threading
import time
from contextlib import closing
from pathlib import Path

import pytest

from mcp_server.cli import build_parser, format_table, main
from mcp_server.core.run_views import RunRow
from mcp_server.core.services import Services
from tests.helpers import wait_for


def run_cli(*args: str, cwd: Path, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "mcp_server", *args], cwd=cwd, capture_output=True, text=True, timeout=timeout
    )


def test_demo_sweeps_three_runs_shows_best_sparklines_the_alert_and_the_dashboard_link(
    state_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Even on a machine whose cluster type is Slurm, the main job runs on the embedded default.
    monkeypatch.setenv("RESEARCH_MCP_CLUSTER_TYPE", "slurm")
    started = time.monotonic()
    proc = run_cli("demo", "--steps", "60", cwd=tmp_path)
    took = time.monotonic() - started
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert took < 60, f"the demo took {took:.0f} s"
    out = proc.stdout
    rows = [line for line in out.splitlines() if line.startswith("demo-lr-")]
    assert len(rows) == 3 and all("finished" in r for r in rows)
    assert sum("← best" in r for r in rows) == 1 and "0.3" in next(r for r in rows if "← best" in r)
    assert all(any(ch in r for ch in "▁▂▃▄▅▆▇█") for r in rows)  # a sparkline per run
    assert "alert [warning]" in out and "Stop run" in out  # the diverging run raised one
    link = re.search(r"http://127\.0\.0\.1:8766/ui\?token=(\S+)", out)
    assert link and link.group(1) == (state_dir / "token").read_text().strip()
    metrics = list(state_dir.glob("runs/*/metrics.jsonl"))
    assert len(metrics) == 3 and all(len(m.read_text().splitlines()) == 60 for m in metrics)
    with closing(sqlite3.connect(state_dir / "research.db")) as db:
        assert {b for (b,) in db.execute("SELECT backend FROM runs")} == {"local"}

    status = run_cli("status", cwd=tmp_path)
    assert status.returncode == 0 and "finished" in status.stdout and "EXIT" in status.stdout
    run_id = next(line.split()[0] for line in status.stdout.splitlines() if line.startswith("run-"))
    logs = run_cli("logs", run_id, "-n", "2", cwd=tmp_path)
    assert logs.stdout.splitlines()[-1].startswith("done: final loss=")
    follow = run_cli("logs", run_id, "-f", cwd=tmp_path)  # an ended run: prints everything and returns
    assert follow.returncode == 0 and "training: steps=60" in follow.stdout


def test_state_dir_defaults_to_the_working_directory(tmp_path: Path, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    monkeypatch.delenv("RESEARCH_MCP_HOME", raising=False)
    monkeypatch.chdir(tmp_path)
    Services().close()  # what a server started in this directory creates
    assert (tmp_path / ".research-mcp" / "research.db").exists()
    assert main(["status"]) == 0


def test_cli_errors_are_one_line_messages(state_dir: Path, tmp_path: Path) -> None:
    Services(state_dir).close()
    proc = run_cli("logs", "not-a-run", cwd=tmp_path)
    assert proc.returncode == 2 and proc.stderr.startswith(
        "research-mcp: run_id 'not-a-run' is not a valid run id"
    )


def test_every_option_explains_itself_and_a_bare_command_prints_help(tmp_path: Path) -> None:
    parser = build_parser()
    (commands,) = [a for a in parser._actions if a.dest == "command"]
    for name, sub in [("research-mcp", parser), *commands.choices.items()]:  # type: ignore[union-attr]
        for action in sub._actions:
            assert action.help, f"{name} {action.option_strings or action.dest} has no --help text"
    bare = run_cli(cwd=tmp_path)
    assert bare.returncode == 0 and "usage: research-mcp" in bare.stdout and "serve" in bare.stdout
    version = run_cli("--version", cwd=tmp_path)
    assert version.stdout.strip() == f"research-mcp {importlib.metadata.version('research-mcp')}"


def test_commands_that_only_look_create_no_state_dir(tmp_path: Path) -> None:
    typo = tmp_path / "reserach-mcp"
    for args in (["status"], ["logs", "run-20260101-120000-1a2b3c4d"]):
        proc = run_cli(*args, "--state-dir", str(typo), cwd=tmp_path)
        assert proc.returncode == 2 and f"no research-mcp state dir at {typo}" in proc.stderr
        assert not typo.exists()


def test_status_says_when_its_filter_matches_nothing(state_dir: Path, tmp_path: Path, workdir: Path) -> None:
    services = Services(state_dir)
    run = services.runs.create(name="ok", command="true", workdir=str(workdir))
    wait_for(lambda: services.runs.get(run.id).status == "finished", 30)
    services.close()
    proc = run_cli("status", "--status", "failed", cwd=tmp_path)
    assert proc.returncode == 0 and "no run is failed (1 run(s) in all" in proc.stdout
    assert "no runs yet" not in proc.stdout


def test_status_never_cuts_a_reason_inside_an_id() -> None:
    reason = "waiting for 2 GPU(s), 1 free: GPU 0 leased by run-20260101-120000-1a2b3c4d; GPU 1 used by pid 7"
    row = RunRow(
        id="run-20260101-120001-00000000", name="big", status="queued", status_reason=reason,
        backend="local", gpus=2, created_at="2026-01-01T12:00:01Z",
    )  # fmt: skip
    cell = format_table([row]).splitlines()[1].split("  ")[-1]
    assert cell.endswith(" …") and len(cell) < len(reason)
    assert all(re.fullmatch(r"run-\d{8}-\d{6}-[0-9a-f]{8}", m) for m in re.findall(r"run-[\w-]*", cell))


def test_following_a_queued_run_says_it_waits_and_ends_with_its_status(
    state_dir: Path, tmp_path: Path, workdir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("RESEARCH_MCP_CPU_RUN_LIMIT", "1")  # one run at a time: the second one queues
    services = Services(state_dir)
    gate = workdir / "gate"
    first = services.runs.create(
        name="first", command="while [ ! -f gate ]; do sleep 0.05; done", workdir=str(workdir)
    )
    second = services.runs.create(name="second", command="echo second-ran", workdir=str(workdir))
    assert services.runs.get(second.id).status == "queued" and first.status != "queued"
    services.close()
    follow = subprocess.Popen(
        [sys.executable, "-m", "mcp_server", "logs", second.id, "-f"],
        cwd=tmp_path,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    said: queue.Queue[str] = queue.Queue()
    reader = threading.Thread(target=lambda: [said.put(line) for line in follow.stderr or ()], daemon=True)
    reader.start()
    try:
        try:
            first_line = said.get(timeout=60)  # printed while the run still waits for its slot
        except queue.Empty:
            first_line = ""
        gate.touch()
        follow.wait(timeout=60)
        out = follow.stdout.read() if follow.stdout else ""
        reader.join(10)
    finally:
        gate.touch()
        follow.kill()
    rest = [said.get_nowait() for _ in range(said.qsize())]
    assert first_line.startswith(f"research-mcp: {second.id} is queued: waiting for a CPU run slot")
    assert follow.returncode == 0 and out == "second-ran\n"
    assert rest[-1].startswith(f"research-mcp: {second.id} finished, exit code 0")


def test_serve_started_by_hand_stops_on_the_first_ctrl_c(state_dir: Path) -> None:
    pid, fd = pty.fork()  # a terminal, as when a person types `research-mcp serve`
    if pid == 0:
        os.execv(sys.executable, [sys.executable, "-m", "mcp_server", "serve", "--state-dir", str(state_dir)])
    output = b""
    try:
        wait_for(lambda: (state_dir / "research.db").exists(), 60, what="the server to open its store")
        os.kill(pid, signal.SIGINT)  # what the terminal sends on Ctrl-C
        deadline = time.monotonic() + 5
        status = None
        while status is None and time.monotonic() < deadline:
            if select.select([fd], [], [], 0.05)[0]:
                with contextlib.suppress(OSError):  # the other end closed: the server is gone
                    output += os.read(fd, 65536)
            done, code = os.waitpid(pid, os.WNOHANG)
            status = code if done else None
    finally:
        if status is None:
            os.kill(pid, signal.SIGKILL)
            os.waitpid(pid, 0)
        os.close(fd)
    assert status is not None, "the server was still running 5 s after Ctrl-C"
    assert os.waitstatus_to_exitcode(status) == 130
    assert b"Traceback" not in output
