r"""Read the end (or a window) of a log file without reading the whole file.

Training logs reach gigabytes; the tail is found by reading fixed-size blocks backwards
from the end until enough newlines are seen, so cost scales with what is returned.

A filter is a user's regular expression, and some patterns take exponential time
(``(a+)+$``, ``(\w+\s?)+$``). The standard ``re`` engine holds the GIL for the whole match,
so one such call would freeze every other request of the server. Filters therefore run
on the ``regex`` engine with ``concurrent=True`` (the GIL is released while matching) and
one time budget for the whole scan; a filter that exceeds it is refused with an error
saying why, and the server never stops answering.

The log is the job's file: it may have been replaced by a FIFO or a directory. It is
opened non-blocking and read only when it is a regular file.
"""

from __future__ import annotations

import os
import stat
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from mcp_server.core.errors import InvalidInput

if TYPE_CHECKING:
    import regex

BLOCK = 64 * 1024
# A filtered search treats a longer line as several lines of about this size.
MAX_LINE = 1024 * 1024
# How much of each line a filter's regex is run over.
MATCH_PREFIX = 64 * 1024
# Seconds one filtered read may spend matching and scanning, whatever the pattern.
FILTER_BUDGET_S = 5.0
MAX_FILTER_CHARS = 200


@dataclass(frozen=True)
class Tail:
    text: str
    start: int
    end: int
    size: int
    lines: int
    truncated: bool
    # Why the file could not be read (not a regular file); the tail is then empty.
    problem: str | None = None


EMPTY = Tail("", 0, 0, 0, 0, False)


class FilterTooSlow(InvalidInput):
    """A filter did not finish within its time budget."""


def compile_filter(text: str) -> regex.Pattern[str]:
    """A user's filter as a pattern for ``tail_lines``, or an error naming what is wrong."""
    import regex  # only the filtered path pays for the engine

    if len(text) > MAX_FILTER_CHARS:
        raise InvalidInput(f"filter is longer than {MAX_FILTER_CHARS} characters.")
    try:
        return regex.compile(text)
    except (regex.error, ValueError, OverflowError) as err:
        raise InvalidInput(f"filter {text!r} is not a valid regular expression: {err}.") from None


def _open_regular(path: Path) -> tuple[Any, str | None]:
    """A binary file object for ``path``, or (None, why) when it is not a regular file."""
    fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_NOCTTY)
    mode = os.fstat(fd).st_mode
    if not stat.S_ISREG(mode):
        os.close(fd)
        kind = "a FIFO" if stat.S_ISFIFO(mode) else "a directory" if stat.S_ISDIR(mode) else "not a file"
        return None, f"{path.name} is {kind}, not a regular file (the job replaced it); nothing was read"
    return os.fdopen(fd, "rb"), None


def _decode(data: bytes) -> str:
    return data.decode("utf-8", errors="replace")


def tail_lines(
    path: Path,
    n: int,
    max_bytes: int,
    pattern: regex.Pattern[str] | None = None,
    scan_cap: int = 0,
    budget_s: float = FILTER_BUDGET_S,
) -> Tail:
    """The last ``n`` lines (matching ``pattern`` when given), at most ``max_bytes`` of text.

    With a pattern, at most ``scan_cap`` bytes from the end are examined, within
    ``budget_s`` seconds (else ``FilterTooSlow``).
    """
    try:
        fh, problem = _open_regular(path)
    except (FileNotFoundError, NotADirectoryError):
        return EMPTY
    if fh is None:
        return Tail("", 0, 0, 0, 0, False, problem)
    with fh:
        size = os.fstat(fh.fileno()).st_size
        if pattern is None:
            return _plain_tail(fh, size, n, max_bytes)
        cap = scan_cap or 256 * 1024 * 1024
        return _filtered_tail(fh, size, n, max_bytes, pattern, cap, budget_s)


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


def _too_slow(pattern: regex.Pattern[str], scanned: int, budget_s: float) -> FilterTooSlow:
    return FilterTooSlow(
        f"filter {pattern.pattern!r} did not finish within {budget_s:g} s "
        f"(after {scanned} bytes of the log); nested repetition such as (a+)+ or (\\w+\\s?)+$ "
        "can take exponential time. Simplify the pattern (e.g. 'loss' or 'loss=[0-9.]+'), "
        "or read a byte window with offset/length."
    )


def _filtered_tail(  # type: ignore[no-untyped-def]
    fh, size: int, n: int, max_bytes: int, pattern: regex.Pattern[str], scan_cap: int, budget_s: float
) -> Tail:
    deadline = time.monotonic() + budget_s
    floor = max(0, size - scan_cap)
    found: list[str] = []
    found_bytes = 0
    first_match_start = size
    stopped = False
    for at, raw in _lines_backwards(fh, size, floor):
        if not raw:
            continue
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise _too_slow(pattern, size - at, budget_s)
        # Only a prefix is searched (a match near the start is what log lines are written
        # for), with the GIL released and the time left as the bound.
        try:
            hit = pattern.search(_decode(raw[:MATCH_PREFIX]), timeout=remaining, concurrent=True)
        except TimeoutError:
            raise _too_slow(pattern, size - at, budget_s) from None
        if not hit:
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
        fh, problem = _open_regular(path)
    except (FileNotFoundError, NotADirectoryError):
        return EMPTY
    if fh is None:
        return Tail("", 0, 0, 0, 0, False, problem)
    with fh:
        size = os.fstat(fh.fileno()).st_size
        start = max(0, size + offset) if offset < 0 else min(offset, size)
        fh.seek(start)
        data = fh.read(length)
    text = _decode(data)
    end = start + len(data)
    return Tail(text, start, end, size, _count_lines(data), end < size)
