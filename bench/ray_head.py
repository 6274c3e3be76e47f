"""A private Ray head on 127.0.0.1 for bench.ray_submit and the Ray backend's tests.

``ray start --head --block`` runs under ``setsid``, so the head and every process it starts
share one process group that is ended by its id; ``ray stop`` is never used (it would stop
every Ray cluster on the machine, other engineers' included). Every port is chosen free and
the head keeps its files in its own temp dir, so two heads on one machine do not meet.
"""

from __future__ import annotations

import contextlib
import json
import os
import random
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from dataclasses import dataclass
from pathlib import Path

START_TIMEOUT_S = 120.0


def ray_cli() -> str | None:
    """The ``ray`` command beside this interpreter (the venv's), else on PATH."""
    beside = Path(sys.executable).with_name("ray")
    return str(beside) if beside.exists() else shutil.which("ray")


def missing() -> str | None:
    """Why a Ray head cannot be started here (None: it can be tried)."""
    try:
        import ray.job_submission  # noqa: F401
    except ImportError:
        return "ray is not installed (pip install -e '.[test,ray]')"
    if ray_cli() is None:
        return "the `ray` command is not on PATH"
    return None


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class RayHead:
    address: str  # the job server (dashboard) URL, what RAY_ADDRESS names
    temp_dir: Path
    proc: subprocess.Popen[bytes]
    log: Path

    def stop(self) -> None:
        """End this head's process group and the jobs it ran (nothing else), then remove its files."""
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.proc.pid, signal.SIGTERM)
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.proc.wait(3)
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.proc.pid, signal.SIGKILL)
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.proc.wait(5)
        # Ray starts workers and job entrypoints in sessions of their own: a job still running
        # works in this head's temp dir (its working_dir package), which only it uses.
        for pid in pids_working_under(self.temp_dir):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        shutil.rmtree(self.temp_dir, ignore_errors=True)


def pids_working_under(root: Path) -> list[int]:
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            with contextlib.suppress(OSError):
                if Path(os.readlink(entry / "cwd")).is_relative_to(root):
                    found.append(int(entry.name))
    return found


def _answers(address: str) -> bool:
    try:
        with urllib.request.urlopen(f"{address}/api/version", timeout=2) as resp:
            json.loads(resp.read())
        # The job agent and the node (its raylet starts last) must be up too, or the first
        # submission fails and detection finds no node.
        with urllib.request.urlopen(f"{address}/api/jobs/", timeout=2) as resp:
            if resp.status != 200:
                return False
        with urllib.request.urlopen(f"{address}/api/v0/nodes?limit=10", timeout=5) as resp:
            rows = json.loads(resp.read())["data"]["result"]["result"]
        return any(row.get("state") == "ALIVE" for row in rows)
    except Exception:
        return False


def start(num_cpus: int = 2, num_gpus: int = 2) -> RayHead:
    """Start a head with ``num_gpus`` logical GPUs; raises RuntimeError with its log if it fails."""
    cli = ray_cli()
    if cli is None:
        raise RuntimeError("the `ray` command is not on PATH")
    # Short: Ray's unix sockets live under it (a socket path is at most 107 bytes).
    temp_dir = Path(tempfile.mkdtemp(prefix="rmcp-ray-", dir="/tmp"))
    dashboard = free_port()
    low = random.randrange(20000, 60000, 100)
    argv = [
        cli, "start", "--head", "--block", "--disable-usage-stats",
        f"--num-cpus={num_cpus}", f"--num-gpus={num_gpus}",
        "--node-ip-address=127.0.0.1", "--dashboard-host=127.0.0.1",
        f"--dashboard-port={dashboard}", f"--port={free_port()}",
        f"--temp-dir={temp_dir}", f"--ray-client-server-port={free_port()}",
        f"--node-manager-port={free_port()}", f"--object-manager-port={free_port()}",
        f"--metrics-export-port={free_port()}", f"--dashboard-agent-listen-port={free_port()}",
        f"--dashboard-agent-grpc-port={free_port()}", f"--runtime-env-agent-port={free_port()}",
        f"--min-worker-port={low}", f"--max-worker-port={low + 99}",
    ]  # fmt: skip
    log = temp_dir / "ray-start.log"
    env = {k: v for k, v in os.environ.items() if k != "RAY_ADDRESS"}
    env["RAY_USAGE_STATS_ENABLED"] = "0"
    with open(log, "wb") as out:
        proc = subprocess.Popen(
            argv, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
            start_new_session=True, env=env,
        )  # fmt: skip
    head = RayHead(f"http://127.0.0.1:{dashboard}", temp_dir, proc, log)
    deadline = time.monotonic() + START_TIMEOUT_S
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            text = log.read_text(errors="replace")[-2000:]
            head.stop()
            raise RuntimeError(f"`ray start --head` exited with {proc.returncode}: {text}")
        if _answers(head.address):
            return head
        time.sleep(0.5)
    text = log.read_text(errors="replace")[-2000:]
    head.stop()
    raise RuntimeError(f"the Ray head did not answer within {START_TIMEOUT_S:g}s: {text}")
