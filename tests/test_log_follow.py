"""Following a run's log by file events: a written line shows at once, an idle follower sleeps."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from mcp_server.core.execution.follow import DirWatch
from mcp_server.core.services import Services
from tests.helpers import wait_for

TICKS = os.sysconf("SC_CLK_TCK")


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICKS


def test_a_watch_tells_which_file_changed_and_times_out_quietly(tmp_path: Path) -> None:
    watch = DirWatch([tmp_path])
    try:
        if sys.platform == "linux":
            assert watch.evented
        assert watch.wait(0.05) == set()
        threading.Timer(0.2, lambda: (tmp_path / "output.log").write_text("a line\n")).start()
        t0 = time.monotonic()
        changed = watch.wait(10)
        assert time.monotonic() - t0 < 5 and tmp_path / "output.log" in changed
    finally:
        watch.close()


@pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="reads the follower's CPU time from /proc")
@pytest.mark.serial  # timing-sensitive: measured alone (see conftest)
def test_logs_follow_prints_a_line_at_once_and_idles_without_cpu(
    services: Services, state_dir: Path, workdir: Path, tmp_path: Path
) -> None:
    """The job prints a line each time the test touches a file; the follower must print it well
    before the old 0.5 s poll would have, and burn (almost) no CPU while nothing is written."""
    (workdir / "job.sh").write_text(
        "i=0; while [ ! -f stop ]; do if [ -f go$i ]; then echo line$i; i=$((i+1)); fi; sleep 0.01; done\n"
    )
    run = services.runs.create(name="chatty", command="bash job.sh", workdir=str(workdir))
    wait_for(lambda: services.runs.get(run.id).status == "running" or None, 30, what="the run to start")
    follow = subprocess.Popen(
        [sys.executable, "-m", "mcp_server", "logs", run.id, "-f", "--state-dir", str(state_dir)],
        cwd=tmp_path,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        lines: list[tuple[str, float]] = []
        read = lambda: [lines.append((line, time.monotonic())) for line in follow.stdout or ()]  # noqa: E731
        reader = threading.Thread(target=read, daemon=True)
        reader.start()
        time.sleep(2)  # past the follower's start-up
        before = cpu_seconds(follow.pid)
        time.sleep(3)  # idle: nothing written
        idle = cpu_seconds(follow.pid) - before
        assert idle < 0.06, f"an idle follower used {idle:.3f} s of CPU in 3 s"
        delays = []
        for i in range(5):
            written = time.monotonic()
            (workdir / f"go{i}").touch()
            seen = wait_for(lambda i=i: next((t for line, t in lines if line == f"line{i}\n"), None), 10,
                            what=f"line{i} on the follower's stdout")  # fmt: skip
            delays.append(seen - written)
        # The job itself notices its gate within 10 ms; the follower adds file-event latency only.
        assert sorted(delays)[2] < 0.4, f"lines shown after {delays}"
        (workdir / "stop").touch()
        assert follow.wait(timeout=60) == 0
    finally:
        (workdir / "stop").touch()
        follow.kill()
