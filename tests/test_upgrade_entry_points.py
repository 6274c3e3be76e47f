"""Launch scripts already on disk (runs queued before an upgrade) still find what they call."""

from __future__ import annotations

import subprocess

import pytest

from tests.helpers import PYTHON


@pytest.mark.parametrize(
    ("old", "new"),
    [
        ("mcp_server.core.admit", "mcp_server.core.scheduling.gpu_attempt"),
        ("mcp_server.core.dispatch", "mcp_server.core.scheduling.dispatch"),
    ],
)
def test_modules_that_older_launch_scripts_call_still_run(old: str, new: str) -> None:
    proc = subprocess.run([PYTHON, "-m", old, "--help"], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    assert f"python -m {new}" in proc.stdout  # the same program, now at its new home
