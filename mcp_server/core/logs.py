"""Read the end (or a window) of a log file without reading the whole file.

Training logs reach gigabytes; the tail is found by reading fixed-size blocks backwards
from the end until enough newlines are seen, so cost scales with what is returned.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path

BLOCK = 64 * 1024


@dataclass(frozen=True)
class Tail:
    text: str
    start: int
    end: int
    size: int
    lines: int
    truncated: bool


EMPTY = Tail("", 0, 0, 0, 0, False)


def _decode(data: bytes) -> str:
    return data.decode("utf-8", errors="replace")


def tail_lines(
    path: Path, n: int, max_bytes: int, pattern: re.Pattern[str] | None = None, scan_cap: int = 0
) -> Tail:
    """The last ``n`` lines (matching ``pattern`` when given), at most ``max_bytes`` of text.

    With a pattern, at most ``scan_cap`` bytes from the end are examined.
    """
    try:
        with open(path, "rb") as fh:
            size = os.fstat(fh.fileno()).st_size
            if pattern is None:
                return _plain_tail(fh, size, n, max_bytes)
            return _filtered_tail(fh, size, n, max_bytes, pattern, scan_cap or 256 * 1024 * 1024)
    except FileNotFoundError:
        return EMPTY


def _plain_tail(fh, size: int, n: int, max_bytes: int) -> Tail:  # type: ignore[no-untyped-def]
    pos, buf = size, b""
    while pos > 0 and len(buf) < max_bytes:
        # A trailing newline ends the last line; it does not start another one.
        if buf.rstrip(b"\n").count(b"\n") >= n:
            break
        step = min(BLOCK, pos)
        pos -= step
        fh.seek(pos)
        buf = fh.read(step) + buf
    ends_nl = buf.endswith(b"\n")
    lines = (buf[:-1] if ends_nl else buf).split(b"\n") if buf else []
    if len(lines) > n:
        lines = lines[-n:]
    elif pos > 0 and lines:
        lines = lines[1:]  # the first one was cut by the byte budget
    out = b"\n".join(lines) + (b"\n" if ends_nl and lines else b"")
    if len(out) > max_bytes:
        out = out[-max_bytes:]
        nl = out.find(b"\n")
        if 0 <= nl < len(out) - 1:
            out = out[nl + 1 :]
    start = size - len(out)
    text = _decode(out)
    return Tail(text, start, size, size, _count_lines(out), start > 0)


def _count_lines(data: bytes) -> int:
    return data.count(b"\n") + (1 if data and not data.endswith(b"\n") else 0)


def _filtered_tail(fh, size: int, n: int, max_bytes: int, pattern: re.Pattern[str], scan_cap: int) -> Tail:  # type: ignore[no-untyped-def]
    pos = size
    carry = b""
    found: list[str] = []
    found_bytes = 0
    scanned = 0
    first_match_start = size
    while pos > 0 and len(found) < n and found_bytes < max_bytes and scanned < scan_cap:
        step = min(BLOCK, pos)
        pos -= step
        fh.seek(pos)
        block = fh.read(step) + carry
        scanned += step
        lines = block.split(b"\n")
        carry = lines[0] if pos > 0 else b""
        complete = lines[1:] if pos > 0 else lines
        offset = pos + (len(lines[0]) + 1 if pos > 0 else 0)
        positions = []
        for raw in complete:
            positions.append(offset)
            offset += len(raw) + 1
        for raw, at in zip(reversed(complete), reversed(positions), strict=True):
            if not raw:
                continue
            line = _decode(raw)
            if pattern.search(line):
                found.append(line)
                found_bytes += len(raw) + 1
                first_match_start = at
                if len(found) >= n or found_bytes >= max_bytes:
                    break
    truncated = pos > 0 and (len(found) >= n or found_bytes >= max_bytes or scanned >= scan_cap)
    found.reverse()
    text = "\n".join(found) + ("\n" if found else "")
    if len(text.encode()) > max_bytes:
        text = text.encode()[-max_bytes:].decode("utf-8", errors="ignore")
        truncated = True
    start = first_match_start if found else size
    return Tail(text, start, size, size, len(found), truncated)


def read_window(path: Path, offset: int, length: int) -> Tail:
    """``length`` bytes from ``offset`` (negative offset counts from the end)."""
    try:
        with open(path, "rb") as fh:
            size = os.fstat(fh.fileno()).st_size
            start = max(0, size + offset) if offset < 0 else min(offset, size)
            fh.seek(start)
            data = fh.read(length)
    except FileNotFoundError:
        return EMPTY
    text = _decode(data)
    end = start + len(data)
    return Tail(text, start, end, size, _count_lines(data), end < size)
