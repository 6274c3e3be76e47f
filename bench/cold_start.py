"""Cold start: spawn → initialize → tools/list over stdio, research-mcp vs a bare MCPServer.

Measured alternately in one run so machine noise hits both equally. Target: ratio ≤ 1.3.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import anyio
from mcp import Client, StdioServerParameters

from bench.common import summary, temp_state_dir, verdict

HERE = Path(__file__).resolve().parent


async def once(params: StdioServerParameters, mode: str) -> float:
    t0 = time.perf_counter()
    async with Client(params, mode=mode, cache=None) as c:  # type: ignore[arg-type]
        tools = await c.list_tools()
        assert tools.tools
    return time.perf_counter() - t0


async def main(rounds: int, mode: str) -> int:
    with temp_state_dir() as state:
        ours = StdioServerParameters(
            command=sys.executable, args=["-m", "mcp_server", "serve", "--state-dir", str(state)]
        )
        bare = StdioServerParameters(command=sys.executable, args=[str(HERE / "bare_server.py")])
        await once(ours, mode)  # warm the page cache and create the state dir once
        await once(bare, mode)
        t_ours: list[float] = []
        t_bare: list[float] = []
        for _ in range(rounds):
            t_bare.append(await once(bare, mode))
            t_ours.append(await once(ours, mode))
    ratio = statistics.median(t_ours) / statistics.median(t_bare)
    print(f"cold start, mode={mode}: spawn → initialize → tools/list")
    print(summary("bare MCPServer (1 tool)", t_bare))
    print(summary("research-mcp serve", t_ours))
    print(verdict("median ratio research-mcp / bare", ratio, "≤ 1.3", ratio <= 1.3))
    return 0 if ratio <= 1.3 else 1


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--rounds", type=int, default=15)
    parser.add_argument("--mode", default="legacy", choices=["legacy", "auto"])
    a = parser.parse_args()
    raise SystemExit(anyio.run(main, a.rounds, a.mode))
