"""The event feed and wait_for_events in core: cursors, filters, waiting, other writers."""

import textwrap
import time
from pathlib import Path

import anyio
import pytest

from mcp_server.core.errors import InvalidInput
from mcp_server.core.monitoring.alerts import raise_alert
from mcp_server.core.monitoring.events import EventFeed, wait_for_events
from mcp_server.core.services import Services
from tests.helpers import PYTHON

pytestmark = pytest.mark.anyio

_ALERT_FROM_ANOTHER_PROCESS = textwrap.dedent(
    """
    import sys
    from mcp_server.core.monitoring.alerts import raise_alert
    from mcp_server.core.services import Services
    sv = Services(sys.argv[1])
    with sv.store.write() as s:
        raise_alert(s, run_id=sys.argv[2], kind="rule", severity="warning", message="loss is NaN",
                    signature="nan")
    """
)


def alert(services: Services, run_id: str | None, signature: str) -> None:
    with services.store.write() as s:
        raise_alert(s, run_id=run_id, kind="rule", severity="warning", message=signature, signature=signature)


def stopped_run(services: Services, workdir: Path, name: str) -> str:
    run = services.runs.create(name=name, command="true", workdir=str(workdir), auto_start=False)
    services.runs.stop(run.id)  # ready → stopped: one terminal run_status event
    return run.id


def feed_of(services: Services) -> EventFeed:
    return EventFeed(services.state.db_path)


async def test_reading_after_a_cursor_filters_by_kind_and_run(services: Services, workdir: Path) -> None:
    a = stopped_run(services, workdir, "a")
    b = stopped_run(services, workdir, "b")
    alert(services, a, "first")
    feed = feed_of(services)
    events, cursor, more = feed.read(0)
    assert [(e.kind, e.run_id) for e in events] == [("run_ended", a), ("run_ended", b), ("alert", a)]
    assert cursor == feed.latest_id() == events[-1].id and not more
    assert events[0].status == "stopped" and events[0].run_name == "a" and events[2].message == "first"
    only_b, _, _ = feed.read(0, run_ids=[b])
    assert [e.run_id for e in only_b] == [b]
    alerts, cursor_after_alerts, _ = feed.read(0, kinds=["alert"])
    assert [e.kind for e in alerts] == ["alert"] and cursor_after_alerts == cursor
    # the cursor moved past the non-matching events: nothing is re-read or repeated
    assert feed.read(cursor) == ([], cursor, False)


async def test_a_full_page_says_more(services: Services) -> None:
    for i in range(130):
        alert(services, None, f"sig-{i}")
    feed = feed_of(services)
    first, cursor, more = feed.read(0, limit=100)
    assert len(first) == 100 and more and cursor == first[-1].id
    rest, _, more = feed.read(cursor, limit=100)
    assert len(rest) == 30 and not more
    assert {e.id for e in first}.isdisjoint(e.id for e in rest)


async def test_wait_returns_at_once_for_existing_events_from_cursor_0(
    services: Services, workdir: Path
) -> None:
    run_id = stopped_run(services, workdir, "done")
    t0 = time.monotonic()
    batch = await wait_for_events(feed_of(services), cursor=0, timeout_s=30)
    assert time.monotonic() - t0 < 5 and not batch.timed_out
    assert [e.run_id for e in batch.events] == [run_id]


async def test_wait_from_now_sees_an_alert_written_by_another_process(
    services: Services, workdir: Path
) -> None:
    old = stopped_run(services, workdir, "old")  # before the call: not reported with cursor=None
    reports: list[tuple[float, float, str]] = []

    async def progress(done: float, total: float, message: str) -> None:
        reports.append((done, total, message))

    async def write_later() -> None:
        await anyio.sleep(0.5)
        proc = await anyio.run_process(
            [PYTHON, "-c", _ALERT_FROM_ANOTHER_PROCESS, str(services.state.root), old], check=False
        )
        assert proc.returncode == 0, proc.stderr.decode()

    async with anyio.create_task_group() as tg:
        tg.start_soon(write_later)
        batch = await wait_for_events(feed_of(services), cursor=None, timeout_s=30, progress=progress)
    assert [(e.kind, e.message) for e in batch.events] == [("alert", "loss is NaN")]
    assert reports and reports[0][1] == 30 and "waiting for run_ended, alert" in reports[0][2]
    again = await wait_for_events(feed_of(services), cursor=batch.cursor, timeout_s=1)
    assert again.timed_out and again.events == [] and again.cursor == batch.cursor


async def test_wait_settles_run_endings_itself(
    fake_backend: object, services: Services, workdir: Path
) -> None:
    # No sidecar records this ending (the fake backend runs none): the waiter's settle does.
    run = services.runs.create(name="quick", command="sleep 0.2", workdir=str(workdir), backend="fake")
    batch = await wait_for_events(
        feed_of(services), cursor=0, timeout_s=20, run_ids=[run.id], settle=services.settler.tick
    )
    assert [(e.status, e.exit_code) for e in batch.events] == [("finished", 0)]


async def test_without_a_cursor_a_run_that_already_ended_is_reported_at_once(
    services: Services, workdir: Path
) -> None:
    # The agent's first wait leaves the cursor out, but its run may have ended already.
    ended = stopped_run(services, workdir, "ended-before-the-wait")
    other = stopped_run(services, workdir, "someone-else")
    t0 = time.monotonic()
    batch = await wait_for_events(feed_of(services), cursor=None, timeout_s=30, run_ids=[ended])
    assert time.monotonic() - t0 < 5 and not batch.timed_out
    assert [(e.run_id, e.status) for e in batch.events] == [(ended, "stopped")]
    # The returned cursor continues after it: the other run's ending is not this waiter's news.
    again = await wait_for_events(feed_of(services), cursor=batch.cursor, timeout_s=1, run_ids=[ended])
    assert again.timed_out and again.events == []
    # Without run_ids, no cursor still means "from now on": neither ending is reported.
    now = await wait_for_events(feed_of(services), cursor=None, timeout_s=1)
    assert now.timed_out and now.events == [] and now.cursor == feed_of(services).latest_id()
    # A run with no events yet is waited for from now on, as before.
    fresh = services.runs.create(name="fresh", command="true", workdir=str(workdir), auto_start=False)
    idle = await wait_for_events(feed_of(services), cursor=None, timeout_s=1, run_ids=[fresh.id])
    assert idle.timed_out and idle.cursor == feed_of(services).latest_id()
    # Several runs: the earliest recorded event of any of them is where the wait starts.
    both = await wait_for_events(feed_of(services), cursor=None, timeout_s=1, run_ids=[other, ended])
    assert [e.run_id for e in both.events] == [ended, other]


async def test_progress_is_reported_periodically_while_nothing_arrives(services: Services) -> None:
    reports: list[tuple[float, float, str]] = []

    async def progress(done: float, total: float, message: str) -> None:
        reports.append((done, total, message))

    batch = await wait_for_events(
        feed_of(services), cursor=None, timeout_s=1.5, progress=progress, poll_s=0.05, progress_every_s=0.3
    )
    assert batch.timed_out and batch.waited_s >= 1.5
    done = [r[0] for r in reports]
    assert len(done) >= 3, reports
    assert done == sorted(set(done)) and done[0] < 0.5 and done[-1] <= 1.5  # strictly increasing, in range
    assert all(total == 1.5 and "waiting for run_ended, alert" in message for _, total, message in reports)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"timeout_s": 300}, "above the cap of 240 s"),
        ({"timeout_s": 0.5}, "below 1 s"),
        ({"cursor": -1}, "cursor=-1 is not valid"),
        ({"cursor": 10**6}, "ahead of the event feed"),
        ({"kinds": ["run_done"]}, "valid: run_ended, run_status, alert"),
        ({"run_ids": ["../x"]}, "not a valid run id"),
    ],
)
async def test_bad_waits_are_refused(services: Services, kwargs: dict, message: str) -> None:
    args = {"cursor": None, "timeout_s": 5, **kwargs}
    with pytest.raises(InvalidInput, match=message):
        await wait_for_events(feed_of(services), **args)


async def test_a_missing_store_is_an_empty_feed(tmp_path: Path) -> None:
    feed = EventFeed(tmp_path / "nothing.db")
    assert feed.latest_id() == 0 and feed.read(0) == ([], 0, False)
