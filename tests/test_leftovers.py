"""A run ends when its command ends, whatever it left running in the background."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from mcp_server.core.errors import Conflict
from mcp_server.core.services import Services
from tests.helpers import wait_for
from tests.procs import pids_mentioning

ENDED = {"finished", "failed", "stopped", "lost"}


def wait_status(services: Services, run_id: str, statuses: set[str], timeout: float = 30):  # type: ignore[no-untyped-def]
    return wait_for(
        lambda: (r := services.runs.get(run_id)).status in statuses and r,
        timeout,
        what=f"{run_id} in {statuses}",
    )


@pytest.fixture
def one_slot(monkeypatch: pytest.MonkeyPatch, state_dir: Path):  # type: ignore[no-untyped-def]
    monkeypatch.setenv("RESEARCH_MCP_CPU_RUN_LIMIT", "1")
    sv = Services(state_dir)
    yield sv
    sv.close()


def test_a_background_child_holds_neither_the_run_nor_its_slot(one_slot: Services, workdir: Path) -> None:
    services = one_slot
    tag = f"leftover-{os.getpid()}-sleeper"
    run = services.runs.create(
        name="bg", command=f"bash -c 'exec -a {tag} sleep 120' & echo main done; exit 0", workdir=str(workdir)
    )
    nxt = services.runs.create(name="next", command="echo next ran", workdir=str(workdir))
    done = wait_status(services, run.id, ENDED)
    assert (done.status, done.exit_code) == ("finished", 0)
    assert "left 1 background process(es) behind" in done.status_reason and tag in done.status_reason
    # The only run slot came back: the next run ran while the sleeper still lives.
    assert wait_status(services, nxt.id, ENDED).status == "finished"
    assert pids_mentioning(tag), "left running by default"
    assert "research-mcp: the command left 1 background process(es) behind" in services.runs.logs(run.id).text
    # stop_run cannot turn the clean exit into 'stopped'.
    with pytest.raises(Conflict, match="already ended"):
        services.runs.stop(run.id)
    assert services.runs.get(run.id).status == "finished"
    for pid in pids_mentioning(tag):
        os.kill(pid, 9)


def test_a_child_that_execs_without_the_run_id_as_the_command_ends_is_no_leftover(
    services: Services, workdir: Path
) -> None:
    """What the provenance probe's helper does: forked from the job (so, until its exec, it
    shows the job's environment), then execs with RESEARCH_RUN_ID cleared."""
    tag = f"leftover-{os.getpid()}-helper"
    run = services.runs.create(
        name="helper",
        command=f"(sleep 0.05; RESEARCH_RUN_ID= exec -a {tag} sleep 5) & echo done",
        workdir=str(workdir),
    )
    try:
        done = wait_status(services, run.id, ENDED)
        assert (done.status, done.exit_code) == ("finished", 0)
        assert "behind" not in (done.status_reason or "")
        assert services.runs.logs(run.id).text == "done\n"
    finally:
        for pid in pids_mentioning(tag):
            os.kill(pid, 9)


def test_a_stop_asked_after_the_command_ended_keeps_its_clean_exit(services: Services, workdir: Path) -> None:
    """The exit code is on disk but nobody settled it yet when stop_run arrives."""
    run = services.runs.create(name="quick", command="echo hi", workdir=str(workdir))
    files = services.runs.files(run.id)
    wait_for(lambda: files.read_exit_code() is not None, what="the exit code")
    from sqlalchemy import update

    from mcp_server.core.storage.models import Run
    from mcp_server.core.storage.store import now

    # What a stop arriving between the exit code and the settle leaves in the store.
    with services.store.write() as s:
        s.execute(update(Run).where(Run.id == run.id).values(stop_requested_at=now()))
    assert wait_status(services, run.id, ENDED).status == "finished"


def test_with_end_leftovers_the_children_and_daemons_are_ended(
    monkeypatch: pytest.MonkeyPatch, state_dir: Path, workdir: Path
) -> None:
    monkeypatch.setenv("RESEARCH_MCP_END_LEFTOVERS", "1")
    services = Services(state_dir)
    tag = f"leftover-{os.getpid()}-daemon"
    try:
        run = services.runs.create(
            name="daemons",
            command=f"bash -c 'exec -a {tag}-a sleep 120' & (setsid bash -c 'exec -a {tag}-b sleep 120' &); "
            "sleep 0.2; exit 0",
            workdir=str(workdir),
        )
        done = wait_status(services, run.id, ENDED)
        assert (done.status, done.exit_code) == ("finished", 0)
        assert "background process(es) behind" in done.status_reason and "ended" in done.status_reason
        wait_for(lambda: not pids_mentioning(tag), 10, what="the leftovers to be ended")
    finally:
        for pid in pids_mentioning(tag):
            os.kill(pid, 9)
        services.close()
