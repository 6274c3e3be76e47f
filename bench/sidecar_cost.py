"""What watching costs: RSS and CPU of sidecars watching idle runs.

(1) One sidecar watching an idle run (a job that sleeps, printing nothing) for --seconds
    (default 60): its RSS (VmRSS) and CPU (utime + stime from /proc over the window).
(2) --runs (default 50) idle runs at once: the total CPU of all their sidecars over
    --window seconds (default 30), as a share of one core.

Same-run baseline: a bare Python process that only sleeps in the same poll interval (the
least any poller written in Python costs), measured over the same window.

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

from bench.common import temp_state_dir, verdict

TICKS = os.sysconf("SC_CLK_TCK")


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICKS  # utime + stime


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def measure(groups: dict[str, list[int]], seconds: float) -> dict[str, tuple[float, float]]:
    """Per group, over the same ``seconds``: CPU as a share of one core, and peak total RSS (MB)."""
    before = {name: sum(cpu_seconds(p) for p in pids) for name, pids in groups.items()}
    peak = dict.fromkeys(groups, 0.0)
    t0 = time.monotonic()
    while time.monotonic() - t0 < seconds:
        for name, pids in groups.items():
            peak[name] = max(peak[name], sum(rss_mb(p) for p in pids))
        time.sleep(min(1.0, seconds / 10))
    elapsed = time.monotonic() - t0
    return {
        name: ((sum(cpu_seconds(p) for p in pids) - before[name]) / elapsed, peak[name])
        for name, pids in groups.items()
    }


def sidecars_of(sv, run_ids: list[str], timeout: float = 60) -> list[int]:  # type: ignore[no-untyped-def]
    """Wait until every run has a live sidecar; return their pids."""
    deadline = time.monotonic() + timeout
    while True:
        monitors = [sv.runs.get(r).monitor for r in run_ids]
        if all(m is not None and m.alive and m.pid for m in monitors):
            return [m.pid for m in monitors]  # type: ignore[union-attr]
        if time.monotonic() > deadline:
            raise TimeoutError("sidecars did not all start")
        time.sleep(0.5)


def main(seconds: float, runs: int, window: float) -> int:
    # Local tmux runs, admitted at once (no cpu_only run cap, whatever this machine detects).
    os.environ.setdefault("RESEARCH_MCP_CLUSTER_TYPE", "cpu_only")
    os.environ.setdefault("RESEARCH_MCP_CPU_RUN_LIMIT", str(runs + 2))
    from mcp_server.core.monitor_settings import MonitorSettings
    from mcp_server.core.services import Services

    poll_s = MonitorSettings.from_env().poll_s
    sleeper = subprocess.Popen(
        [sys.executable, "-c", f"import time\nwhile True: time.sleep({poll_s})"],
    )
    ok = True
    try:
        with temp_state_dir() as state, tempfile.TemporaryDirectory() as work:
            sv = Services(state)
            try:
                idle = sv.runs.create(name="idle", command="sleep 3600", workdir=work, backend="local")
                (pid,) = sidecars_of(sv, [idle.id])
                time.sleep(2)  # past start-up
                print(f"(1) one sidecar watching an idle run for {seconds:.0f} s (poll {poll_s} s)")
                got = measure({"sleeper": [sleeper.pid], "sidecar": [pid]}, seconds)
                (base_cpu, base_rss), (cpu, peak) = got["sleeper"], got["sidecar"]
                rss = rss_mb(pid)
                print(f"    bare python sleeper:  RSS {base_rss:6.1f} MB   CPU {base_cpu:7.3%} of a core")
                print(f"    research-mcp sidecar: RSS {rss:6.1f} MB (peak {peak:.1f})   CPU {cpu:7.3%}")
                print(f"    {verdict('idle sidecar RSS (MB)', peak, '≤ 60', peak <= 60)}")
                print(f"    {verdict('idle sidecar CPU (% of a core)', cpu * 100, '≤ 2', cpu <= 0.02)}")
                ok = peak <= 60 and cpu <= 0.02
                sv.runs.stop(idle.id)

                print(f"(2) {runs} idle runs watched at once, over {window:.0f} s ({os.cpu_count()} cores)")
                many = [
                    sv.runs.create(name=f"idle{i}", command="sleep 3600", workdir=work, backend="local").id
                    for i in range(runs)
                ]
                pids = sidecars_of(sv, many, timeout=120)
                time.sleep(3)
                got = measure({"sleeper": [sleeper.pid], "sidecars": pids}, window)
                (base_one, _), (total, total_rss) = got["sleeper"], got["sidecars"]
                print(
                    f"    {runs} bare sleepers (one measured, ×{runs}): CPU {base_one * runs:7.2%} of a core"
                )
                print(f"    {runs} sidecars: CPU {total:7.2%} of a core   RSS total {total_rss:.0f} MB")
                print(
                    f"    {verdict(f'{runs} sidecars CPU (% of a core)', total * 100, '≤ 25', total <= 0.25)}"
                )
                ok = ok and total <= 0.25
                for run_id in many:
                    sv.runs.stop(run_id)
            finally:
                sv.close()
    finally:
        sleeper.kill()
        sleeper.wait()
    return 0 if ok else 1


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--seconds", type=float, default=60.0, help="window for the single idle sidecar")
    parser.add_argument("--runs", type=int, default=50)
    parser.add_argument("--window", type=float, default=30.0, help="window for the many-runs measurement")
    args = parser.parse_args()
    raise SystemExit(main(args.seconds, args.runs, args.window))
