"""Ray: create_run → command running, against `ray job submit` of the same command (same run).

A private Ray head (2 CPUs, 2 logical GPUs; ``bench/ray_head.py``) serves both. Each trial
submits the same command, which stamps time.time() when it starts, once through
``create_run(backend="ray")`` over MCP stdio and once with ``ray job submit --no-wait``
(what a user would type), one after the other in alternating order, each on an idle cluster.
The figure is the ratio of the medians (target ≤ 1.2). The CLI pays its own start-up (Python
and Ray's imports) on every submission, which the server pays once; so a second baseline —
Ray's JobSubmissionClient.submit_job in a warm process, the cheapest way there is — is
printed too, to show what create_run costs beyond the bare submission.
"""

from __future__ import annotations

import argparse
import logging
import os
import shlex
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import anyio
from mcp import Client, StdioServerParameters

from bench import ray_head
from bench.common import figure, summary, temp_state_dir
from bench.launch_latency import STAMP, wait_file

ENDED = {"SUCCEEDED", "FAILED", "STOPPED"}


def stamp_command(stamp: Path) -> str:
    return f"{shlex.quote(sys.executable)} -c {shlex.quote(STAMP)} {shlex.quote(str(stamp))}"


def wait_idle(client: object) -> None:
    """Until every job the head knows has ended."""
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        jobs = client.list_jobs()  # type: ignore[attr-defined]
        if all(str(j.status) in ENDED or getattr(j.status, "value", "") in ENDED for j in jobs):
            return
        time.sleep(0.05)


def submit_cli(address: str, cmd: str) -> None:
    ray = ray_head.ray_cli()
    assert ray is not None
    subprocess.run(
        [ray, "job", "submit", "--address", address, "--no-wait", "--", "bash", "-c", cmd],
        check=True, capture_output=True,
    )  # fmt: skip


async def main(n: int) -> int:
    why = ray_head.missing()
    if why:
        print(f"skipped: {why}")
        return 0
    from ray.job_submission import JobSubmissionClient

    for name in ("ray.dashboard", "ray._private.runtime_env"):  # its "Uploading package" per job
        logging.getLogger(name).setLevel(logging.WARNING)
    head = ray_head.start()
    cli: list[float] = []
    sdk: list[float] = []
    ours: list[float] = []
    try:
        sdk_client = JobSubmissionClient(head.address)
        with temp_state_dir() as state, tempfile.TemporaryDirectory() as work:
            workdir = Path(work)
            params = StdioServerParameters(
                command=sys.executable,
                args=["-m", "mcp_server", "serve", "--state-dir", str(state)],
                env={"RAY_ADDRESS": head.address, "PATH": os.environ.get("PATH", "")},
            )
            async with Client(params, mode="legacy", cache=None) as c:

                async def by_create_run(i: int) -> float:
                    stamp = workdir / f"ours-{i}"
                    t0 = time.time()
                    res = await c.call_tool(
                        "create_run",
                        {"name": f"b{i}", "command": stamp_command(stamp), "workdir": str(workdir),
                         "backend": "ray"},
                    )  # fmt: skip
                    assert not res.is_error, res.content
                    return await anyio.to_thread.run_sync(wait_file, stamp, 60) - t0

                def by_cli(i: int) -> float:
                    stamp = workdir / f"cli-{i}"
                    t0 = time.time()
                    submit_cli(head.address, stamp_command(stamp))
                    return wait_file(stamp, 60) - t0

                def by_sdk(i: int) -> float:
                    stamp = workdir / f"sdk-{i}"
                    t0 = time.time()
                    sdk_client.submit_job(entrypoint=f"bash -c {shlex.quote(stamp_command(stamp))}")
                    return wait_file(stamp, 60) - t0

                for i in range(n + 1):  # trial 0 warms every path up
                    order = ["ours", "cli", "sdk"] if i % 2 else ["sdk", "cli", "ours"]
                    got: dict[str, float] = {}
                    for path in order:
                        await anyio.to_thread.run_sync(wait_idle, sdk_client)
                        if path == "ours":
                            got[path] = await by_create_run(i)
                        elif path == "cli":
                            got[path] = await anyio.to_thread.run_sync(by_cli, i)
                        else:
                            got[path] = await anyio.to_thread.run_sync(by_sdk, i)
                    if i:
                        ours.append(got["ours"])
                        cli.append(got["cli"])
                        sdk.append(got["sdk"])
    finally:
        head.stop()
    ratio = statistics.median(ours) / statistics.median(cli)
    print(f"Ray submit → command running (n={n} trials, alternating order, an idle 1-node cluster)")
    print(summary("ray job submit --no-wait (CLI)", cli))
    print(summary("JobSubmissionClient, warm process", sdk))
    print(summary("create_run(backend=ray) via MCP", ours))
    to_sdk = statistics.median(ours) / statistics.median(sdk)
    print(f"      median ratio create_run / warm SDK = {to_sdk:.3f} (for information)")
    ok = figure(
        "ray_submit", "median ratio create_run / ray job submit", ratio, "≤ 1.2", ratio <= 1.2,
        f"{statistics.median(ours) * 1000:.0f} ms vs {statistics.median(cli) * 1000:.0f} ms; n={n}",
    )  # fmt: skip
    return 0 if ok else 1


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("-n", type=int, default=10)
    a = parser.parse_args()
    raise SystemExit(anyio.run(main, a.n))
