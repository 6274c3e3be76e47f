"""Alert latency: a NaN written to metrics.jsonl by a real job → the alert visible to list_alerts.

Each trial is its own tmux run (a NaN alert is raised once per run) under its own sidecar,
started the way create_run starts it. The job writes healthy lines, then, when the bench
touches a trigger file, one NaN line, and records time.time() right after the write. The
bench polls list_alerts (AlertService.list, the code behind the tool) every 2 ms.

Same-run baseline: the floor any poller at the same interval pays — a bare loop that
stats the file every RESEARCH_MCP_SIDECAR_POLL_S (default 0.25 s) and notices the growth,
with no parsing and no database.

``--notify-hang`` points notifications (every alert and run ending) at a local endpoint that
accepts connections and never answers, so a notification sender is stuck on it for the
whole bench: the alert latency must not change.

    python -m bench.alert_latency [-n 20] [--notify-hang]
"""

from __future__ import annotations

import argparse
import contextlib
import os
import random
import shlex
import signal
import socket
import statistics
import sys
import tempfile
import textwrap
import threading
import time
from pathlib import Path

from bench.common import figure, pct, pids_with, summary, temp_state_dir

JOB = """
import json, os, sys, time
f = open(os.environ["RESEARCH_METRICS_FILE"], "a", buffering=1)
for step in range(20):
    f.write(json.dumps({"step": step, "loss": 1.0 / (step + 1)}) + "\\n")
while not os.path.exists(sys.argv[1]):
    time.sleep(0.001)
f.write(json.dumps({"step": 20, "loss": float("nan")}) + "\\n")
stamp = time.time()
open(sys.argv[2], "w").write(repr(stamp))
time.sleep(300)
"""


def wait(predicate, timeout: float = 30.0, interval: float = 0.002):  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(interval)
    raise TimeoutError("bench condition not reached")


def floor_trial(poll_s: float, workdir: Path) -> float:
    """A bare poller's notice latency for an append at a random point of its cycle."""
    path = workdir / "floor.jsonl"
    path.write_text("")
    seen: list[float] = []

    def poller() -> None:
        size = 0
        while not seen:
            new = os.stat(path).st_size
            if new != size:
                seen.append(time.time())
            time.sleep(poll_s)

    thread = threading.Thread(target=poller)
    thread.start()
    time.sleep(poll_s * (1 + random.random()))
    with open(path, "a") as fh:
        fh.write('{"loss": NaN}\n')
    written = time.time()
    thread.join()
    return seen[0] - written


class HungEndpoint:
    """Accepts every connection and never reads or answers: a frozen webhook."""

    def __init__(self) -> None:
        self.sock = socket.create_server(("127.0.0.1", 0), backlog=128)
        self.port = self.sock.getsockname()[1]
        self.held: list[socket.socket] = []
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            self.held.append(conn)


def main(n: int, notify_hang: bool = False) -> int:
    hung = None
    if notify_hang:
        hung = HungEndpoint()
        os.environ["RESEARCH_MCP_NOTIFY"] = f"json://127.0.0.1:{hung.port}/hook"
        os.environ["RESEARCH_MCP_NOTIFY_EVENTS"] = "run_finished,run_failed,run_stopped,alert"
    # Local tmux runs, admitted at once (no cpu_only run cap, whatever this machine detects).
    os.environ.setdefault("RESEARCH_MCP_CLUSTER_TYPE", "cpu_only")
    os.environ.setdefault("RESEARCH_MCP_CPU_RUN_LIMIT", "4")
    from mcp_server.core.monitoring.monitor_settings import MonitorSettings
    from mcp_server.core.services import Services

    poll_s = MonitorSettings.from_env().poll_s
    rng = random.Random(0)
    ours: list[float] = []
    floor: list[float] = []
    with temp_state_dir() as state, tempfile.TemporaryDirectory() as tmp:
        workdir = Path(tmp)
        (workdir / "job.py").write_text(textwrap.dedent(JOB))
        sv = Services(state)
        try:
            for i in range(n):
                trigger, stamp = workdir / f"go-{i}", workdir / f"written-{i}"
                cmd = " ".join(shlex.quote(str(a)) for a in (sys.executable, "job.py", trigger, stamp))
                run = sv.runs.create(name=f"lat{i}", command=cmd, workdir=str(workdir), backend="local")
                # Steady state: the sidecar is up and has ingested the healthy lines.
                wait(lambda r=run.id: (m := sv.runs.get(r).monitor) and m.alive and m.ingest.points >= 20)
                time.sleep(rng.uniform(0, poll_s))  # at a random point of the sidecar's poll cycle
                trigger.touch()
                alert = wait(lambda r=run.id: sv.alerts.list(run_id=r).alerts)
                seen = time.time()
                written = float(wait(lambda s=stamp: s.exists() and s.read_text()))
                assert alert[0].kind == "nonfinite", alert
                ours.append(seen - written)
                sv.runs.stop(run.id)
                floor.append(floor_trial(poll_s, workdir))
        finally:
            sv.close()
            for pid in pids_with("mcp_server.core.workflow.notifications.sender", str(state)):
                with contextlib.suppress(ProcessLookupError):  # it would wait out its timeouts on the hang
                    os.kill(pid, signal.SIGKILL)
    print(f"NaN written by the job → alert visible to list_alerts; {n} trials, sidecar poll {poll_s} s")
    if hung is not None:
        print(f"notifications to a hung endpoint: {len(hung.held)} connection(s) held open, never answered")
    print(summary("bare stat() poller (floor)", floor))
    print(summary("research-mcp sidecar → list_alerts", ours))
    p50, p95 = statistics.median(ours), pct(ours, 95)
    print(f"p50 = {p50 * 1000:.1f} ms   p95 = {p95 * 1000:.1f} ms")
    ok = figure(
        "alert_latency", "NaN written → list_alerts p95 / a bare stat() poller's", p95 / pct(floor, 95),
        "p95 ≤ 1 s absolute", p95 <= 1.0, f"p95 {p95 * 1000:.0f} vs {pct(floor, 95) * 1000:.0f} ms",
    )  # fmt: skip
    return 0 if ok else 1


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("-n", type=int, default=20)
    parser.add_argument("--notify-hang", action="store_true", help="send notifications to a hung endpoint")
    args = parser.parse_args()
    raise SystemExit(main(args.n, args.notify_hang))
