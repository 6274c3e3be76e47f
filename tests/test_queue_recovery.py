"""A queued run whose admission a crash lost still runs: the dispatcher queues it again."""

from __future__ import annotations

from pathlib import Path

import pytest
from sqlalchemy import delete, update

from mcp_server.core.services import Services
from mcp_server.core.storage.models import QueueEntry, Run
from tests.helpers import wait_for


@pytest.fixture
def one_slot(monkeypatch: pytest.MonkeyPatch, state_dir: Path):  # type: ignore[no-untyped-def]
    monkeypatch.setenv("RESEARCH_MCP_CPU_RUN_LIMIT", "1")
    sv = Services(state_dir)
    yield sv
    sv.close()


def test_a_launching_run_without_its_queue_entry_or_admission_is_queued_again(
    one_slot: Services, workdir: Path
) -> None:
    services = one_slot
    first = services.runs.create(name="first", command="sleep 2", workdir=str(workdir))
    second = services.runs.create(name="second", command="echo second ran", workdir=str(workdir))
    wait_for(lambda: services.runs.load(second.id).status == "queued", what="the second run to wait")
    # What a server killed between admitting the run and writing its admission.env leaves
    # once its entry was reclaimed (its launch script started after the launch grace).
    with services.store.write() as s:
        s.execute(delete(QueueEntry).where(QueueEntry.run_id == second.id))
        s.execute(update(Run).where(Run.id == second.id).values(status="launching"))
    assert not services.runs.files(second.id).admission_env.exists()

    def ended() -> bool:
        services.settler.tick()
        return services.runs.load(second.id).status in {"finished", "failed", "lost", "stopped"}

    wait_for(ended, 60, what="the second run to end")
    done = services.runs.load(second.id)
    assert (done.status, done.exit_code) == ("finished", 0)
    assert services.runs.logs(second.id).text == "second ran\n"
    assert services.runs.load(first.id).status == "finished"
