"""The dashboard: first load, live update latency, and server CPU with 10 tabs open.

A real ``research-mcp ui`` serves a run that writes 100 points/s (one ``loss`` per 10 ms
to metrics.jsonl); headless Chromium (selenium) opens its page.

- First load: navigation → the loss curve drawn. Baseline, same run, interleaved: the same
  browser navigating to a static file of the same server and fetching the same metrics
  JSON (the server's work and the network, without the page, the feed or the drawing).
- Live latency: a metric written (the job stamps each step's write time in a side file) →
  that step drawn in the open page. Baseline: the same steps becoming visible to a client
  that polls get_metrics' core every 20 ms (the sidecar's ingest floor; the dashboard
  cannot beat it).
- CPU: the server process's CPU over the same window with 1 tab and with 10 tabs on the
  run. The claim is that many tabs cost about what one does (one feed reader per process).
"""

from __future__ import annotations

import argparse
import os
import re
import shlex
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from bench.common import figure, summary, temp_state_dir

WRITER = """
import json, os, time
out = open(os.environ['RESEARCH_METRICS_FILE'], 'a', buffering=1)
stamps = open('stamps.txt', 'a', buffering=1)
for step in range(1, 10**7):
    out.write(json.dumps({'step': step, 'loss': 1.0 / step ** 0.5}) + '\\n')
    stamps.write(f'{step} {time.time()}\\n')
    time.sleep(0.01)
"""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def browser() -> Any:
    from selenium import webdriver
    from selenium.webdriver.chrome.options import Options
    from selenium.webdriver.chrome.service import Service

    options = Options()
    options.binary_location = "/usr/bin/chromium"
    for arg in ("--headless=new", "--no-sandbox", "--disable-gpu", "--window-size=1280,900"):
        options.add_argument(arg)
    return webdriver.Chrome(options=options, service=Service("/usr/bin/chromedriver"))


def drawn(driver: Any) -> dict[str, Any] | None:
    return driver.execute_script("return (window.rmcpDrawn || {}).loss || null")


def wait(predicate: Any, timeout: float = 30.0) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.01)
    raise TimeoutError("condition not met")


def stamps_of(path: Path) -> dict[int, float]:
    out = {}
    for line in path.read_text().splitlines():
        parts = line.split()
        if len(parts) == 2:
            out[int(parts[0])] = float(parts[1])
    return out


def main(loads: int, window_s: float) -> int:
    with temp_state_dir() as state, tempfile.TemporaryDirectory() as work:
        env = {**os.environ, "RESEARCH_MCP_CLUSTER_TYPE": "cpu_only", "RESEARCH_MCP_CPU_RUN_LIMIT": "4"}
        os.environ.update(env)
        from mcp_server.core.services import Services

        sv = Services(state)
        (Path(work) / "writer.py").write_text(WRITER)
        run = sv.runs.create(
            name="bench-live", command=f"{shlex.quote(sys.executable)} writer.py", workdir=work
        )
        port = free_port()
        ui = subprocess.Popen(
            [sys.executable, "-m", "mcp_server", "ui", "--state-dir", str(state), "--port", str(port)],
            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True, env=env, start_new_session=True,
        )  # fmt: skip
        try:
            assert ui.stdout is not None
            url = re.search(r"open: (\S+)", ui.stdout.readline() + ui.stdout.readline())
            assert url, "no login link"
            base = url.group(1).split("?")[0]
            wait(lambda: socket.socket().connect_ex(("127.0.0.1", port)) == 0)
            wait(lambda: sv.metrics.get([run.id]).runs[0].series, timeout=60)
            return measure(sv, run.id, url.group(1), base, ui.pid, Path(work) / "stamps.txt", loads, window_s)
        finally:
            os.killpg(ui.pid, signal.SIGTERM)
            ui.wait(10)
            sv.runs.stop(run.id)


def measure(
    sv: Any, run_id: str, login: str, base: str, pid: int, stamps: Path, loads: int, window_s: float
) -> int:
    page = f"{base}/runs/{run_id}"
    driver = browser()
    try:
        driver.get(login)
        first, floor = [], []
        for _ in range(loads):
            t0 = time.time()
            driver.get(page)
            first.append(wait(lambda: drawn(driver))["t"] / 1000 - t0)
            t0 = time.time()
            driver.get(f"{base}/static/style.css")
            status = driver.execute_async_script(
                "const done = arguments[arguments.length - 1]; fetch(arguments[0])"
                ".then(r => r.json().then(() => done(r.status))).catch(e => done(String(e)))",
                f"{base}/api/metrics?run_ids={run_id}",
            )
            assert status == 200, status
            floor.append(time.time() - t0)
        stored = sv.metrics.get([run_id]).runs[0].series[0].count
        print(f"first load (navigation → loss curve drawn), the run has {stored} points stored")
        print(summary("run page, curve drawn", first))
        print(summary("baseline: static file + same JSON", floor))

        # Live latency: sample what the open page has drawn; look up when that step was written.
        driver.get(page)
        wait(lambda: drawn(driver))
        seen: dict[int, float] = {}
        end = time.monotonic() + window_s
        while time.monotonic() < end:
            d = drawn(driver)
            if d and d["lastStep"] not in seen:
                seen[d["lastStep"]] = d["t"] / 1000
            time.sleep(0.05)
        written = stamps_of(stamps)
        live = [t - written[s] for s, t in seen.items() if s in written]
        core: dict[int, float] = {}
        end = time.monotonic() + window_s
        while time.monotonic() < end:
            last = sv.metrics.get([run_id], ["loss"]).runs[0].series[0].last_step
            core.setdefault(last, time.time())
            time.sleep(0.02)
        written = stamps_of(stamps)
        ingest = [t - written[s] for s, t in core.items() if s in written]
        print("live update (metric written → point drawn), 100 points/s")
        print(summary("dashboard page", live))
        print(summary("baseline: get_metrics every 20 ms", ingest))

        # CPU of the server with 1 tab, then 10 tabs, on the same run.
        def cpu_over(seconds: float) -> float:
            c0, t0 = cpu_seconds(pid), time.monotonic()
            time.sleep(seconds)
            return (cpu_seconds(pid) - c0) / (time.monotonic() - t0) * 100

        one = cpu_over(window_s)
        for _ in range(9):
            driver.switch_to.new_window("tab")
            driver.get(page)
        time.sleep(2)
        ten = cpu_over(window_s)
        print(f"server CPU with the run writing 100 points/s, {window_s:.0f} s each")
        print(f"{'1 tab':<34} {one:6.1f}% of a core")
        print(f"{'10 tabs':<34} {ten:6.1f}% of a core")
        ratio = ten / one if one else float("nan")
        print(f"ratio 10 tabs / 1 tab = {ratio:.2f}")
        lat = statistics.median(live)
        load = statistics.median(first) / statistics.median(floor)
        ok = figure(
            "dashboard", "first load (curve drawn) / a static file + the same JSON", load, "informative",
            True,
            f"{statistics.median(first) * 1000:.0f} vs {statistics.median(floor) * 1000:.0f} ms",
        )  # fmt: skip
        ok &= figure(
            "dashboard", "live latency (written → drawn) / get_metrics polled every 20 ms",
            lat / statistics.median(ingest), "median < 1 s absolute", lat < 1.0,
            f"{lat * 1000:.0f} vs {statistics.median(ingest) * 1000:.0f} ms",
        )  # fmt: skip
        ok &= figure(
            "dashboard", "server CPU 10 tabs / 1 tab", ratio, "< 3", ratio < 3, f"{ten:.1f}% vs {one:.1f}%"
        )
        return 0 if ok else 1
    finally:
        driver.quit()


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--loads", type=int, default=5)
    parser.add_argument("--window", type=float, default=15.0, help="seconds per latency and CPU window")
    args = parser.parse_args()
    raise SystemExit(main(args.loads, args.window))
