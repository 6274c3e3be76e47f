"""Finding this test's processes (servers, sidecars) by their command line, through /proc."""

from __future__ import annotations

from pathlib import Path


def pids_with(*needles: str) -> list[int]:
    """Pids whose argv contains every one of ``needles`` as a whole argument."""
    wanted = [n.encode() for n in needles]
    pids = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            argv = (entry / "cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        if all(n in argv for n in wanted):
            pids.append(int(entry.name))
    return pids
