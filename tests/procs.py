"""Finding this test's processes (servers, sidecars) by their command line, through /proc."""

from __future__ import annotations

from pathlib import Path


def argvs() -> dict[int, list[bytes]]:
    """Every visible process's argv (processes that end meanwhile are skipped)."""
    out = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                out[int(entry.name)] = (entry / "cmdline").read_bytes().split(b"\0")
            except OSError:
                continue
    return out


def pids_with(*needles: str) -> list[int]:
    """Pids whose argv contains every one of ``needles`` as a whole argument."""
    wanted = [n.encode() for n in needles]
    return [pid for pid, argv in argvs().items() if all(n in argv for n in wanted)]


def pids_mentioning(text: str) -> list[int]:
    """Pids with ``text`` anywhere in an argument."""
    wanted = text.encode()
    return [pid for pid, argv in argvs().items() if any(wanted in arg for arg in argv)]
