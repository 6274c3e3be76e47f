"""Shared fixtures: a private state dir (so a private tmux socket) per test, torn down fully."""

from __future__ import annotations

import atexit
import contextlib
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from mcp_server.core.paths import StateDir
from tests.fakegpus import FakeGpus, path_without_slurm
from tests.procs import pids_with

# Short grace periods keep stop tests fast; they are the same knobs a user sets.
os.environ.setdefault("RESEARCH_MCP_STOP_GRACE_S", "1")
# Tests behave the same whether or not a Slurm or a GPU is up on this machine: the cluster
# type is pinned (cluster tests unset it) and cpu_only's run limit cannot stall a test.
os.environ.setdefault("RESEARCH_MCP_CLUSTER_TYPE", "cpu_only")
os.environ.setdefault("RESEARCH_MCP_CPU_RUN_LIMIT", "64")
os.environ.setdefault("RESEARCH_MCP_QUEUE_POLL_S", "0.1")
# Reports go to the project dir, by default the working directory (this repository): tests
# that write one without naming a project write it in a throwaway directory instead.
if "RESEARCH_MCP_PROJECT_DIR" not in os.environ:
    os.environ["RESEARCH_MCP_PROJECT_DIR"] = tempfile.mkdtemp(prefix="rmcp-test-project-")
    atexit.register(shutil.rmtree, os.environ["RESEARCH_MCP_PROJECT_DIR"], True)


# The README's command runs the suite on several xdist workers (most tests wait on real jobs)
# and then the ``serial`` ones alone. Tests of one shared engine (the machine's one Slurm, a
# Ray head per worker) stay on one worker, in order, like a user's scheduler sees them.
SHARED_ENGINES = ("slurm", "ray")


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    for item in items:
        for engine in SHARED_ENGINES:
            if item.get_closest_marker(engine) is not None:
                item.add_marker(pytest.mark.xdist_group(engine))


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


def sidecar_pids(root: Path) -> list[int]:
    """Pids of sidecar processes watching runs of this state dir."""
    return pids_with("sidecar", str(root))


def kill_state_dir_jobs(root: Path) -> None:
    """Kill the sidecars, notification senders, every job process group and the private tmux
    server of a state dir."""
    for pid in sidecar_pids(root) + pids_with("mcp_server.core.workflow.notifications.sender", str(root)):
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
    for pgid_file in root.glob("runs/*/pgid"):
        with contextlib.suppress(ValueError, ProcessLookupError, PermissionError, FileNotFoundError):
            os.killpg(int(pgid_file.read_text().strip()), signal.SIGKILL)
    subprocess.run(
        ["tmux", "-L", StateDir(root).tmux_socket, "kill-server"], capture_output=True, check=False
    )


@pytest.fixture
def state_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    root = (tmp_path / "state").resolve()
    monkeypatch.setenv("RESEARCH_MCP_HOME", str(root))
    yield root
    kill_state_dir_jobs(root)


@pytest.fixture
def services(state_dir: Path):  # type: ignore[no-untyped-def]
    from mcp_server.core.services import Services

    sv = Services(state_dir)
    yield sv
    sv.close()


@pytest.fixture
def fake_gpus(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[FakeGpus]:
    """4 fake GPUs (GPU 1 busy with a foreign process) on a machine pinned to local_gpu."""
    gpus = FakeGpus(tmp_path / "nvml-inventory.json")
    monkeypatch.setenv("RESEARCH_MCP_FAKE_NVML", str(gpus.path))
    monkeypatch.setenv("RESEARCH_MCP_CLUSTER_TYPE", "local_gpu")
    yield gpus
    gpus.close()


@pytest.fixture
def no_slurm(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> str:
    """This process sees a machine without Slurm's commands and without a pinned cluster type."""
    path = path_without_slurm(tmp_path / "bin-without-slurm")
    monkeypatch.setenv("PATH", path)
    monkeypatch.delenv("RESEARCH_MCP_CLUSTER_TYPE", raising=False)
    for key in [k for k in os.environ if k.startswith("SLURM_")]:
        monkeypatch.delenv(key)
    return path


@pytest.fixture
def workdir(tmp_path: Path) -> Path:
    path = tmp_path / "project dir"  # a space, so every path must be quoted
    path.mkdir()
    return path


def wait_for(predicate, timeout: float = 15.0, interval: float = 0.05, what: str = "condition"):  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        time.sleep(interval)


PYTHON = sys.executable


@pytest.fixture
def fake_backend(state_dir: Path) -> Iterator[type]:
    """The in-process backend (tests/fake_backend.py), registered as ``fake`` for this test."""
    from mcp_server.core.backends import registry
    from tests.fake_backend import FakeBackend

    registry.register(FakeBackend.name, FakeBackend)
    yield FakeBackend
    FakeBackend.kill_all(str(state_dir))
    registry.unregister(FakeBackend.name)
