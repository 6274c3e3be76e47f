"""list_runs first page with 10,000 runs in the store (in-process MCP client).

Rows are bulk-inserted straight into the store (creating 10,000 real runs would measure
tmux, not the query). Baseline in the same run: a raw sqlite3 SELECT of the same page.
"""

from __future__ import annotations

import argparse
import sqlite3
import statistics
import time

import anyio
from mcp import Client

from bench.common import summary, temp_state_dir, verdict


def seed(db, n: int) -> None:  # type: ignore[no-untyped-def]
    from mcp_server.core.models import Run
    from mcp_server.core.store import Store

    store = Store(db)
    t = time.time()
    statuses = ["finished", "failed", "stopped", "finished"]
    common = dict(command="python train.py", workdir="/tmp", status_reason="exited", env_keys=[], options={})
    rows = [
        dict(id=f"run-20260101-000000-{i:08x}", name=f"sweep-{i % 37}", status=statuses[i % 4],
             created_at=t + i, updated_at=t + i, params={"lr": 0.001 * (i % 10)}, backend="local", gpus=0,
             **common)
        for i in range(n)
    ]  # fmt: skip
    with store.write() as s:
        s.connection().execute(Run.__table__.insert(), rows)  # type: ignore[attr-defined]
    store.close()


async def main(n: int, rounds: int) -> int:
    from mcp_server.server import create_server

    with temp_state_dir() as state:
        server = create_server(state)
        async with Client(server, mode="legacy", cache=None) as c:
            await c.call_tool("list_runs", {})
            seed(state / "research.db", n)
            raw = sqlite3.connect(state / "research.db")
            ours: list[float] = []
            base: list[float] = []
            for _ in range(rounds):
                t0 = time.perf_counter()
                raw.execute("SELECT * FROM runs ORDER BY pk DESC LIMIT 50").fetchall()
                raw.execute("SELECT count(*) FROM runs").fetchone()
                base.append(time.perf_counter() - t0)
                t0 = time.perf_counter()
                res = await c.call_tool("list_runs", {"limit": 50})
                ours.append(time.perf_counter() - t0)
                assert res.structured_content and res.structured_content["total"] == n
                assert len(res.structured_content["runs"]) == 50
    print(f"list_runs first page (50 rows) with {n} runs in the store")
    print(summary("raw sqlite3 SELECT + count", base))
    print(summary("list_runs via MCP", ours))
    med = statistics.median(ours)
    print(verdict("median list_runs first page (s)", med, "< 0.1 s", med < 0.1))
    return 0


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("-n", type=int, default=10_000)
    parser.add_argument("--rounds", type=int, default=30)
    a = parser.parse_args()
    raise SystemExit(anyio.run(main, a.n, a.rounds))
