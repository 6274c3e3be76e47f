"""What a listing settles before it answers (Reconciler.reconcile_for_listing)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import pytest

from mcp_server.core.backends.local import LocalTmuxBackend
from mcp_server.core.execution import reconcile
from mcp_server.core.execution.jobfiles import JobFiles
from mcp_server.core.execution.run_status import Observation
from mcp_server.core.services import Services
from tests.helpers import wait_for


def asked_of(backend: type[Any], monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """The run ids ``backend`` is asked to observe, in order."""
    seen: list[str] = []
    observe = backend.observe

    def counted(self: Any, runs: Sequence[Any], files: Mapping[str, JobFiles]) -> dict[str, Observation]:
        seen.extend(r.id for r in runs)
        return observe(self, runs, files)

    monkeypatch.setattr(backend, "observe", counted)
    return seen


def test_a_listing_records_an_ended_run_at_once_without_asking_about_the_live_ones(
    services: Services, workdir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    asked = asked_of(LocalTmuxBackend, monkeypatch)
    live = services.runs.create(name="live", command="sleep 300", workdir=str(workdir))
    ending = services.runs.create(
        name="ending", command="while [ ! -f go ]; do sleep 0.02; done", workdir=str(workdir)
    )
    services.runs.list()  # the first listing of a process looks at every watched run
    assert {live.id, ending.id} <= set(asked)
    asked.clear()
    (workdir / "go").touch()
    wait_for(lambda: services.runs.files(ending.id).exit_code.exists(), what="the exit code")
    statuses = {r.id: r.status for r in services.runs.list().runs}
    assert statuses[ending.id] == "finished" and statuses[live.id] in ("launching", "running")
    # One stat per live run: the backend was asked at most about the ended one (its sidecar
    # may have recorded the end first), never about the live one.
    assert live.id not in asked and set(asked) <= {ending.id}
    monkeypatch.setattr(reconcile, "LOOK_EVERY_S", 0.0)  # the interval has passed
    services.runs.list()
    assert live.id in asked
    services.runs.stop(live.id)


def test_a_run_no_sidecar_watches_is_looked_at_on_every_listing(
    fake_backend: Any, services: Services, workdir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    asked = asked_of(fake_backend, monkeypatch)
    live = services.runs.create(name="live", command="sleep 300", workdir=str(workdir), backend="fake")
    services.runs.list()
    services.runs.list()
    assert asked == [live.id, live.id]
    services.runs.stop(live.id)
