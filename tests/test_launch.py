import os
import signal
import stat
import subprocess
import time
from pathlib import Path

from mcp_server.core.execution.jobfiles import JobFiles
from mcp_server.core.execution.launch import (
    render_launch_script,
    write_command,
    write_env,
    write_launch_script,
)
from tests.helpers import wait_for
from tests.procs import pids_mentioning


def _render(tmp_path: Path, workdir: Path, command: str, env: dict[str, str]) -> JobFiles:
    files = JobFiles(tmp_path / "run dir 'quoted'")
    files.run_dir.mkdir()
    write_command(files, command)
    write_env(files, env)
    write_launch_script(files, render_launch_script(run_id="run-x", workdir=str(workdir), files=files))
    return files


def test_launch_script_runs_the_command_and_records_its_exit_code(tmp_path: Path) -> None:
    workdir = tmp_path / "work $HOME; dir"
    workdir.mkdir()
    files = _render(
        tmp_path, workdir, 'pwd; echo "run=$RESEARCH_RUN_ID metrics=$RESEARCH_METRICS_FILE"; exit 7', {}
    )
    proc = subprocess.run(["bash", str(files.launch)], capture_output=True, text=True, timeout=30)
    assert proc.returncode == 7
    assert files.read_exit_code() == 7
    out = files.output.read_text()
    assert str(workdir) in out and f"metrics={files.metrics}" in out and "run=run-x" in out
    assert out in proc.stdout  # also visible on the terminal (the tmux pane)
    assert files.read_pgid() is not None


def test_env_values_stay_out_of_the_launch_script_and_are_private(tmp_path: Path) -> None:
    secret = "s3cr3t 'value' $(rm -rf /)"
    files = _render(
        tmp_path,
        tmp_path,
        'test "$API_KEY" = "$EXPECTED" && echo same',
        {"API_KEY": secret, "EXPECTED": secret},
    )
    assert secret not in files.launch.read_text()
    assert stat.S_IMODE(os.stat(files.env).st_mode) == 0o600
    proc = subprocess.run(["bash", str(files.launch)], capture_output=True, text=True, timeout=30)
    assert proc.returncode == 0 and "same" in files.output.read_text()
    assert secret not in files.output.read_text()


def test_missing_workdir_fails_with_a_message(tmp_path: Path) -> None:
    files = _render(tmp_path, tmp_path / "gone", "true", {})
    subprocess.run(["bash", str(files.launch)], capture_output=True, timeout=30)
    assert files.read_exit_code() == 127
    assert "cannot enter workdir" in files.output.read_text()


def test_the_exit_code_waits_for_the_last_output_to_reach_the_log(tmp_path: Path) -> None:
    """A monitor reads the log one last time when the exit code appears: what the job printed
    last must be in the file by then, even when tee is slow to write it."""
    go = tmp_path / "go"
    files = _render(tmp_path, tmp_path, f"while [ ! -f {go} ]; do sleep 0.02; done; echo final-metrics", {})
    launcher = subprocess.Popen(["bash", str(files.launch)], stdout=subprocess.DEVNULL)
    try:
        wait_for(lambda: files.read_pgid() is not None, what="the job to start")
        (tee,) = wait_for(lambda: pids_mentioning(str(files.output)), what="tee")
        os.kill(tee, signal.SIGSTOP)  # tee is slow: what the job prints stays in the pipe
        go.touch()
        pgid = files.read_pgid()
        assert pgid is not None
        wait_for(lambda: not _group_lives(pgid), what="the job to end")
        time.sleep(0.5)
        assert files.read_exit_code() is None and "final-metrics" not in files.output.read_text()
        os.kill(tee, signal.SIGCONT)
        assert launcher.wait(timeout=30) == 0
        assert files.read_exit_code() == 0 and files.output.read_text() == "final-metrics\n"
    finally:
        launcher.kill()


def _group_lives(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    return True
