"""Cold start to the first tool answer: spawn → initialize → first tools/call answered, over stdio.

research-mcp answers its first list_runs (an agent's usual first look) vs a bare MCPServer
(bench/bare_server.py: one tool, nothing else) answering its first call; both measured
alternately in one run so machine noise hits both alike. Median of --rounds each.

State dirs, each measured separately (the first is the target):
- a project with history: a store holding 200 ended runs (nothing running);
- a new project: no state dir yet;
- for information, a project with a run going: the first answer must settle that run first,
  which needs the services (and their imports).

Also printed for information: spawn → initialize → tools/list, the older figure.
Target: first answer ≤ 1.3× the bare server's.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import sqlite3
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import anyio
from mcp import Client, StdioServerParameters

from bench.common import figure, summary, temp_state_dir

HERE = Path(__file__).resolve().parent


async def first_answer(params: StdioServerParameters, tool: str, args: dict[str, Any]) -> float:
    t0 = time.perf_counter()
    async with Client(params, mode="legacy", cache=None) as c:
        res = await c.call_tool(tool, args)
        assert not res.is_error, res.content
        elapsed = time.perf_counter() - t0
    return elapsed


async def tools_list(params: StdioServerParameters) -> float:
    t0 = time.perf_counter()
    async with Client(params, mode="legacy", cache=None) as c:
        assert (await c.list_tools()).tools
        elapsed = time.perf_counter() - t0
    return elapsed


def history(state: Path, n: int) -> None:
    """A store made by research-mcp itself, then ``n`` ended runs."""
    from mcp_server.core.services import Services

    Services(state).close()
    t = time.time() - n
    with contextlib.closing(sqlite3.connect(state / "research.db")) as con, con:
        con.executemany(
            "INSERT INTO runs (id, name, command, workdir, status, status_reason, exit_code, backend, gpus, "
            "params, env_keys, options, created_at, updated_at, started_at, ended_at) VALUES "
            "(?, ?, 'python train.py', '/tmp', 'finished', 'command exited with code 0', 0, 'local', 0, ?, "
            "'[]', '{}', ?, ?, ?, ?)",
            [
                (f"run-20260101-000000-{i:08x}", f"lr-{i}", json.dumps({"lr": i}), t + i, t + i, t + i,
                 t + i + 9)
                for i in range(n)
            ],
        )


def serve(state: Path) -> StdioServerParameters:
    args = ["-m", "mcp_server", "serve", "--state-dir", str(state)]
    return StdioServerParameters(command=sys.executable, args=args)


async def compare(
    ours: StdioServerParameters, bare: StdioServerParameters, rounds: int
) -> tuple[float, float]:
    await first_answer(ours, "list_runs", {})  # warm the page cache
    t_bare: list[float] = []
    t_ours: list[float] = []
    for _ in range(rounds):
        t_bare.append(await first_answer(bare, "ping", {"x": 1}))
        t_ours.append(await first_answer(ours, "list_runs", {}))
    print(summary("  bare MCPServer: first answer", t_bare))
    print(summary("  research-mcp: first list_runs", t_ours))
    return statistics.median(t_ours), statistics.median(t_bare)


async def main(rounds: int) -> int:
    os.environ.setdefault("RESEARCH_MCP_CLUSTER_TYPE", "cpu_only")
    bare = StdioServerParameters(command=sys.executable, args=[str(HERE / "bare_server.py")])
    ok = True
    with temp_state_dir() as state:
        history(state, 200)
        print("a project with history (200 ended runs):")
        ours_s, bare_s = await compare(serve(state), bare, rounds)
        ok &= figure(
            "cold_start", "first tool answer, project with history / bare MCPServer", ours_s / bare_s,
            "≤ 1.3", ours_s / bare_s <= 1.3, f"{ours_s * 1000:.0f} vs {bare_s * 1000:.0f} ms",
        )  # fmt: skip
        listing = [await tools_list(serve(state)) for _ in range(max(3, rounds // 3))]
        bare_listing = [await tools_list(bare) for _ in range(max(3, rounds // 3))]
        print(f"  (spawn → tools/list: {statistics.median(listing) * 1000:.0f} ms vs bare "
              f"{statistics.median(bare_listing) * 1000:.0f} ms)")  # fmt: skip
    with tempfile.TemporaryDirectory() as tmp:
        print("a new project (no state dir yet):")
        fresh = Path(tmp) / "state"
        t_bare, t_ours = [], []
        for i in range(rounds):
            t_bare.append(await first_answer(bare, "ping", {"x": 1}))
            t_ours.append(await first_answer(serve(fresh.with_name(f"state{i}")), "list_runs", {}))
        ratio = statistics.median(t_ours) / statistics.median(t_bare)
        ok &= figure(
            "cold_start", "first tool answer, new project / bare MCPServer", ratio, "≤ 1.3", ratio <= 1.3,
            f"{statistics.median(t_ours) * 1000:.0f} vs {statistics.median(t_bare) * 1000:.0f} ms",
        )  # fmt: skip
    with temp_state_dir() as state, tempfile.TemporaryDirectory() as work:
        from mcp_server.core.services import Services

        sv = Services(state)
        run = sv.runs.create(name="going", command="sleep 300", workdir=work, backend="local")
        print("for information, a project with a run going (the first answer settles it first):")
        ours_s, bare_s = await compare(serve(state), bare, max(3, rounds // 3))
        print(f"  ratio {ours_s / bare_s:.2f}")
        sv.runs.stop(run.id)
        sv.close()
    return 0 if ok else 1


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--rounds", type=int, default=15)
    a = parser.parse_args()
    raise SystemExit(anyio.run(main, a.rounds))
