"""A run's files are written by its job too: a malformed one affects that run alone."""

import os
import signal
from pathlib import Path

import pytest

from mcp_server.core.execution.jobfiles import JobFiles
from mcp_server.core.services import Services
from tests.helpers import wait_for


def wait_status(services: Services, run_id: str, statuses: set[str], timeout: float = 30):  # type: ignore[no-untyped-def]
    return wait_for(
        lambda: (r := services.runs.get(run_id)).status in statuses and r,
        timeout,
        what=f"{run_id} in {statuses}",
    )


def test_a_job_that_makes_a_directory_named_exit_code_breaks_nothing_else(
    services: Services, workdir: Path
) -> None:
    bad = services.runs.create(
        name="mkdir-exit-code",
        command='mkdir "$RESEARCH_RUN_DIR/exit_code" && touch started && '
        "while [ ! -f go ]; do sleep 0.05; done",
        workdir=str(workdir),
    )
    wait_for(lambda: (workdir / "started").exists(), what="the job to make its directory")
    # Every other call still works while the directory is there.
    other = services.runs.create(name="other", command="echo fine", workdir=str(workdir))
    assert wait_status(services, other.id, {"finished"}).exit_code == 0
    assert {r.id for r in services.runs.list().runs} >= {bad.id, other.id}
    assert services.runs.get(bad.id).status == "running"
    # The run ends with its true exit code; the job's directory is kept, set aside.
    (workdir / "go").touch()
    done = wait_status(services, bad.id, {"finished", "failed"})
    assert (done.status, done.exit_code) == ("finished", 0)
    run_dir = services.runs.files(bad.id).run_dir
    assert [p.name for p in run_dir.glob("exit_code.invalid*") if p.is_dir()]


def test_a_huge_number_in_exit_code_breaks_neither_list_nor_get(services: Services, workdir: Path) -> None:
    run = services.runs.create(
        name="huge-code",
        command='echo 99999999999999999999 > "$RESEARCH_RUN_DIR/exit_code"; '
        "touch written; while [ ! -f go ]; do sleep 0.05; done",
        workdir=str(workdir),
    )
    wait_for(lambda: (workdir / "written").exists(), what="the job to write its exit_code")
    assert services.runs.get(run.id).status == "running"
    assert run.id in {r.id for r in services.runs.list().runs}
    (workdir / "go").touch()
    done = wait_status(services, run.id, {"finished", "failed"})
    assert (done.status, done.exit_code) == ("finished", 0)


@pytest.mark.parametrize(
    ("content", "why"),
    [("99999999999999999999\n", "outside 0..255"), ("garbage\n", "not a whole number"), (None, "directory")],
)
def test_a_run_whose_job_died_leaving_a_malformed_exit_code_fails_with_the_reason(
    services: Services, workdir: Path, content: str | None, why: str
) -> None:
    run = services.runs.create(name="dies", command="sleep 60", workdir=str(workdir))
    files = services.runs.files(run.id)
    wait_status(services, run.id, {"running"})
    # The launch script and the job die without recording anything, and a bad file remains.
    launcher, pgid = files.read_launcher_pid(), files.read_pgid()
    assert launcher is not None and pgid is not None
    os.kill(launcher, signal.SIGKILL)
    os.killpg(pgid, signal.SIGKILL)
    wait_for(lambda: not _alive(launcher), what="the launch script to die")
    if content is None:
        files.exit_code.mkdir()
    else:
        files.exit_code.write_text(content)
    done = wait_status(services, run.id, {"failed", "lost"})
    assert done.status == "failed" and done.exit_code is None
    assert "exit_code" in done.status_reason and why in done.status_reason


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


def test_reading_never_hangs_on_a_fifo_nor_reads_a_huge_file(tmp_path: Path) -> None:
    files = JobFiles(tmp_path)
    os.mkfifo(files.exit_code)
    os.mkfifo(files.pgid)
    assert files.read_exit_code() is None
    assert files.exit_code_or_problem() == (None, "exit_code is not a regular file (a FIFO)")
    assert files.read_pgid() is None
    files.failure.write_text("x" * 10_000_000)
    assert len(files.read_failure() or "") <= 4096
    files.launcher_pid.write_text("123456789012345678901234567890\n")
    assert files.read_launcher_pid() is None  # never a pid we would signal


def test_an_output_log_replaced_by_a_fifo_is_a_clear_error_not_a_hang(
    services: Services, workdir: Path
) -> None:
    import threading

    from mcp_server.core.errors import Conflict

    run = services.runs.create(
        name="fifo-log",
        command='echo before; rm "$RESEARCH_RUN_DIR/output.log"; '
        'mkfifo "$RESEARCH_RUN_DIR/output.log"; exit 3',
        workdir=str(workdir),
    )
    answers: dict[str, object] = {}

    def read() -> None:
        done = wait_status(services, run.id, {"failed"})
        answers["run"] = done
        try:
            services.runs.logs(run.id)
        except Conflict as err:
            answers["error"] = str(err)

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    reader.join(60)
    assert not reader.is_alive(), "get_logs (or get_run) hung on the FIFO"
    assert "FIFO" in str(answers.get("error")) and "output.log" in str(answers.get("error"))
    assert answers["run"].exit_code == 3  # type: ignore[attr-defined]
    # The run's monitor was not stuck on it either: it drained and let go of the run.
    wait_for(
        lambda: (m := services.runs.get(run.id).monitor) is not None and m.exited, 30, what="sidecar exit"
    )


def test_an_output_without_any_newline_counts_as_one_huge_line(services: Services, workdir: Path) -> None:
    """A job that prints megabytes and never a line end: the monitor counts that line once."""
    run = services.runs.create(
        name="no-newline", command="head -c 3000000 /dev/zero | tr '\\\\0' x", workdir=str(workdir)
    )
    done = wait_status(services, run.id, {"finished", "failed"})
    assert done.exit_code == 0
    wait_for(
        lambda: (m := services.runs.get(run.id).monitor) is not None and m.exited, 30, what="sidecar exit"
    )
    monitor = services.runs.get(run.id).monitor
    assert monitor is not None and monitor.ingest.huge_lines == 1, monitor.ingest
