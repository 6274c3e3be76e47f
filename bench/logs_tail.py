"""get_logs tail of a 1 GB output.log vs `tail -n 100` on the same file, same run.

The log is written into a real run's directory, then read through the get_logs tool
(in-process MCP client, so JSON-RPC framing and validation are included).
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import time

import anyio
from mcp import Client

from bench.common import summary, temp_state_dir, verdict


def write_log(path, size_bytes: int) -> None:  # type: ignore[no-untyped-def]
    line = b"step 000000 loss=0.123456 lr=0.000300 grad_norm=1.2345 tokens/s=123456.7\n"
    block = line * (4 * 1024 * 1024 // len(line))
    with open(path, "wb") as fh:
        written = 0
        while written < size_bytes:
            fh.write(block)
            written += len(block)


async def main(size_gb: float, rounds: int) -> int:
    from mcp_server.server import create_server

    with temp_state_dir() as state:
        server = create_server(state)
        async with Client(server, mode="legacy", cache=None) as c:
            res = await c.call_tool("create_run", {"name": "biglog", "command": "true", "auto_start": False})
            run = res.structured_content
            assert run is not None
            log = state / "runs" / run["id"] / "output.log"
            t0 = time.perf_counter()
            write_log(log, int(size_gb * 1024**3))
            print(f"wrote {log.stat().st_size / 1024**3:.2f} GiB in {time.perf_counter() - t0:.1f}s")
            ours: list[float] = []
            tail: list[float] = []
            for _ in range(rounds):
                t0 = time.perf_counter()
                subprocess.run(["tail", "-n", "100", str(log)], capture_output=True, check=True)
                tail.append(time.perf_counter() - t0)
                t0 = time.perf_counter()
                # The same work as tail -n 100: room for all 100 lines (the default caps at 4 KB).
                res = await c.call_tool("get_logs", {"run_id": run["id"], "lines": 100, "max_bytes": 65536})
                ours.append(time.perf_counter() - t0)
                assert res.structured_content and res.structured_content["lines"] == 100
    ratio = statistics.median(ours) / statistics.median(tail)
    print("tail of a 1 GB log, 100 lines")
    print(summary("tail -n 100 (subprocess)", tail))
    print(summary("get_logs(lines=100) via MCP", ours))
    print(verdict("median ratio get_logs / tail", ratio, "≈1 (reads only the end)", ratio < 5))
    return 0


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--size-gb", type=float, default=1.0)
    parser.add_argument("--rounds", type=int, default=30)
    a = parser.parse_args()
    raise SystemExit(anyio.run(main, a.size_gb, a.rounds))
