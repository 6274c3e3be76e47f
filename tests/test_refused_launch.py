"""A launch that fails leaves nothing half-made: no run, no run dir, no event, no queue entry.

create_run writes the run, then launches it; the launch commits a 'launching' event before
the backend is asked. If the launch then fails — a refusal or any other error — the run is
removed again, and so is its event, or wait_for_events would serve news of a run that no
tool can find.
"""

from __future__ import annotations

import errno
import sqlite3
from pathlib import Path

import pytest
from sqlmodel import select

from mcp_server.core.errors import ResearchError
from mcp_server.core.execution.jobfiles import JobFiles
from mcp_server.core.execution.run_status import TERMINAL
from mcp_server.core.monitoring.events import EventFeed, wait_for_events
from mcp_server.core.scheduling import gpuwrap  # the local backend writes the admission env through it
from mcp_server.core.services import Services
from mcp_server.core.storage.models import Event, GpuLease, QueueEntry, Run
from tests.fakegpus import path_without
from tests.helpers import wait_for

pytestmark = pytest.mark.anyio


def disk_full(*_args: object) -> None:
    raise OSError(errno.ENOSPC, "No space left on device")


def rows(services: Services) -> dict[str, list]:
    with services.store.read() as s:
        return {
            "runs": list(s.exec(select(Run)).all()),
            "events": list(s.exec(select(Event)).all()),
            "queue": list(s.exec(select(QueueEntry)).all()),
            "leases": list(s.exec(select(GpuLease)).all()),
        }


async def assert_nothing_left(services: Services) -> None:
    assert rows(services) == {"runs": [], "events": [], "queue": [], "leases": []}
    assert list(services.state.runs_dir.iterdir()) == []
    waited = await wait_for_events(
        EventFeed(services.state.db_path), cursor=0, timeout_s=1, kinds=["run_status", "alert"]
    )
    assert waited.timed_out and waited.events == []


async def test_a_launch_refused_by_the_backend_leaves_no_run_and_no_event(
    services: Services, workdir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    with monkeypatch.context() as m, pytest.raises(ResearchError, match="backend failed to submit"):
        m.setenv("PATH", path_without(tmp_path / "bin-without-tmux", "tmux"))  # tmux is not installed
        services.runs.create(name="no-tmux", command="true", workdir=str(workdir))
    await assert_nothing_left(services)


async def test_an_unexpected_error_during_launch_leaves_no_run_and_no_event(
    services: Services, workdir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Not a refusal the core raises itself: an OSError after the run was admitted and its
    # 'launching' event committed (the admission env file cannot be written).
    monkeypatch.setattr(gpuwrap, "write_admission_env", disk_full)
    with pytest.raises(OSError, match="No space left on device"):
        services.runs.create(name="disk-full", command="true", workdir=str(workdir))
    await assert_nothing_left(services)


async def test_start_run_that_fails_unexpectedly_marks_the_run_failed_and_frees_its_slot(
    services: Services, workdir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    run = services.runs.create(name="later", command="true", workdir=str(workdir), auto_start=False)
    monkeypatch.setattr(gpuwrap, "write_admission_env", disk_full)
    with pytest.raises(OSError, match="No space left on device"):
        services.runs.start(run.id)
    failed = services.runs.get(run.id)
    assert failed.status == "failed" and "launch refused" in failed.status_reason
    assert "No space left on device" in (failed.error or "")
    assert rows(services)["queue"] == []


def test_a_store_failure_after_the_job_was_submitted_keeps_the_run(
    services: Services, workdir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Once the backend took the job it runs: the run must stay, never be discarded."""
    backend = services.backends.get("local")
    real_submit, real_write = backend.submit, services.store.write
    failing = {"next_write": False}

    def submit_then_break_the_store(run: Run, files: JobFiles) -> str:
        ref = real_submit(run, files)
        failing["next_write"] = True
        return ref

    def write():  # type: ignore[no-untyped-def]
        if failing.pop("next_write", False):
            raise sqlite3.OperationalError("disk I/O error")
        return real_write()

    monkeypatch.setattr(backend, "submit", submit_then_break_the_store)
    monkeypatch.setattr(services.store, "write", write)
    run = services.runs.create(name="kept", command="echo still-here", workdir=str(workdir))
    done = wait_for(lambda: (r := services.runs.get(run.id)).status in {t.value for t in TERMINAL} and r, 20)
    assert done.status == "finished" and done.exit_code == 0
    assert "still-here" in services.runs.logs(run.id).text
