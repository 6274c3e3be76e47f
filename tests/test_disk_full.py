"""A disk that fills up as a run ends: its exit code survives, and is settled when space returns.

The state dir lives on a small tmpfs that the job itself fills. Needs root (to mount).
"""

from __future__ import annotations

import os
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from mcp_server.core.services import Services
from tests.conftest import kill_state_dir_jobs
from tests.helpers import wait_for

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="mounting a small tmpfs needs root")


@pytest.fixture
def small_disk(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    mount = tmp_path / "small"
    mount.mkdir()
    options = "size=6m,mode=0700"
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", options, "tmpfs", str(mount)], check=False)
    if done.returncode != 0:
        pytest.skip("cannot mount a tmpfs here")
    root = mount / "state"
    monkeypatch.setenv("RESEARCH_MCP_HOME", str(root))
    try:
        yield root
    finally:
        kill_state_dir_jobs(root)
        subprocess.run(["umount", "-l", str(mount)], check=False)


def test_the_exit_code_survives_a_full_disk_and_settles_when_space_returns(
    small_disk: Path, workdir: Path
) -> None:
    services = Services(small_disk)
    try:
        command = (
            'echo \'{"step": 1, "loss": 0.5}\' >> "$RESEARCH_METRICS_FILE"; '
            'head -c 20000000 /dev/zero > "$RESEARCH_RUN_DIR/../../fill" 2>/dev/null; '
            "touch full; while [ ! -f go ]; do sleep 0.05; done; exit 0"
        )
        run = services.runs.create(name="fills-the-disk", command=command, workdir=str(workdir))
        wait_for(lambda: (workdir / "full").exists(), 30, what="the disk to be full")
        (workdir / "go").touch()
        files = services.runs.files(run.id)
        # The exit code is on disk although the disk is full (its room was taken at launch).
        wait_for(lambda: files.read_exit_code() == 0, 30, what="the exit code, disk full")
        # Queries still answer meanwhile (from the store as it is), and the run is not lost.
        assert services.runs.get(run.id).status in ("launching", "running", "finished")
        assert run.id in {r.id for r in services.runs.list().runs}
        (small_disk / "fill").unlink()  # space returns
        ended = ("finished", "failed", "lost")
        wait_for(lambda: services.runs.get(run.id).status in ended, 30, what="the run to settle")
        done = services.runs.get(run.id)
        assert (done.status, done.exit_code) == ("finished", 0)
        # The metric written before the disk filled is kept: a sidecar that could not start or
        # write while the disk was full is (re)started by the server's periodic reconcile.
        def metrics():  # type: ignore[no-untyped-def]
            services.reconciler.reconcile()
            return services.runs.get(run.id).metrics

        wait_for(metrics, 60, 0.5, what="the metrics")
        assert [m.key for m in services.runs.get(run.id).metrics] == ["loss"]
    finally:
        services.close()
