"""Runs through the core service on the real local tmux backend."""

import os
import signal
import subprocess
import time
from pathlib import Path

import pytest
from sqlmodel import col, select

from mcp_server.core.backends.local import group_alive
from mcp_server.core.errors import Conflict, InvalidInput, NotFound
from mcp_server.core.services import Services
from mcp_server.core.storage.models import Event
from tests.helpers import wait_for
from tests.procs import pids_mentioning, pids_with


def wait_status(services: Services, run_id: str, statuses: set[str], timeout: float = 20):  # type: ignore[no-untyped-def]
    return wait_for(
        lambda: (r := services.runs.get(run_id)).status in statuses and r,
        timeout,
        what=f"{run_id} in {statuses}",
    )


def test_run_goes_from_launching_to_running_to_finished(services: Services, workdir: Path) -> None:
    marker = workdir / "go"
    run = services.runs.create(
        name="ok", command="while [ ! -f go ]; do sleep 0.05; done; echo done", workdir=str(workdir)
    )
    assert run.status in ("launching", "running") and run.backend == "local"  # the event check below is exact
    running = wait_status(services, run.id, {"running"})
    assert running.started_at is not None and running.exit_code is None
    marker.touch()
    done = wait_status(services, run.id, {"finished"})
    assert done.exit_code == 0 and done.ended_at is not None and done.duration_s is not None
    assert services.runs.logs(run.id).text == "done\n"
    with services.store.read() as s:
        events = s.exec(select(Event).where(Event.run_id == run.id).order_by(col(Event.id))).all()
    assert [e.data["status"] for e in events] == ["launching", "running", "finished"]


def test_nonzero_exit_is_failed_with_its_code(services: Services, workdir: Path) -> None:
    run = services.runs.create(name="bad", command="echo oops >&2; exit 3", workdir=str(workdir))
    done = wait_status(services, run.id, {"failed"})
    assert done.exit_code == 3 and "code 3" in done.status_reason
    assert "oops" in services.runs.logs(run.id).text


def test_stop_ends_the_whole_process_group(services: Services, workdir: Path) -> None:
    # A parent that ignores SIGINT plus background children: only escalation ends them all.
    cmd = "trap '' INT; sleep 300 & sleep 300 & echo started; wait"
    run = services.runs.create(name="stubborn", command=cmd, workdir=str(workdir))
    wait_for(lambda: "started" in services.runs.logs(run.id).text, what="job start")
    pgid = services.runs.files(run.id).read_pgid()
    assert pgid is not None and group_alive(pgid)
    t0 = time.monotonic()
    stopped = services.runs.stop(run.id)
    assert stopped.status == "stopped", stopped
    assert not group_alive(pgid)
    assert time.monotonic() - t0 < 10
    out = subprocess.run(["pgrep", "-g", str(pgid)], capture_output=True, text=True)
    assert out.stdout.strip() == ""
    with pytest.raises(Conflict, match="already ended"):
        services.runs.stop(run.id)


def test_stop_with_sigint_records_the_signal(services: Services, workdir: Path) -> None:
    run = services.runs.create(name="polite", command="echo up; sleep 300", workdir=str(workdir))
    wait_for(lambda: "up" in services.runs.logs(run.id).text)
    stopped = services.runs.stop(run.id)
    assert stopped.status == "stopped" and stopped.exit_code == 130 and "SIGINT" in stopped.status_reason


def test_ready_run_starts_on_request_and_reruns_keep_env(services: Services, workdir: Path) -> None:
    run = services.runs.create(
        name="later",
        command='echo "token=$MY_TOKEN"',
        workdir=str(workdir),
        auto_start=False,
        env={"MY_TOKEN": "abc"},
    )
    assert run.status == "ready" and run.env_keys == ["MY_TOKEN"]
    with pytest.raises(NotFound):
        services.runs.rerun("run-20000101-000000-00000000")
    services.runs.start(run.id)
    wait_status(services, run.id, {"finished"})
    with pytest.raises(Conflict, match="only runs in status 'ready'"):
        services.runs.start(run.id)
    again = services.runs.rerun(run.id)
    assert again.parent_run_id == run.id and again.id != run.id
    wait_status(services, again.id, {"finished"})
    assert services.runs.logs(again.id).text == "token=abc\n"
    assert "abc" not in services.runs.files(again.id).launch.read_text()


def test_stopping_a_ready_run_needs_no_backend(services: Services, workdir: Path) -> None:
    run = services.runs.create(name="never", command="true", workdir=str(workdir), auto_start=False)
    assert services.runs.stop(run.id).status == "stopped"


def _snapshot(services: Services) -> tuple[int, list[str]]:
    return services.runs.list().total, sorted(os.listdir(services.state.runs_dir))


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"command": "   "}, "command is empty"),
        ({"name": "a/b"}, "not allowed"),
        ({"name": "x; rm -rf ~"}, "not allowed"),
        ({"workdir": "/no/such/dir"}, "does not exist"),
        ({"env": {"BAD-KEY": "1"}}, "not valid"),
        ({"env": {"RESEARCH_RUN_ID": "x"}}, "reserved"),
        ({"gpus": -1}, "out of range"),
        ({"parent_run_id": "run-20000101-000000-00000000"}, "no run with id"),
        ({"params": {"x": float("nan")}}, "must be JSON"),
        ({"backend": "kubernetes"}, "valid: auto, local"),
    ],
)
def test_bad_input_is_refused_and_changes_nothing(
    services: Services, workdir: Path, kwargs: dict, message: str
) -> None:
    before = _snapshot(services)
    args = {"name": "ok", "command": "true", "workdir": str(workdir), **kwargs}
    with pytest.raises((InvalidInput, NotFound), match=message):
        services.runs.create(**args)
    assert _snapshot(services) == before


def test_unknown_ids_and_bad_queries_explain_what_is_valid(services: Services) -> None:
    with pytest.raises(NotFound, match="list_runs"):
        services.runs.get("run-20000101-000000-00000000")
    with pytest.raises(InvalidInput, match="valid: ready, queued"):
        services.runs.list(status=["done"])
    with pytest.raises(InvalidInput, match="regular expression"):
        services.runs.logs("run-20000101-000000-00000000", filter="(")


def test_list_pages_and_filters(services: Services, workdir: Path) -> None:
    ids = [
        services.runs.create(name=f"p{i}", command="true", workdir=str(workdir), auto_start=False).id
        for i in range(5)
    ]
    page = services.runs.list(limit=2)
    assert [r.id for r in page.runs] == ids[::-1][:2] and page.total == 5 and page.next_offset == 2
    last = services.runs.list(limit=2, offset=4)
    assert [r.id for r in last.runs] == [ids[0]] and last.next_offset is None
    assert services.runs.list(name_contains="p3").total == 1
    assert services.runs.list(status=["ready"]).total == 5
    assert services.runs.list(status=["running"]).total == 0


def test_a_vanished_window_without_exit_code_is_lost(services: Services, workdir: Path) -> None:
    run = services.runs.create(name="doomed", command="echo up; sleep 300", workdir=str(workdir))
    wait_for(lambda: "up" in services.runs.logs(run.id).text)
    pgid = services.runs.files(run.id).read_pgid()
    assert pgid is not None
    launch = str(services.runs.files(run.id).launch)

    # The launch script is killed outright (its window closes with it), then the job:
    # nobody is left to write an exit code.
    for pid in pids_with(launch):
        os.kill(pid, signal.SIGKILL)
    os.killpg(pgid, signal.SIGKILL)
    lost = wait_status(services, run.id, {"lost"})
    assert "window is gone" in lost.status_reason
    assert not services.runs.files(run.id).exit_code.exists()


def test_a_job_outlives_the_tmux_server_and_still_ends_with_its_exit_code(
    services: Services, workdir: Path
) -> None:
    run = services.runs.create(
        name="survivor",
        command="echo up; while [ ! -f go ]; do sleep 0.05; done; echo after; exit 3",
        workdir=str(workdir),
    )
    wait_for(lambda: "up" in services.runs.logs(run.id).text)
    pgid = services.runs.files(run.id).read_pgid()
    assert pgid is not None

    # The tmux server dies (killed, crashed): the job trains on and the run is not lost.
    subprocess.run(["tmux", "-L", services.state.tmux_socket, "kill-server"], check=True)
    for _ in range(5):
        assert group_alive(pgid)
        assert services.runs.get(run.id).status == "running"
        time.sleep(0.2)

    # Its output still reaches the log, and its exit code is recorded as usual.
    (workdir / "go").touch()
    done = wait_status(services, run.id, {"failed", "lost"})
    assert done.status == "failed" and done.exit_code == 3
    assert "after" in services.runs.logs(run.id).text


def test_a_run_ends_when_its_command_ends_even_if_a_daemon_it_started_holds_the_output(
    services: Services, workdir: Path
) -> None:
    """A child the job started in its own session (a daemonized helper) keeps the output pipe
    open. The run still ends with the command's exit code at once, even with no tmux to ask,
    and the helper is named in the reason and left running (the default)."""
    helper = "while [ ! -f release ] && [ $SECONDS -lt 60 ]; do sleep 0.05; done"
    run = services.runs.create(
        name="lingering",
        command=f"echo up; while [ ! -f go ]; do sleep 0.05; done; (setsid bash -c '{helper}' &); exit 3",
        workdir=str(workdir),
    )
    wait_for(lambda: "up" in services.runs.logs(run.id).text)
    subprocess.run(["tmux", "-L", services.state.tmux_socket, "kill-server"], check=True)

    (workdir / "go").touch()
    done = wait_status(services, run.id, {"failed", "lost"})
    assert done.status == "failed" and done.exit_code == 3
    assert "background process(es) behind: " in done.status_reason, done.status_reason
    assert "bash -c while [ ! -f release ]" in done.status_reason
    assert "left running" in done.status_reason
    assert pids_mentioning("release"), "the helper was left running"
    (workdir / "release").touch()


def test_a_run_whose_tmux_socket_vanished_settles_from_its_exit_code(
    services: Services, workdir: Path
) -> None:
    """A /tmp cleaner may delete the socket of a live tmux server: no window list, no loss."""
    run = services.runs.create(
        name="unseen", command="echo up; while [ ! -f go ]; do sleep 0.05; done; exit 3", workdir=str(workdir)
    )
    wait_for(lambda: "up" in services.runs.logs(run.id).text)
    tmux = ["tmux", "-L", services.state.tmux_socket]
    where = subprocess.run(
        [*tmux, "display-message", "-p", "#{socket_path} #{pid}"], capture_output=True, text=True, check=True
    )
    socket_path, server_pid = where.stdout.split()
    os.unlink(socket_path)
    try:
        assert services.backends.get("local").window_names() == set()  # tmux seems gone
        for _ in range(5):
            assert services.runs.get(run.id).status == "running"
            time.sleep(0.2)
        (workdir / "go").touch()
        done = wait_status(services, run.id, {"failed", "lost"})
        assert done.status == "failed" and done.exit_code == 3 and "code 3" in done.status_reason
    finally:
        os.kill(int(server_pid), signal.SIGUSR1)  # tmux recreates its socket, so teardown can end it
        wait_for(lambda: os.path.exists(socket_path), what="socket recreated")


def test_env_values_appear_nowhere_but_the_jobs_environment(
    services: Services, workdir: Path, state_dir: Path
) -> None:
    secret = "sk-live-" + os.urandom(12).hex()
    run = services.runs.create(
        name="keyed",
        command='test "$API_KEY" = "$EXPECTED" && echo key-ok; while [ ! -f go ]; do sleep 0.05; done',
        workdir=str(workdir),
        env={"API_KEY": secret, "EXPECTED": secret},
    )
    wait_for(lambda: "key-ok" in services.runs.logs(run.id).text, what="the job to see its key")

    # Not on any process's command line while the job runs (tmux, launch script, job, sidecar).
    assert pids_mentioning(secret) == []
    # Not in the pane's scrollback.
    tmux = ["tmux", "-L", services.state.tmux_socket]
    pane = subprocess.run(
        [*tmux, "capture-pane", "-p", "-S", "-", "-t", f"=research:={run.id}"], capture_output=True, text=True
    )
    assert "key-ok" in pane.stdout and secret not in pane.stdout

    (workdir / "go").touch()
    wait_status(services, run.id, {"finished"})
    # Not in any file of the state dir but the private env.sh: store, logs, scripts, sidecar log.
    holders = [p.name for p in state_dir.rglob("*") if p.is_file() and secret.encode() in p.read_bytes()]
    assert holders == ["env.sh"]
    assert services.runs.get(run.id).env_keys == ["API_KEY", "EXPECTED"]
