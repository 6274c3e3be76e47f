"""Timing helpers shared by the benchmark scripts.

Machines here are noisy, so every script measures its baseline in the same run,
interleaved with the subject, and reports ratios next to absolute times.
"""

from __future__ import annotations

import contextlib
import os
import signal
import statistics
import subprocess
import tempfile
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path


def pct(values: Sequence[float], q: float) -> float:
    ordered = sorted(values)
    if not ordered:
        return float("nan")
    k = min(len(ordered) - 1, max(0, round(q / 100 * (len(ordered) - 1))))
    return ordered[k]


def summary(label: str, values: Sequence[float], unit: str = "ms", scale: float = 1000.0) -> str:
    return (
        f"{label:<34} n={len(values):<4} median={statistics.median(values) * scale:9.2f}{unit}"
        f"  p95={pct(values, 95) * scale:9.2f}{unit}  min={min(values) * scale:9.2f}{unit}"
    )


def verdict(name: str, value: float, target: str, ok: bool) -> str:
    return f"{'PASS' if ok else 'FAIL'}  {name} = {value:.3f} (target {target})"


@contextmanager
def temp_state_dir() -> Iterator[Path]:
    """A throwaway state dir whose tmux server and jobs are cleaned up afterwards."""
    with tempfile.TemporaryDirectory(prefix="rmcp-bench-") as tmp:
        root = Path(tmp) / "state"
        try:
            yield root
        finally:
            from mcp_server.core.paths import StateDir

            if root.exists():
                subprocess.run(["tmux", "-L", StateDir(root).tmux_socket, "kill-server"], capture_output=True)
                end_sidecars(root)


def pids_with(*needles: str) -> list[int]:
    """Pids whose argv holds every one of ``needles`` as a whole argument."""
    wanted = [n.encode() for n in needles]
    pids = []
    for entry in Path("/proc").iterdir():
        try:
            argv = (entry / "cmdline").read_bytes().split(b"\0") if entry.name.isdigit() else []
        except OSError:
            continue
        if all(n in argv for n in wanted):
            pids.append(int(entry.name))
    return pids


def sidecar_pids(root: Path) -> list[int]:
    return pids_with("sidecar", str(root))


def end_sidecars(root: Path, grace_s: float = 5.0) -> None:
    """Let the bench's sidecars finish (their runs ended), then kill any left, before the dir goes."""
    deadline = time.monotonic() + grace_s
    while sidecar_pids(root) and time.monotonic() < deadline:
        time.sleep(0.1)
    for pid in sidecar_pids(root):
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
