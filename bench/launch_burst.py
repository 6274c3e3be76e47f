"""A burst of launches on a 1-slot machine: every call acked, every run finished, little memory.

S stdio servers on one state dir each send R concurrent ``create_run("sleep 1")`` (auto
start) on a cpu_only machine with RESEARCH_MCP_CPU_RUN_LIMIT=1, so all but one run wait
in the queue. Reported: calls acked and failed, create latency (p50/p95/max), the time
until every run has ended and whether each finished with exit 0, and the peak memory of
everything the runs cost besides the servers (launch scripts, the queue dispatcher,
sidecars, tee, the jobs and their tmux server; RSS summed over processes, sampled every
0.25 s) with the peak process count.

Same-run baseline: the same burst with auto_start=false in a fresh state dir (the store
writes and run files only: no queue, no tmux), so the create p95 is also given as a ratio.

    python -m bench.launch_burst [--servers 2] [--runs 100] [--command "sleep 1"]

Loopback only (stdio pipes); bounded by --timeout seconds per burst.
"""

from __future__ import annotations

import argparse
import os
import sqlite3
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import anyio
from mcp import Client, StdioServerParameters

from bench.common import figure, pct, temp_state_dir, verdict

PAGE = os.sysconf("SC_PAGE_SIZE")


@dataclass
class Burst:
    latencies: list[float] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    ended_after_s: float | None = None
    statuses: dict[str, int] = field(default_factory=dict)
    clean_exits: int = 0
    peak_rss_mb: float = 0.0
    peak_procs: int = 0
    peak_breakdown: dict[str, float] = field(default_factory=dict)
    peak_counts: dict[str, int] = field(default_factory=dict)  # most processes of each kind at once


def _kind(argv: list[str]) -> str:
    text = " ".join(argv)
    if "mcp_server.core.scheduling.dispatch" in text:
        return "dispatcher"
    if "mcp_server.core.scheduling.gpu_attempt" in text:
        return "python waiters"
    if "sidecar" in text:
        return "sidecars"
    if text.startswith("tmux"):
        return "tmux server"
    if "launch.sh" in text:
        return "launch scripts"
    return "jobs and tee"


def run_side_rss(root: Path, socket: str) -> tuple[float, dict[str, int], dict[str, float]]:
    """RSS (MB) and count of the processes a state dir's runs cost, by kind, servers excluded."""
    total, counts, parts = 0.0, {}, {}
    needles = (str(root).encode(), socket.encode())
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        try:
            raw = Path(entry.path, "cmdline").read_bytes()
            if not any(n in raw for n in needles) or b" serve" in raw.replace(b"\0", b" "):
                continue
            pages = int(Path(entry.path, "statm").read_text().split()[1])
        except (OSError, ValueError, IndexError):
            continue
        mb = pages * PAGE / 2**20
        kind = _kind([a.decode(errors="replace") for a in raw.split(b"\0") if a])
        parts[kind] = parts.get(kind, 0.0) + mb
        counts[kind] = counts.get(kind, 0) + 1
        total += mb
    return total, counts, parts


class Sampler(threading.Thread):
    def __init__(self, root: Path, socket: str, burst: Burst) -> None:
        super().__init__(daemon=True)
        self.root, self.socket, self.burst = root, socket, burst
        self.stop = threading.Event()

    def run(self) -> None:
        while not self.stop.is_set():
            total, counts, parts = run_side_rss(self.root, self.socket)
            if total > self.burst.peak_rss_mb:
                self.burst.peak_rss_mb, self.burst.peak_breakdown = total, parts
            self.burst.peak_procs = max(self.burst.peak_procs, sum(counts.values()))
            for kind, n in counts.items():
                self.burst.peak_counts[kind] = max(self.burst.peak_counts.get(kind, 0), n)
            self.stop.wait(0.25)


def server_params(root: Path, env: dict[str, str]) -> StdioServerParameters:
    return StdioServerParameters(
        command=sys.executable,
        args=["-m", "mcp_server", "serve", "--state-dir", str(root)],
        env={**os.environ, **env},
    )


def _ended(root: Path) -> tuple[int, int, dict[str, int]]:
    con = sqlite3.connect(f"file:{root / 'research.db'}?mode=ro", uri=True, timeout=30)
    try:
        rows = con.execute("SELECT status, exit_code FROM runs").fetchall()
    finally:
        con.close()
    statuses: dict[str, int] = {}
    for status, _code in rows:
        statuses[status] = statuses.get(status, 0) + 1
    ended = sum(v for k, v in statuses.items() if k in ("finished", "failed", "stopped", "lost"))
    clean = sum(1 for status, code in rows if status == "finished" and code == 0)
    return ended, clean, statuses


async def burst(
    root: Path, workdir: Path, servers: int, runs: int, command: str, auto_start: bool, timeout: float
) -> Burst:
    from mcp_server.core.paths import StateDir

    env = {"RESEARCH_MCP_CLUSTER_TYPE": "cpu_only", "RESEARCH_MCP_CPU_RUN_LIMIT": "1"}
    out = Burst()
    root.mkdir(parents=True, exist_ok=True)
    sampler = Sampler(root, StateDir(root).tmux_socket, out)
    sampler.start()
    began = time.monotonic()
    try:
        with anyio.fail_after(timeout):
            async with anyio.create_task_group() as tg:
                for s in range(servers):
                    tg.start_soon(_one_server, root, env, workdir, s, runs, command, auto_start, out)
            if auto_start:
                total = servers * runs
                while True:
                    ended, clean, statuses = await anyio.to_thread.run_sync(_ended, root)
                    out.statuses, out.clean_exits = statuses, clean
                    if ended >= total - len(out.errors):
                        out.ended_after_s = time.monotonic() - began
                        break
                    await anyio.sleep(1.0)
    finally:
        sampler.stop.set()
        sampler.join()
    return out


async def _one_server(
    root: Path, env: dict[str, str], workdir: Path, s: int, runs: int, command: str, auto_start: bool,
    out: Burst,
) -> None:  # fmt: skip
    async with Client(server_params(root, env), mode="legacy", cache=None) as c:
        await c.call_tool("list_runs", {})  # started, store open, before the clock runs

        async def one(i: int) -> None:
            t0 = time.monotonic()
            res = await c.call_tool(
                "create_run",
                {"name": f"b{s}-{i}", "command": command, "workdir": str(workdir), "auto_start": auto_start},
            )
            out.latencies.append(time.monotonic() - t0)
            if res.is_error:
                out.errors.append(res.content[0].text)  # type: ignore[union-attr]

        async with anyio.create_task_group() as tg:
            for i in range(runs):
                tg.start_soon(one, i)


def report(label: str, b: Burst, base: Burst, total: int) -> bool:
    p50, p95 = pct(b.latencies, 50), pct(b.latencies, 95)
    base_p95 = pct(base.latencies, 95)
    print(f"--- {label}")
    print(f"acked {len(b.latencies) - len(b.errors)}/{total}, errors {len(b.errors)}")
    for err in b.errors[:3]:
        print(f"  error: {err[:200]}")
    print(f"create latency: p50 {p50:.2f} s, p95 {p95:.2f} s, max {max(b.latencies):.2f} s")
    print(
        f"baseline (auto_start=false, same servers and calls): p95 {base_p95:.2f} s; "
        f"ratio p95/baseline p95 = {p95 / base_p95:.1f}"
    )
    ended = b.ended_after_s if b.ended_after_s is not None else float("nan")
    print(f"every run ended after {ended:.1f} s: {b.statuses}; finished with exit 0: {b.clean_exits}/{total}")
    parts = ", ".join(f"{k} {v:.0f} MB" for k, v in sorted(b.peak_breakdown.items()))
    print(f"peak RSS of everything the runs cost (servers excluded): {b.peak_rss_mb:.0f} MB ({parts})")
    kinds = ", ".join(f"{k} {v}" for k, v in sorted(b.peak_counts.items()))
    print(f"peak process count of the runs: {b.peak_procs} (most at once of each kind: {kinds})")
    acked = len(b.latencies) - len(b.errors)
    checks = [
        verdict("acked", acked, f"= {total}", acked == total),
        verdict("finished exit 0", b.clean_exits, f"= {total}", b.clean_exits == total),
        verdict("create p95 (s)", p95, "≤ 5", p95 <= 5),
        verdict("peak run-side RSS (MB)", b.peak_rss_mb, "< 1024", b.peak_rss_mb < 1024),
    ]
    print("\n".join(checks))
    ok = all(c.startswith("PASS") for c in checks)
    figure(
        "launch_burst", "concurrent create_run p95 / auto_start=false burst's", p95 / base_p95,
        "p95 ≤ 5 s, all acked and exit 0", ok,
        f"p95 {p95:.2f} vs {base_p95:.2f} s; acked {acked}/{total}; peak run-side RSS {b.peak_rss_mb:.0f} MB",
    )  # fmt: skip
    return ok


async def main(servers: int, runs: int, command: str, timeout: float) -> int:
    total = servers * runs
    with tempfile.TemporaryDirectory(prefix="rmcp-burst-work-") as work:
        with temp_state_dir() as root:
            base = await burst(root, Path(work), servers, runs, command, False, timeout)
        with temp_state_dir() as root:
            b = await burst(root, Path(work), servers, runs, command, True, timeout)
    ok = report(f"{servers} servers × {runs} concurrent create_run({command!r}), 1 run slot", b, base, total)
    return 0 if ok else 1


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--servers", type=int, default=2)
    parser.add_argument("--runs", type=int, default=100)
    parser.add_argument("--command", default="sleep 1")
    parser.add_argument("--timeout", type=float, default=900.0)
    args = parser.parse_args()
    raise SystemExit(anyio.run(main, args.servers, args.runs, args.command, args.timeout))
