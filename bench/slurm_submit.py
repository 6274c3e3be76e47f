"""Slurm: submit → command running, create_run (MCP over stdio) vs a raw `sbatch` of the same command.

Both commands stamp time.time() when they start, so the figure is submit → the user's
command actually running on the node. Alternated in one run; target ratio ≤ 1.2. Also
prints how long until get_run *reports* running (depends on RESEARCH_MCP_SLURM_POLL_S).
"""

from __future__ import annotations

import argparse
import shlex
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import anyio
from mcp import Client, StdioServerParameters

from bench.common import summary, temp_state_dir, verdict
from bench.launch_latency import STAMP, wait_file


def wait_idle(job_id: str) -> None:
    """Let a job leave the node before the next submission, so each one meets an idle node
    (back-to-back jobs would otherwise measure the previous job's clean-up, not submission)."""
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        out = subprocess.run(["squeue", "-h", "-j", job_id, "-o", "%T"], capture_output=True, text=True)
        if out.stdout.strip() in ("", "COMPLETED", "FAILED", "CANCELLED"):
            return
        time.sleep(0.05)


async def main(n: int, poll_s: str) -> int:
    ours: list[float] = []
    raw: list[float] = []
    seen: list[float] = []
    with temp_state_dir() as state, tempfile.TemporaryDirectory() as work:
        workdir = Path(work)
        params = StdioServerParameters(
            command=sys.executable,
            args=["-m", "mcp_server", "serve", "--state-dir", str(state)],
            env={"RESEARCH_MCP_SLURM_POLL_S": poll_s},
        )
        async with Client(params, mode="legacy", cache=None) as c:
            for i in range(n + 1):
                stamp = workdir / f"raw-{i}"
                cmd = f"{shlex.quote(sys.executable)} -c {shlex.quote(STAMP)} {shlex.quote(str(stamp))}"
                t0 = time.time()
                job = subprocess.run(
                    ["sbatch", "--parsable", "--output=/dev/null", f"--chdir={workdir}", "--wrap", cmd],
                    check=True, capture_output=True, text=True,
                ).stdout.strip()  # fmt: skip
                started = await anyio.to_thread.run_sync(wait_file, stamp, 60)
                if i:
                    raw.append(started - t0)
                await anyio.to_thread.run_sync(wait_idle, job)

                stamp = workdir / f"ours-{i}"
                cmd = f"{shlex.quote(sys.executable)} -c {shlex.quote(STAMP)} {shlex.quote(str(stamp))}"
                t0 = time.time()
                res = await c.call_tool(
                    "create_run",
                    {"name": f"b{i}", "command": cmd, "workdir": str(workdir), "backend": "slurm"},
                )
                assert not res.is_error, res.content
                run = res.structured_content
                assert run is not None
                run_id = run["id"]
                started = await anyio.to_thread.run_sync(wait_file, stamp, 60)
                if i:
                    ours.append(started - t0)
                while True:
                    got = await c.call_tool("get_run", {"run_id": run_id})
                    if got.structured_content["status"] in ("running", "finished"):  # type: ignore[index]
                        break
                    await anyio.sleep(0.05)
                if i:
                    seen.append(time.time() - t0)
                await anyio.to_thread.run_sync(wait_idle, run["backend_ref"].split(":")[1])
    ratio = statistics.median(ours) / statistics.median(raw)
    print(f"Slurm submit → command running (n={n}, alternating)")
    print(summary("raw sbatch --wrap", raw))
    print(summary("create_run(backend=slurm) via MCP", ours))
    print(summary(f"get_run reports running (poll {poll_s}s)", seen))
    print(verdict("median ratio create_run / sbatch", ratio, "≤ 1.2", ratio <= 1.2))
    return 0 if ratio <= 1.2 else 1


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("-n", type=int, default=10)
    parser.add_argument("--poll-s", default="6")
    a = parser.parse_args()
    raise SystemExit(anyio.run(main, a.n, a.poll_s))
