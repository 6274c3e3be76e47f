"""The dashboard's live feed: one store reader per process, fanned out to every open page.

Ten pages cost one poll per interval, not ten; each page gets every point of the runs it
watches exactly once, in order, and only those; the reader stops when the last page goes.
Also: the runs table's glance reads the same numbers as get_metrics.
"""

from __future__ import annotations

import json
import shlex
import sys
import time
from pathlib import Path

import anyio
import pytest

from mcp_server.core.workflow.overview import glance, metric_keys
from mcp_server.demo import train
from mcp_server.ui.feed import Broadcaster
from tests.helpers import wait_for

pytestmark = pytest.mark.anyio


def train_run(services, workdir: Path, steps: int, step_time: float) -> str:  # type: ignore[no-untyped-def]
    command = (
        f"{shlex.quote(sys.executable)} {shlex.quote(train.__file__)} --steps {steps} --step-time {step_time}"
    )
    return services.runs.create(name="feed", command=command, workdir=str(workdir)).id


async def test_ten_pages_share_one_reader_and_each_gets_every_point_once(services, workdir: Path) -> None:  # type: ignore[no-untyped-def]
    feed = Broadcaster(services.state.db_path, lambda r: services.runs.files(r).output, interval_s=0.1)
    run_id = train_run(services, workdir, steps=150, step_time=0.01)
    other = "run-20260101-000000-00000000"
    got: list[list[int]] = [[] for _ in range(10)]
    foreign: list[dict] = []

    async def page(i: int, runs: frozenset[str], stop: anyio.Event) -> None:
        async with feed.subscribe(runs) as sub:
            while not stop.is_set():
                with anyio.move_on_after(0.5):
                    message = json.loads(await sub.queue.get())
                    if i < 0:
                        foreign.append(message)
                        continue
                    got[i] += [step for step, _ in message["points"].get(run_id, {}).get("loss", [])]

    stop = anyio.Event()
    started = time.monotonic()
    async with anyio.create_task_group() as tg:
        for i in range(10):
            tg.start_soon(page, i, frozenset({run_id}), stop)
        tg.start_soon(page, -1, frozenset({other}), stop)
        await anyio.sleep(0.3)
        assert feed.subscribers == 11
        await anyio.to_thread.run_sync(lambda: wait_for(
            lambda: services.runs.load(run_id).status == "finished", timeout=60, what="the run"
        ))  # fmt: skip
        polls_at_end, elapsed = feed.polls, time.monotonic() - started
        await anyio.sleep(1.5)  # let the sidecar store the last lines and the feed pass them on
        stop.set()
    for steps in got:
        assert steps == got[0]  # every page saw the same points
    assert got[0] == sorted(set(got[0])) and got[0][-1] == 150  # in order, none twice, up to the end
    # One reader for eleven pages: polls follow the clock, not the number of pages.
    assert 0 < polls_at_end <= elapsed / 0.1 + 1
    assert all(run_id not in m["points"] for m in foreign)  # a page gets only the runs it watches
    assert any(run_id in m["changed"] for m in foreign)  # ...but hears that others changed
    await anyio.sleep(0.3)
    assert feed.subscribers == 0 and feed._task is None  # nobody listens: nobody polls


def test_the_runs_table_glance_reads_what_get_metrics_reads(services, workdir: Path) -> None:  # type: ignore[no-untyped-def]
    run_id = train_run(services, workdir, steps=80, step_time=0)
    wait_for(lambda: services.runs.load(run_id).status == "finished", timeout=60, what="the run")
    answer = services.metrics.get([run_id], ["loss"])  # get_metrics
    series = answer.runs[0].series[0]
    seen = glance(services.store, [run_id], "loss")[run_id]
    assert (seen.best, seen.best_step, seen.last, seen.count) == (
        series.best,
        series.best_step,
        series.last,
        80,
    )
    assert len(seen.spark) <= 40 and seen.spark[-1] == series.last
    assert metric_keys(services.store, [run_id])[0] == "loss"  # loss-like keys first


@pytest.mark.serial  # timing-sensitive: measured alone (see conftest)
async def test_a_followed_log_is_told_at_once_not_at_the_next_poll(services, workdir: Path) -> None:  # type: ignore[no-untyped-def]
    """The store is polled every 5 s here; a page following a run's log hears of each line
    within a fraction of that, by the file's own events (inotify)."""
    feed = Broadcaster(services.state.db_path, lambda r: services.runs.files(r).output, interval_s=5.0)
    run_id = services.runs.create(name="log", command="true", workdir=str(workdir), auto_start=False).id
    output = services.runs.files(run_id).output
    output.parent.mkdir(parents=True, exist_ok=True)
    output.write_text("")
    delays: list[float] = []
    async with feed.subscribe(frozenset({run_id})) as sub:
        await anyio.sleep(5.5)  # the first poll: the feed now follows this run's dir
        for i in range(3):
            await anyio.sleep(0.3)
            with open(output, "a") as fh:
                fh.write(f"line {i}\n")
            written = time.monotonic()
            with anyio.fail_after(4):
                while True:
                    message = json.loads(await sub.queue.get())
                    if message["logs"].get(run_id) == output.stat().st_size:
                        delays.append(time.monotonic() - written)
                        break
    assert max(delays) < 1.0, delays  # not the 5 s poll
