"""What watching costs: memory (PSS) and CPU of sidecars watching idle runs, vs a bare watcher.

(1) One sidecar watching an idle run (a job that sleeps, printing nothing) for --seconds
    (default 60). (2) --runs (default 50) idle runs at once, over --window seconds (30).

Same-run baseline, measured over the same windows: a real idle watcher written the plain
way — a Python process that stats the run's metrics.jsonl and output.log every
RESEARCH_MCP_SIDECAR_POLL_S, the least any watcher of those files does (one per watched
run in (2)). CPU is read from /proc/PID/schedstat (nanoseconds: clock ticks are too coarse
for an idle process); memory is PSS from /proc/PID/smaps_rollup, so pages the processes
share (the interpreter, libraries) are counted once in a total, not once per process.

Figures: sidecar / bare watcher, for CPU and for PSS. Targets: one idle sidecar ≤ 60 MB
PSS and ≤ 2% of a core; 50 sidecars ≤ 25% of a core in all.

    python -m bench.sidecar_cost [--seconds 60] [--runs 50] [--window 30]
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from bench.common import figure, temp_state_dir

WATCHER = """
import os, sys, time
poll, paths = float(sys.argv[1]), sys.argv[2:]
while True:
    for p in paths:
        try:
            os.stat(p)
        except OSError:
            pass
    time.sleep(poll)
"""


def cpu_s(pid: int) -> float:
    return int(Path(f"/proc/{pid}/schedstat").read_text().split()[0]) / 1e9


def pss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines():
        if line.startswith("Pss:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def measure(groups: dict[str, list[int]], seconds: float) -> dict[str, tuple[float, float]]:
    """Per group, over the same ``seconds``: CPU as a share of one core, and peak total PSS (MB)."""
    before = {name: sum(cpu_s(p) for p in pids) for name, pids in groups.items()}
    peak = dict.fromkeys(groups, 0.0)
    t0 = time.monotonic()
    while time.monotonic() - t0 < seconds:
        for name, pids in groups.items():
            peak[name] = max(peak[name], sum(pss_mb(p) for p in pids))
        time.sleep(min(1.0, seconds / 10))
    elapsed = time.monotonic() - t0
    return {
        name: ((sum(cpu_s(p) for p in pids) - before[name]) / elapsed, peak[name])
        for name, pids in groups.items()
    }


def sidecars_of(sv, run_ids: list[str], timeout: float = 120) -> list[int]:  # type: ignore[no-untyped-def]
    """Wait until every run has a live sidecar; return their pids."""
    deadline = time.monotonic() + timeout
    while True:
        monitors = [sv.runs.get(r).monitor for r in run_ids]
        if all(m is not None and m.alive and m.pid for m in monitors):
            return [m.pid for m in monitors]  # type: ignore[union-attr]
        if time.monotonic() > deadline:
            raise TimeoutError("sidecars did not all start")
        time.sleep(0.5)


def watchers(sv, run_ids: list[str], poll_s: float) -> list[subprocess.Popen[bytes]]:  # type: ignore[no-untyped-def]
    out = []
    for run_id in run_ids:
        files = sv.runs.files(run_id)
        argv = [sys.executable, "-c", WATCHER, str(poll_s), str(files.metrics), str(files.output)]
        out.append(subprocess.Popen(argv))
    return out


def main(seconds: float, runs: int, window: float) -> int:
    # Local tmux runs, admitted at once (no cpu_only run cap, whatever this machine detects).
    os.environ.setdefault("RESEARCH_MCP_CLUSTER_TYPE", "cpu_only")
    os.environ.setdefault("RESEARCH_MCP_CPU_RUN_LIMIT", str(runs + 2))
    from mcp_server.core.monitoring.monitor_settings import MonitorSettings
    from mcp_server.core.services import Services

    poll_s = MonitorSettings.from_env().poll_s
    ok = True
    bare: list[subprocess.Popen[bytes]] = []
    with temp_state_dir() as state, tempfile.TemporaryDirectory() as work:
        sv = Services(state)
        try:
            idle = sv.runs.create(name="idle", command="sleep 3600", workdir=work, backend="local")
            (pid,) = sidecars_of(sv, [idle.id])
            bare = watchers(sv, [idle.id], poll_s)
            time.sleep(3)  # past start-up
            print(f"(1) one sidecar watching an idle run for {seconds:.0f} s (poll {poll_s} s)")
            got = measure({"bare": [b.pid for b in bare], "sidecar": [pid]}, seconds)
            (base_cpu, base_pss), (cpu, pss) = got["bare"], got["sidecar"]
            print(f"    bare watcher:  PSS {base_pss:6.1f} MB   CPU {base_cpu:8.4%} of a core")
            print(f"    sidecar:       PSS {pss:6.1f} MB   CPU {cpu:8.4%} of a core")
            ok &= figure(
                "sidecar_cost", "idle sidecar CPU / a bare watcher's", cpu / base_cpu,
                "≤ 2% of a core absolute", cpu <= 0.02,
                f"{cpu:.3%} vs {base_cpu:.3%} of a core over {seconds:.0f} s",
            )  # fmt: skip
            ok &= figure(
                "sidecar_cost", "idle sidecar PSS / a bare watcher's", pss / base_pss, "≤ 60 MB absolute",
                pss <= 60, f"{pss:.1f} vs {base_pss:.1f} MB",
            )  # fmt: skip
            sv.runs.stop(idle.id)
            for b in bare:
                b.kill()
                b.wait()

            print(f"(2) {runs} idle runs watched at once, over {window:.0f} s ({os.cpu_count()} cores)")
            many = [
                sv.runs.create(name=f"idle{i}", command="sleep 3600", workdir=work, backend="local").id
                for i in range(runs)
            ]
            pids = sidecars_of(sv, many)
            bare = watchers(sv, many, poll_s)
            time.sleep(3)
            got = measure({"bare": [b.pid for b in bare], "sidecars": pids}, window)
            (base_all, base_pss), (total, total_pss) = got["bare"], got["sidecars"]
            print(f"    {runs} bare watchers: CPU {base_all:7.3%} of a core   PSS total {base_pss:.0f} MB")
            print(f"    {runs} sidecars:      CPU {total:7.3%} of a core   PSS total {total_pss:.0f} MB")
            ok &= figure(
                "sidecar_cost", f"{runs} idle sidecars' CPU / {runs} bare watchers'", total / base_all,
                "≤ 25% of a core absolute", total <= 0.25,
                f"{total:.2%} vs {base_all:.2%} of a core; PSS {total_pss:.0f} vs {base_pss:.0f} MB",
            )  # fmt: skip
            for run_id in many:
                sv.runs.stop(run_id)
        finally:
            for b in bare:
                b.kill()
            sv.close()
    return 0 if ok else 1


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--seconds", type=float, default=60.0, help="window for the single idle sidecar")
    parser.add_argument("--runs", type=int, default=50)
    parser.add_argument("--window", type=float, default=30.0, help="window for the many-runs measurement")
    args = parser.parse_args()
    raise SystemExit(main(args.seconds, args.runs, args.window))
