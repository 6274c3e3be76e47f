"""A run's exit → wait_for_events returning its run_ended event, over stdio; p95 over N runs.

The exit time is the mtime of the run's exit_code file (written by the launch script the
moment the command ends), so the figure covers settling the run, the event feed poll and
the tool's reply. Same-run baseline, interleaved: the same exit observed by a client that
polls list_runs every 0.1 s (what an agent would do without wait_for_events, at a cost of
ten tool calls a second; list_runs settles what can change and answers at once, where
get_run would also wait for the sidecar's last lines). Target: p95 < 1 s; the figure is the
ratio of the p95s.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import anyio
from mcp import Client, StdioServerParameters

from bench.common import figure, pct, summary, temp_state_dir


async def call(c: Client, tool: str, **args: Any) -> dict[str, Any]:
    res = await c.call_tool(tool, args)
    assert not res.is_error and res.structured_content is not None, res.content
    return res.structured_content


async def gated_run(c: Client, workdir: Path, name: str) -> tuple[dict[str, Any], Path]:
    gate = workdir / f"gate-{name}"
    run = await call(
        c, "create_run", name=name, command=f"while [ ! -f {gate.name} ]; do sleep 0.01; done",
        workdir=str(workdir), backend="local",
    )  # fmt: skip
    while (run := await call(c, "get_run", run_id=run["id"]))["status"] != "running":
        await anyio.sleep(0.05)
    return run, gate  # get_run's record: it names the run's dir


def exit_time(run: dict[str, Any]) -> float:
    return (Path(run["run_dir"]) / "exit_code").stat().st_mtime


async def by_waiting(c: Client, workdir: Path, name: str, cursor: int) -> tuple[float, int]:
    run, gate = await gated_run(c, workdir, name)
    result: dict[str, Any] = {}

    async def wait() -> None:
        while True:
            batch = await call(c, "wait_for_events", cursor=cursor, timeout_s=60, run_ids=[run["id"]])
            if batch["events"]:
                result.update(batch, at=time.time())
                return

    async with anyio.create_task_group() as tg:
        tg.start_soon(wait)
        await anyio.sleep(0.3)
        gate.touch()
    return result["at"] - exit_time(run), result["cursor"]


async def by_polling(c: Client, workdir: Path, name: str) -> float:
    run, gate = await gated_run(c, workdir, name)
    gate.touch()
    while True:
        page = await call(c, "list_runs", limit=5)
        if next(r for r in page["runs"] if r["id"] == run["id"])["status"] != "running":
            return time.time() - exit_time(run)
        await anyio.sleep(0.1)


async def main(n: int) -> int:
    waited: list[float] = []
    polled: list[float] = []
    with temp_state_dir() as state, tempfile.TemporaryDirectory() as work:
        params = StdioServerParameters(
            command=sys.executable, args=["-m", "mcp_server", "serve", "--state-dir", str(state)]
        )
        async with Client(params, mode="legacy", cache=None) as c:
            cursor = (await call(c, "wait_for_events", timeout_s=1))["cursor"]
            for i in range(n):
                latency, cursor = await by_waiting(c, Path(work), f"wait{i}", cursor)
                waited.append(latency)
                polled.append(await by_polling(c, Path(work), f"poll{i}"))
    print(f"run exit → the client knows, n={n} each, interleaved")
    print(summary("wait_for_events", waited))
    print(summary("baseline: list_runs every 0.1 s", polled))
    p95 = pct(waited, 95)
    ok = figure(
        "wait_latency", "wait_for_events p95 / polling list_runs every 0.1 s", p95 / pct(polled, 95),
        "p95 < 1 s absolute", p95 < 1.0, f"p95 {p95 * 1000:.0f} ms vs {pct(polled, 95) * 1000:.0f} ms",
    )  # fmt: skip
    return 0 if ok else 1


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("-n", type=int, default=20)
    raise SystemExit(anyio.run(main, parser.parse_args().n))
