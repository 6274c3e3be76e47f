"""A small launch burst on a 1-slot machine: every call acked, every run finished, cheap waiting.

The full figure (2 servers × 100, 4 × 50) is ``python -m bench.launch_burst``; this is the
same code path at a size the suite can afford.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from bench.launch_burst import burst

# 200 launches at once: measured alone (see conftest's serial marker).
pytestmark = [pytest.mark.anyio, pytest.mark.serial]


async def test_two_servers_launch_a_burst_that_queues_without_python_waiters(
    state_dir: Path, workdir: Path
) -> None:
    servers, runs = 2, 6
    b = await burst(state_dir, workdir, servers, runs, "sleep 0.2", True, timeout=300)
    assert not b.errors, b.errors  # in full: which write, and how long it waited
    assert len(b.latencies) == servers * runs
    assert b.statuses == {"finished": servers * runs} and b.clean_exits == servers * runs
    # Waiting costs no interpreter per run: one dispatcher for the state dir, no Python
    # waiter, and no sidecar for a run that has not been admitted (one slot: one at a time,
    # plus the few still draining).
    assert b.peak_counts.get("python waiters", 0) == 0
    assert b.peak_counts.get("dispatcher", 0) <= 1
    assert b.peak_counts.get("sidecars", 0) <= 4, b.peak_counts
    assert b.peak_breakdown.get("launch scripts", 0) < 6 * servers * runs  # MB: a bash each
