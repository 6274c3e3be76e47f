"""create_run → the user's command started, through the MCP tool over stdio; median over N.

The command records its own start time (time.time() in the job), so the figure includes
the tool call, the store writes, recording the run's provenance, tmux opening the window
and the launch script. As a same-run baseline, the same command is started by
`tmux new-window` directly. ``--git``: the workdir is a git repository with 200 committed
files and an uncommitted edit, so every launch also records the commit and saves the diff.
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

from bench.common import figure, summary, temp_state_dir

STAMP = "import time,sys; open(sys.argv[1],'w').write(repr(time.time()))"


def wait_file(path: Path, timeout: float = 30) -> float:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            text = path.read_text()
            if text:
                return float(text)
        except FileNotFoundError:
            pass
        time.sleep(0.002)
    raise TimeoutError(path)


def git_workdir(workdir: Path) -> None:
    git = ["git", "-c", "user.name=bench", "-c", "user.email=bench@example.com"]
    for i in range(200):
        (workdir / f"module_{i}.py").write_text(f"VALUE = {i}\n" * 50)
    subprocess.run([*git, "init", "-q"], cwd=workdir, check=True)
    subprocess.run([*git, "add", "."], cwd=workdir, check=True)
    subprocess.run([*git, "commit", "-qm", "bench"], cwd=workdir, check=True)
    (workdir / "module_7.py").write_text("VALUE = 'edited'\n")


async def main(n: int, with_git: bool) -> int:
    ours: list[float] = []
    raw: list[float] = []
    with temp_state_dir() as state, tempfile.TemporaryDirectory() as work:
        workdir = Path(work)
        if with_git:
            git_workdir(workdir)
        params = StdioServerParameters(
            command=sys.executable, args=["-m", "mcp_server", "serve", "--state-dir", str(state)]
        )
        sock = f"rmcp-bench-raw-{time.time_ns()}"
        subprocess.run(["tmux", "-L", sock, "new-session", "-d", "-s", "b"], check=True)
        try:
            async with Client(params, mode="legacy", cache=None) as c:
                for i in range(n + 1):
                    stamp = workdir / f"ours-{i}"
                    cmd = f"{shlex.quote(sys.executable)} -c {shlex.quote(STAMP)} {shlex.quote(str(stamp))}"
                    t0 = time.time()
                    res = await c.call_tool(
                        "create_run",
                        {"name": f"lat{i}", "command": cmd, "workdir": str(workdir), "backend": "local"},
                    )
                    assert not res.is_error, res.content
                    started = await anyio.to_thread.run_sync(wait_file, stamp)
                    if i:  # the first one warms caches
                        ours.append(started - t0)

                    stamp = workdir / f"raw-{i}"
                    cmd = f"{shlex.quote(sys.executable)} -c {shlex.quote(STAMP)} {shlex.quote(str(stamp))}"
                    t0 = time.time()
                    subprocess.run(["tmux", "-L", sock, "new-window", "-d", "-t", "b:", cmd], check=True)
                    started = await anyio.to_thread.run_sync(wait_file, stamp)
                    if i:
                        raw.append(started - t0)
        finally:
            subprocess.run(["tmux", "-L", sock, "kill-server"], capture_output=True)
    print(
        "create_run → command started (python -c stamp), over stdio MCP"
        + (", dirty git workdir" if with_git else "")
    )
    print(summary("raw tmux new-window", raw))
    print(summary("research-mcp create_run", ours))
    overhead = statistics.median(ours) - statistics.median(raw)
    print(f"median overhead over raw tmux: {overhead * 1000:.1f} ms")
    med = statistics.median(ours)
    ok = figure(
        "launch_latency", "create_run → started / raw tmux new-window", med / statistics.median(raw),
        "< 1 s absolute", med < 1, f"{med * 1000:.0f} vs {statistics.median(raw) * 1000:.0f} ms",
    )  # fmt: skip
    return 0 if ok else 1


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("-n", type=int, default=20)
    parser.add_argument(
        "--git", action="store_true", help="launch from a git repository with an uncommitted edit"
    )
    args = parser.parse_args()
    raise SystemExit(anyio.run(main, args.n, args.git))
