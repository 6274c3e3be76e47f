"""get_logs tail of a 1 GB output.log vs an in-process tail of the same file, same run.

The log is written into a real run's directory. Ours: RunService.logs(lines=100) — the code
behind get_logs (validation, the run's row, the tail read, the answer model). Baseline, in
the same process and interleaved: the plain way to read the last 100 lines of a file (seek
to the end, read 64 KB blocks backwards until 100 newlines are in hand, decode) — the work
``tail -n 100`` does, without spawning a process (which would cost the baseline ~1 ms and
flatter us). Also printed, for reference: get_logs through the MCP client (in-process)
minus a no-op tool's round trip.

Target: ratio ≤ 2 (reading only the end, whatever the file's size).
"""

from __future__ import annotations

import argparse
import os
import statistics
import time
from pathlib import Path

import anyio
from mcp import Client

from bench.common import ainterleaved, figure, interleaved, server_with_noop, summary, temp_state_dir

LINES = 100
BLOCK = 64 * 1024


def write_log(path: Path, size_bytes: int) -> None:
    line = b"step 000000 loss=0.123456 lr=0.000300 grad_norm=1.2345 tokens/s=123456.7\n"
    block = line * (4 * 1024 * 1024 // len(line))
    with open(path, "wb") as fh:
        written = 0
        while written < size_bytes:
            fh.write(block)
            written += len(block)


def plain_tail(path: Path, n: int = LINES) -> str:
    """The last ``n`` lines, read backwards a block at a time (what tail does)."""
    with open(path, "rb") as fh:
        end = os.fstat(fh.fileno()).st_size
        chunks: list[bytes] = []
        newlines, pos = 0, end
        while pos > 0 and newlines <= n:
            step = min(BLOCK, pos)
            pos -= step
            fh.seek(pos)
            chunk = fh.read(step)
            chunks.append(chunk)
            newlines += chunk.count(b"\n")
    data = b"".join(reversed(chunks))
    return b"\n".join(data.split(b"\n")[-(n + 1) :]).decode("utf-8", "replace")


async def main(size_gb: float, rounds: int) -> int:
    from mcp_server.core.services import Services

    with temp_state_dir() as state:
        sv = Services(state)
        run = sv.runs.create(name="biglog", command="true", auto_start=False)
        log = sv.runs.files(run.id).output
        log.parent.mkdir(parents=True, exist_ok=True)
        t0 = time.perf_counter()
        write_log(log, int(size_gb * 1024**3))
        print(f"wrote {log.stat().st_size / 1024**3:.2f} GiB in {time.perf_counter() - t0:.1f}s")
        assert plain_tail(log) == sv.runs.logs(run.id, lines=LINES, max_bytes=65536).text
        t = interleaved(
            {
                "tail": lambda: plain_tail(log),
                # The same work as the plain tail: room for all 100 lines (the default caps at 4 KB).
                "ours": lambda: sv.runs.logs(run.id, lines=LINES, max_bytes=65536),
            },
            rounds,
        )
        async with Client(server_with_noop(state), mode="legacy", cache=None) as c:

            async def tool() -> None:
                res = await c.call_tool("get_logs", {"run_id": run.id, "lines": LINES, "max_bytes": 65536})
                assert res.structured_content and res.structured_content["lines"] == LINES

            async def noop() -> None:
                await c.call_tool("noop")

            m = await ainterleaved({"get_logs": tool, "noop": noop}, rounds)
        sv.close()
    print(f"tail of a {size_gb:g} GB log, {LINES} lines")
    print(summary("plain in-process tail (baseline)", t["tail"]))
    print(summary("RunService.logs(lines=100)", t["ours"]))
    print(summary("get_logs via MCP", m["get_logs"]))
    print(summary("no-op tool via MCP", m["noop"]))
    ratio = statistics.median(t["ours"]) / statistics.median(t["tail"])
    mcp = (statistics.median(m["get_logs"]) - statistics.median(m["noop"])) / statistics.median(t["tail"])
    ok = figure(
        "logs_tail", f"get_logs tail of {size_gb:g} GB / an in-process tail", ratio, "≤ 2", ratio <= 2,
        f"{statistics.median(t['ours']) * 1000:.2f} vs {statistics.median(t['tail']) * 1000:.2f} ms; "
        f"via MCP minus no-op: {mcp:.2f}×",
    )  # fmt: skip
    return 0 if ok else 1


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--size-gb", type=float, default=1.0)
    parser.add_argument("--rounds", type=int, default=30)
    a = parser.parse_args()
    raise SystemExit(anyio.run(main, a.size_gb, a.rounds))
