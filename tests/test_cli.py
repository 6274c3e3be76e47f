"""The ``research-mcp`` command as a person uses it."""

import subprocess
import sys
from pathlib import Path

from mcp_server.cli import main


def run_cli(*args: str, cwd: Path, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "mcp_server", *args], cwd=cwd, capture_output=True, text=True, timeout=timeout
    )


def test_demo_runs_the_bundled_training_script_to_finished(state_dir: Path, tmp_path: Path) -> None:
    proc = run_cli("demo", "--steps", "60", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert "finished" in proc.stdout and "demo-linear-regression" in proc.stdout
    assert "done: final loss=" in proc.stdout
    metrics = list(state_dir.glob("runs/*/metrics.jsonl"))
    assert len(metrics) == 1 and len(metrics[0].read_text().splitlines()) == 60

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
