"""Cut a byte buffer read at some file offset into complete lines. Pure functions, no I/O.

A partial last line waits for its end (the writer may be mid-line); a line over
``MAX_LINE`` is skipped and counted, even when it spans reads. For printed output, ``\\r``
ends a piece too (progress bars redraw with it), and each piece says whether it starts a
printed line (follows ``\\n``) and whether it ends one (is followed by ``\\n``): a bar's
last draw before its newline is the one that stays on screen.
"""

from __future__ import annotations

from dataclasses import dataclass, field

MAX_LINE = 1 << 20  # longer lines are skipped and counted as huge


@dataclass
class Lines:
    """Complete lines cut from a byte buffer read at some file offset."""

    lines: list[bytes]
    consumed: int  # bytes of the buffer accounted for; the offset advances by this
    huge: int = 0
    skipping: bool = False  # the buffer ended inside a huge line: skip to its end next time
    partial: int = 0  # an unterminated final line taken because the file is final
    # With split_cr only: new_line[i] says lines[i] follows a '\n' in this buffer, so it is a
    # printed line of its own rather than a '\r' redraw of the line before it (the first
    # line of a buffer continues whatever the previous read ended with: see ends_line);
    # ends[i] says lines[i] is followed by '\n' (it is the final draw of its printed line).
    new_line: list[bool] = field(default_factory=list)
    ends: list[bool] = field(default_factory=list)
    ends_line: bool = False  # the last separator consumed was '\n' (not a '\r' redraw)


def split_lines(
    data: bytes, *, split_cr: bool, skipping: bool = False, final: bool = False, max_line: int = MAX_LINE
) -> Lines:
    """Cut ``data`` into complete lines; an unterminated tail waits for more bytes.

    ``split_cr`` treats ``\\r`` as a line end too (progress bars redraw with it).
    ``final`` means the writer is gone, so an unterminated tail is a (partial) line.
    """
    out = Lines([], 0, skipping=skipping)
    seps = b"\r\n" if split_cr else b"\n"
    pos = 0
    after_nl = False  # the separator just consumed was '\n'
    if skipping:
        end = _first_sep(data, seps)
        if end < 0:
            out.consumed = len(data)
            if final:  # the writer is gone: the over-long line ends here, unterminated
                out.huge += 1
                out.skipping = False
            return out
        out.huge += 1
        out.skipping = False
        pos = end + 1
        after_nl = out.ends_line = data[end] == 10
    last = max(data.rfind(b"\n"), data.rfind(b"\r") if split_cr else -1)
    if last >= pos:
        body = data[pos:last]
        if split_cr:
            _split_redraws(body, out, after_nl, data[last] == 10, max_line)
        else:
            for piece in body.split(b"\n"):
                if len(piece) > max_line:
                    out.huge += 1
                elif piece:
                    out.lines.append(piece)
        pos = last + 1
        after_nl = out.ends_line = data[last] == 10
    tail = len(data) - pos
    if tail > max_line:
        if final:
            out.huge += 1
        else:
            out.skipping = True
        pos = len(data)
    elif tail and final:
        out.lines.append(data[pos:])
        if split_cr:
            out.new_line.append(after_nl)
            out.ends.append(True)
        out.partial = 1
        pos = len(data)
    out.consumed = pos
    return out


def _split_redraws(body: bytes, out: Lines, after_nl: bool, last_nl: bool, max_line: int) -> None:
    """Cut on CR and LF, noting which pieces start a printed line and which end one."""
    printed_lines = body.split(b"\n")
    final = len(printed_lines) - 1
    for i, printed in enumerate(printed_lines):
        new = after_nl or i > 0
        pieces = printed.split(b"\r")
        closes = i < final or last_nl  # this printed line's last piece is followed by '\n'
        shown = max((k for k, p in enumerate(pieces) if p), default=-1)  # its last draw ('a\r\n')
        for j, piece in enumerate(pieces):
            if len(piece) > max_line:
                out.huge += 1
            elif piece:
                out.lines.append(piece)
                out.new_line.append(new)
                out.ends.append(closes and j == shown)
                new = False


def _first_sep(data: bytes, seps: bytes) -> int:
    found = [i for i in (data.find(bytes([c])) for c in seps) if i >= 0]
    return min(found) if found else -1
