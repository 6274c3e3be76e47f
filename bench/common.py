"""Timing helpers shared by the benchmark scripts.

Machines here are noisy, so every script measures its baseline in the same run,
interleaved with the subject, and reports ratios next to absolute times. Each script's
headline figures go through ``figure()``: printed as a PASS/FAIL line, and collected by
``python -m bench`` (which names a file in ``$RESEARCH_MCP_BENCH_FIGURES``) into one table.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import statistics
import subprocess
import tempfile
import time
from collections.abc import Awaitable, Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any


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


FIGURES_ENV = "RESEARCH_MCP_BENCH_FIGURES"


def figure(bench: str, name: str, ratio: float, target: str, ok: bool, detail: str = "") -> bool:
    """One headline figure: a ratio to a same-run baseline, its target, the absolute numbers.

    Printed as a verdict line; appended as a JSON line to ``$RESEARCH_MCP_BENCH_FIGURES`` when
    ``python -m bench`` runs the script. Returns ``ok``."""
    print(verdict(name, ratio, target, ok) + (f"  [{detail}]" if detail else ""), flush=True)
    path = os.environ.get(FIGURES_ENV)
    if path:
        record = {"bench": bench, "name": name, "ratio": ratio, "target": target, "ok": ok, "detail": detail}
        with open(path, "a") as fh:
            fh.write(json.dumps(record) + "\n")
    return ok


def interleaved(subjects: dict[str, Callable[[], object]], rounds: int) -> dict[str, list[float]]:
    """Seconds per call of each subject, called in turn round after round (noise hits all alike)."""
    times: dict[str, list[float]] = {name: [] for name in subjects}
    for _ in range(rounds):
        for name, fn in subjects.items():
            t0 = time.perf_counter()
            fn()
            times[name].append(time.perf_counter() - t0)
    return times


async def ainterleaved(
    subjects: dict[str, Callable[[], Awaitable[object]]], rounds: int
) -> dict[str, list[float]]:
    """``interleaved`` for coroutines (tool calls through an MCP client)."""
    times: dict[str, list[float]] = {name: [] for name in subjects}
    for _ in range(rounds):
        for name, fn in subjects.items():
            t0 = time.perf_counter()
            await fn()
            times[name].append(time.perf_counter() - t0)
    return times


def server_with_noop(state: Path) -> Any:
    """research-mcp's server plus a tool that does nothing: its round trip is the MCP layer's
    own cost (framing, validation, the worker thread), the floor of every tool's answer."""
    from mcp_server.server import create_server

    server = create_server(state)

    @server.tool()
    def noop() -> dict[str, bool]:
        """Answer at once (the benches' baseline)."""
        return {"ok": True}

    return server


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
