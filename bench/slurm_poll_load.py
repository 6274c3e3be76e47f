"""Scheduler calls per minute with 50 active Slurm runs being watched.

50 runs are submitted (on a small node most stay PENDING, which is still active), then
for --seconds two server processes answer list_runs every 0.5 s while every run's sidecar
watches its run. squeue/sacct/scontrol are wrapped by a PATH shim that counts each
invocation across all processes. Same-run baseline: a bare poller — one `squeue` for all of
the user's jobs every RESEARCH_MCP_SLURM_POLL_S, the least any watcher of 50 jobs does —
run through the same counting shim over the same window. Figure: calls per minute, ours /
the bare poller's. Target: ≤ 12 calls per minute (the default poll of 6 s allows 10).
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import anyio
from mcp import Client, StdioServerParameters

from bench.common import figure, temp_state_dir

POLL_S = float(os.environ.get("RESEARCH_MCP_SLURM_POLL_S", "6"))


async def bare_poller(bin_dir: Path, seconds: float) -> None:
    """One squeue for every job of this user per poll interval (tagged, counted apart)."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        await anyio.run_process(
            [str(bin_dir / "squeue"), "-h", "-u", os.environ.get("USER", "root")],
            check=False, env={**os.environ, "BENCH_CALLER": "bare"},
        )  # fmt: skip
        await anyio.sleep(POLL_S)


def make_shim(bin_dir: Path, log: Path) -> None:
    bin_dir.mkdir()
    for tool in ("squeue", "sacct", "scontrol", "sbatch", "scancel"):
        real = shutil.which(tool)
        if real:
            (bin_dir / tool).write_text(
                f'#!/bin/sh\necho "{tool} $(date +%s.%N) ${{BENCH_CALLER:-ours}}" >> "{log}"\n'
                f'exec {real} "$@"\n'
            )
            (bin_dir / tool).chmod(0o755)


async def watch(state: Path, env: dict[str, str], seconds: float) -> int:
    params = StdioServerParameters(
        command=sys.executable, args=["-m", "mcp_server", "serve", "--state-dir", str(state)], env=env
    )
    calls = 0
    async with Client(params, mode="legacy", cache=None) as c:
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            res = await c.call_tool("list_runs", {"limit": 100})
            assert not res.is_error, res.content
            calls += 1
            await anyio.sleep(0.5)
    return calls


async def main(n_runs: int, seconds: float) -> int:
    with temp_state_dir() as state, tempfile.TemporaryDirectory() as tmp:
        log = Path(tmp) / "calls.log"
        make_shim(Path(tmp) / "bin", log)
        os.environ["PATH"] = f"{tmp}/bin:{os.environ['PATH']}"
        env = {"PATH": os.environ["PATH"]}
        from mcp_server.core.services import Services

        sv = Services(state)
        ids = [
            sv.runs.create(name=f"load{i}", command="sleep 600", workdir=tmp, backend="slurm").id
            for i in range(n_runs)
        ]
        print(f"submitted {len(ids)} runs")
        log.write_text("")  # count only the watching phase
        t0 = time.monotonic()
        async with anyio.create_task_group() as tg:
            for _ in range(2):
                tg.start_soon(watch, state, env, seconds)
            tg.start_soon(bare_poller, Path(tmp) / "bin", seconds)
        elapsed = time.monotonic() - t0
        everything = log.read_text().splitlines()
        lines = [line for line in everything if line.split()[-1] == "ours"]
        bare = len(everything) - len(lines)
        by_tool: dict[str, int] = {}
        for line in lines:
            by_tool[line.split()[0]] = by_tool.get(line.split()[0], 0) + 1
        active = sv.runs.list(status=["queued", "launching", "running"], limit=100).total
        for run_id in ids:
            job = sv.runs.load(run_id).backend_ref
            if job:
                subprocess.run(["scancel", job.split(":")[1]], capture_output=True)
    per_min = len(lines) / elapsed * 60
    bare_per_min = bare / elapsed * 60
    print(
        f"{active} active Slurm runs watched {elapsed:.0f}s by 2 servers (list_runs every 0.5 s) + sidecars"
    )
    print(f"scheduler calls: {len(lines)} {by_tool}; bare poller: {bare}")
    ok = figure(
        "slurm_poll_load", "scheduler calls per minute / a bare squeue poller's",
        per_min / bare_per_min if bare_per_min else float("inf"), "≤ 12 calls a minute absolute",
        per_min <= 12, f"{per_min:.1f} vs {bare_per_min:.1f} calls a minute",
    )  # fmt: skip
    return 0 if ok else 1


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=50)
    parser.add_argument("--seconds", type=float, default=60)
    a = parser.parse_args()
    raise SystemExit(anyio.run(main, a.runs, a.seconds))
