"""`research-mcp logs -f`: a written line → on the follower's stdout, and the follower's idle CPU.

A real run (a job that sleeps) is followed by `research-mcp logs RUN -f` and, as the same-run
baseline, by `tail -F` on the same output.log (GNU tail follows by inotify too). The bench
appends lines to the run's output.log at random intervals, each stamped with the time it
was written; both followers' stdout are read by threads that stamp each line's arrival.
Then nothing is written for --idle seconds and each follower's CPU time over that window
is read from /proc/PID/schedstat (nanoseconds: clock ticks are too coarse for an idle
process).

Targets: p95 latency ≤ 20 ms (the figure: the ratio to tail -F's p95); idle CPU < 0.2% of a
core (the figure: that share itself, tail -F's beside it: tail never wakes while idle).
"""

from __future__ import annotations

import argparse
import os
import random
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

from bench.common import figure, pct, summary, temp_state_dir


def cpu_ns(pid: int) -> int:
    """CPU time the process has used, in ns (schedstat: not rounded to clock ticks)."""
    return int(Path(f"/proc/{pid}/schedstat").read_text().split()[0])


def reader(proc: subprocess.Popen[bytes], seen: dict[int, float]) -> None:
    assert proc.stdout is not None
    for raw in proc.stdout:
        at = time.time()
        parts = raw.split()
        if len(parts) == 2 and parts[0].startswith(b"L"):
            seen.setdefault(int(parts[0][1:]), at)


def main(n: int, idle_s: float) -> int:
    os.environ.setdefault("RESEARCH_MCP_CLUSTER_TYPE", "cpu_only")
    from mcp_server.core.services import Services

    with temp_state_dir() as state, tempfile.TemporaryDirectory() as work:
        sv = Services(state)
        run = sv.runs.create(name="follow", command="sleep 600", workdir=work, backend="local")
        deadline = time.monotonic() + 30
        while sv.runs.get(run.id).status != "running" and time.monotonic() < deadline:
            time.sleep(0.1)
        log = sv.runs.files(run.id).output
        ours = subprocess.Popen(
            [sys.executable, "-m", "mcp_server", "logs", run.id, "-f", "--state-dir", str(state)],
            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
        )  # fmt: skip
        tail = subprocess.Popen(
            ["tail", "-n", "0", "-F", str(log)], stdout=subprocess.PIPE, stderr=subprocess.DEVNULL
        )
        got: dict[str, dict[int, float]] = {"ours": {}, "tail": {}}
        for name, proc in (("ours", ours), ("tail", tail)):
            threading.Thread(target=reader, args=(proc, got[name]), daemon=True).start()
        time.sleep(3)  # both followers started
        written: dict[int, float] = {}
        rng = random.Random(0)
        try:
            for i in range(n):
                with open(log, "a") as fh:
                    written[i] = time.time()
                    fh.write(f"L{i} {written[i]}\n")
                time.sleep(rng.uniform(0.02, 0.1))
            time.sleep(1)
            t0 = time.monotonic()
            before = {name: cpu_ns(p.pid) for name, p in (("ours", ours), ("tail", tail))}
            time.sleep(idle_s)
            elapsed = time.monotonic() - t0
            procs = (("ours", ours), ("tail", tail))
            idle = {name: (cpu_ns(p.pid) - before[name]) / 1e9 / elapsed for name, p in procs}
        finally:
            for proc in (ours, tail):
                proc.kill()
                proc.wait()
            sv.runs.stop(run.id)
            sv.close()
    lat = {name: [seen[i] - written[i] for i in written if i in seen] for name, seen in got.items()}
    missing = {name: n - len(v) for name, v in lat.items()}
    print(f"{n} lines written at random 20-100 ms intervals; lines never shown: {missing}")
    print(summary("tail -F (baseline)", lat["tail"]))
    print(summary("research-mcp logs -f", lat["ours"]))
    p95, base = pct(lat["ours"], 95), pct(lat["tail"], 95)
    ok = figure(
        "logs_follow", "logs -f line latency p95 / tail -F's", p95 / base if base else float("inf"),
        "≤ 20 ms absolute", p95 <= 0.020 and not missing["ours"],
        f"p95 {p95 * 1000:.1f} ms vs {base * 1000:.1f} ms",
    )  # fmt: skip
    print(f"idle over {idle_s:.0f} s: logs -f {idle['ours']:.4%} of a core, tail -F {idle['tail']:.4%}")
    # tail -F never wakes while idle (0 ns): a ratio to it would be infinite or undefined, so the
    # figure is the share of a core itself, with tail -F's beside it.
    ok &= figure(
        "logs_follow", "logs -f idle CPU, % of a core (tail -F beside it)", idle["ours"] * 100,
        "< 0.2 (% of a core)", idle["ours"] < 0.002,
        f"{idle['ours']:.4%} vs tail -F {idle['tail']:.4%} of a core over {idle_s:.0f} s",
    )  # fmt: skip
    return 0 if ok else 1


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("-n", type=int, default=100, help="lines written")
    parser.add_argument("--idle", type=float, default=30.0, help="seconds of idle following measured")
    a = parser.parse_args()
    raise SystemExit(main(a.n, a.idle))
