"""Slurm: submit → command running, create_run (MCP over stdio) vs a raw `sbatch` of the same command.

Both commands stamp time.time() when they start, so the figure is submit → the user's
command actually running on the node. Slurm starts jobs on its own ~1 s ticks, so one
submission's latency is mostly where it fell between two ticks; timed one after the
other, the two series would compare tick phases, not submission paths. So each trial
submits both at the same instant to an idle node with room for both (which one is issued
first alternates), and they meet the same tick: what create_run adds (the MCP call, the
run's files, the sidecar) shows as how often it misses that tick. Target: ratio of the
medians ≤ 1.2. Also prints how long until get_run *reports* running (that depends on
RESEARCH_MCP_SLURM_POLL_S).
"""

from __future__ import annotations

import argparse
import random
import shlex
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import anyio
from mcp import Client, StdioServerParameters

from bench.common import figure, summary, temp_state_dir
from bench.launch_latency import STAMP, wait_file


def wait_idle() -> None:
    """Until no job is left and the node is idle, then a random pause (a random tick phase)."""
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        queue = subprocess.run(["squeue", "-h"], capture_output=True, text=True).stdout
        node = subprocess.run(["sinfo", "-h", "-N", "-o", "%T"], capture_output=True, text=True).stdout
        if not queue.strip() and node.strip() == "idle":
            break
        time.sleep(0.05)
    time.sleep(1 + random.random())


def stamp_command(stamp: Path) -> str:
    return f"{shlex.quote(sys.executable)} -c {shlex.quote(STAMP)} {shlex.quote(str(stamp))}"


async def trial(c: Client, workdir: Path, i: int) -> tuple[float, float, float]:
    """Submit both at once; seconds from then to each command starting, and to get_run saying so."""
    raw_stamp, our_stamp = workdir / f"raw-{i}", workdir / f"ours-{i}"
    sbatch = ["sbatch", "--parsable", "--output=/dev/null", f"--chdir={workdir}", "--wrap"]
    run_ids: list[str] = []

    async def submit_raw() -> None:
        await anyio.run_process([*sbatch, stamp_command(raw_stamp)])

    async def submit_ours() -> None:
        res = await c.call_tool(
            "create_run",
            {
                "name": f"b{i}",
                "command": stamp_command(our_stamp),
                "workdir": str(workdir),
                "backend": "slurm",
            },
        )
        assert not res.is_error, res.content
        run_ids.append(res.structured_content["id"])  # type: ignore[index]

    first, second = (submit_raw, submit_ours) if i % 2 else (submit_ours, submit_raw)
    t0 = time.time()
    async with anyio.create_task_group() as tg:
        tg.start_soon(first)
        tg.start_soon(second)
    raw_started = await anyio.to_thread.run_sync(wait_file, raw_stamp, 60)
    our_started = await anyio.to_thread.run_sync(wait_file, our_stamp, 60)
    while True:
        got = await c.call_tool("get_run", {"run_id": run_ids[0]})
        if got.structured_content["status"] in ("running", "finished"):  # type: ignore[index]
            return raw_started - t0, our_started - t0, time.time() - t0
        await anyio.sleep(0.05)


async def main(n: int, poll_s: str) -> int:
    raw: list[float] = []
    ours: list[float] = []
    seen: list[float] = []
    with temp_state_dir() as state, tempfile.TemporaryDirectory() as work:
        params = StdioServerParameters(
            command=sys.executable,
            args=["-m", "mcp_server", "serve", "--state-dir", str(state)],
            env={"RESEARCH_MCP_SLURM_POLL_S": poll_s},
        )
        async with Client(params, mode="legacy", cache=None) as c:
            for i in range(n + 1):  # trial 0 warms both paths up
                await anyio.to_thread.run_sync(wait_idle)
                r, o, s = await trial(c, Path(work), i)
                if i:
                    raw.append(r)
                    ours.append(o)
                    seen.append(s)
    ratio = statistics.median(ours) / statistics.median(raw)
    print(f"Slurm submit → command running (n={n} paired trials, both submitted at once)")
    print(summary("raw sbatch --wrap", raw))
    print(summary("create_run(backend=slurm) via MCP", ours))
    print(summary(f"get_run reports running (poll {poll_s}s)", seen))
    figure("slurm_submit", "submit → running: create_run / raw sbatch", ratio, "≤ 1.2", ratio <= 1.2)
    return 0 if ratio <= 1.2 else 1


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("-n", type=int, default=20)
    parser.add_argument("--poll-s", default="6")
    a = parser.parse_args()
    raise SystemExit(anyio.run(main, a.n, a.poll_s))
