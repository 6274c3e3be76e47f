"""What a listing settles before it answers (Reconciler.reconcile_for_listing), on the fake backend."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import pytest

from mcp_server.core.execution import reconcile
from mcp_server.core.execution.jobfiles import JobFiles
from mcp_server.core.execution.run_status import Observation
from mcp_server.core.services import Services
from tests.helpers import wait_for


@pytest.fixture
def asked(fake_backend: Any, monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """The run ids the fake backend is asked to observe, in order."""
    seen: list[str] = []
    observe = fake_backend.observe

    def counted(self: Any, runs: Sequence[Any], files: Mapping[str, JobFiles]) -> dict[str, Observation]:
        seen.extend(r.id for r in runs)
        return observe(self, runs, files)

    monkeypatch.setattr(fake_backend, "observe", counted)
    return seen


def test_a_listing_records_an_ended_run_at_once_without_asking_about_the_live_ones(
    services: Services, workdir: Path, asked: list[str]
) -> None:
    live = services.runs.create(name="live", command="sleep 300", workdir=str(workdir), backend="fake")
    ending = services.runs.create(
        name="ending", command="while [ ! -f go ]; do sleep 0.02; done", workdir=str(workdir), backend="fake"
    )
    services.runs.list()  # the first listing of a process looks at every watched run
    assert set(asked) == {live.id, ending.id}
    asked.clear()
    (workdir / "go").touch()
    wait_for(lambda: services.runs.files(ending.id).exit_code.exists(), what="the exit code")
    statuses = {r.id: r.status for r in services.runs.list().runs}
    assert statuses[ending.id] == "finished" and statuses[live.id] in ("launching", "running")
    assert asked == [ending.id]  # one stat per live run, the backend asked only about the ended one
    services.runs.stop(live.id)


def test_every_watched_run_is_looked_at_again_once_the_interval_has_passed(
    services: Services, workdir: Path, asked: list[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    live = services.runs.create(name="live", command="sleep 300", workdir=str(workdir), backend="fake")
    services.runs.list()
    services.runs.list()
    assert asked == [live.id]
    monkeypatch.setattr(reconcile, "LOOK_EVERY_S", 0.0)
    services.runs.list()
    assert asked == [live.id, live.id]
    services.runs.stop(live.id)
