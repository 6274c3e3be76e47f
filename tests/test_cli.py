"""The ``research-mcp`` command as a person uses it."""

import re
import sqlite3
import subprocess
import sys
import time
from contextlib import closing
from pathlib import Path

import pytest

from mcp_server.cli import main


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
    assert main(["status"]) == 0
    assert (tmp_path / ".research-mcp" / "research.db").exists()


def test_cli_errors_are_one_line_messages(state_dir: Path, tmp_path: Path) -> None:
    proc = run_cli("logs", "not-a-run", cwd=tmp_path)
    assert proc.returncode == 2 and proc.stderr.startswith(
        "research-mcp: run_id 'not-a-run' is not a valid run id"
    )
