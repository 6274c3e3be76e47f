"""Read the end (or a window) of a log file without reading the whole file.

Training logs reach gigabytes; the tail is found by reading fixed-size blocks backwards
from the end until enough newlines are seen, so cost scales with what is returned.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

BLOCK = 64 * 1024
# A filtered search treats a longer line as several lines of about this size.
MAX_LINE = 1024 * 1024
# How much of each line a filter's regex is run over.
MATCH_PREFIX = 64 * 1024


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
    elif pos > 0 and len(lines) > 1:
        # The first one was cut by the byte budget. A lone line is kept even so: a
        # progress bar that redraws with '\r' is one line longer than any budget, and
        # its end is what the reader wants, not an empty answer.
        lines = lines[1:]
    out = b"\n".join(lines) + (b"\n" if ends_nl and lines else b"")
    if len(out) > max_bytes:
        out = out[-max_bytes:]
        nl = out.find(b"\n")
        out = out[nl + 1 :] if 0 <= nl < len(out) - 1 else _from_char_boundary(out)
    start = size - len(out)
    text = _decode(out)
    return Tail(text, start, size, size, _count_lines(out), start > 0)


def _from_char_boundary(data: bytes) -> bytes:
    """Drop UTF-8 continuation bytes a byte cut left at the front (at most three)."""
    skip = 0
    while skip < min(3, len(data)) and data[skip] & 0xC0 == 0x80:
        skip += 1
    return data[skip:]


def _count_lines(data: bytes) -> int:
    return data.count(b"\n") + (1 if data and not data.endswith(b"\n") else 0)


def _lines_backwards(fh, size: int, floor: int) -> Iterator[tuple[int, bytes]]:  # type: ignore[no-untyped-def]
    """Lines of ``[floor, size)`` newest first, each with the offset where it starts.

    Both '\n' and '\r' end a line: progress bars (tqdm) redraw with '\r' alone, and each
    redraw is what a filter should see. A line longer than ``MAX_LINE`` comes back in
    pieces of about that size, so a log with no separators at all still costs linear
    time and bounded memory. A partial line cut by ``floor`` is not returned.
    """
    pos = size
    partial: list[bytes] = []  # the line being assembled, its later pieces first
    partial_len = 0
    while pos > floor:
        step = min(BLOCK, pos - floor)
        pos -= step
        fh.seek(pos)
        pieces = fh.read(step).replace(b"\r", b"\n").split(b"\n")
        starts = [pos]
        for piece in pieces[:-1]:
            starts.append(starts[-1] + len(piece) + 1)
        for i in range(len(pieces) - 1, -1, -1):
            partial.append(pieces[i])
            partial_len += len(pieces[i])
            if i == 0 and pos > 0:
                break  # this line may begin in an earlier block
            yield starts[i], b"".join(reversed(partial))
            partial, partial_len = [], 0
        if partial_len >= MAX_LINE:
            yield pos, b"".join(reversed(partial))
            partial, partial_len = [], 0


def _filtered_tail(fh, size: int, n: int, max_bytes: int, pattern: re.Pattern[str], scan_cap: int) -> Tail:  # type: ignore[no-untyped-def]
    floor = max(0, size - scan_cap)
    found: list[str] = []
    found_bytes = 0
    first_match_start = size
    stopped = False
    for at, raw in _lines_backwards(fh, size, floor):
        # Only a prefix is searched: a user's regex over a megabyte line can backtrack
        # for minutes, and a match near the start is what log lines are written for.
        if not raw or not pattern.search(_decode(raw[:MATCH_PREFIX])):
            continue
        found.append(_decode(raw))
        found_bytes += len(raw) + 1
        first_match_start = at
        if len(found) >= n or found_bytes >= max_bytes:
            stopped = True
            break
    truncated = first_match_start > 0 if stopped else floor > 0
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
