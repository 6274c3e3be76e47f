"""Turn bytes a training job wrote into metric records. Pure functions, no I/O.

Two sources, no change to training code needed:

- ``metrics.jsonl``: one JSON object per line; numeric fields are metrics (bools are
  not), nested objects flatten to ``a/b``, ``step`` is optional.
- ``output.log``: what scripts print anyway — ``loss=0.5`` / ``loss: 0.5`` pairs for
  loss- and accuracy-like names, Hugging Face Trainer's printed dicts
  (``{'loss': 0.51, 'learning_rate': 5e-05, 'epoch': 0.1}``) and progress-bar postfixes
  (``50/100 [00:01<00:01, 30it/s, loss=0.123]``, redrawn with ``\\r``).

Anything malformed is counted, never fatal: a training log is not ours to reject.
"""

from __future__ import annotations

import json
import math
import re
from dataclasses import dataclass, field

from mcp_server.core.metric_keys import goal

MAX_LINE = 1 << 20  # longer lines are skipped and counted as huge
MAX_KEY_CHARS = 200
MAX_KEYS_PER_LINE = 1000
MAX_DEPTH = 4
MAX_STEP = 1 << 62
_BIG = 1 << 1000  # ints this large still convert to a float; beyond ~1e308 they overflow


class Record:
    """The numbers of one line. ``step`` is None when the line did not say."""

    __slots__ = ("skipped", "step", "values")

    def __init__(
        self, values: dict[str, float] | None = None, step: int | None = None, skipped: int = 0
    ) -> None:
        self.values: dict[str, float] = {} if values is None else values
        self.step = step
        self.skipped = skipped  # values that were not numbers (or keys too long / too many)


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
    # line of a buffer continues whatever the previous read ended with: see ends_line).
    new_line: list[bool] = field(default_factory=list)
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
            _split_redraws(body, out, after_nl, max_line)
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
        out.partial = 1
        pos = len(data)
    out.consumed = pos
    return out


def _split_redraws(body: bytes, out: Lines, after_nl: bool, max_line: int) -> None:
    """Cut on CR and LF, noting which pieces start a printed line (follow an LF, not a CR redraw)."""
    for i, printed in enumerate(body.split(b"\n")):
        new = after_nl or i > 0
        for piece in printed.split(b"\r"):
            if len(piece) > max_line:
                out.huge += 1
            elif piece:
                out.lines.append(piece)
                out.new_line.append(new)
                new = False


def _first_sep(data: bytes, seps: bytes) -> int:
    found = [i for i in (data.find(bytes([c])) for c in seps) if i >= 0]
    return min(found) if found else -1


# ---- metrics.jsonl ----------------------------------------------------------------------


def _number(value: object) -> float | None:
    kind = type(value)
    if kind is float:
        return value  # type: ignore[return-value]
    if kind is int:  # bool is a subclass of int, but type() tells them apart
        try:
            return float(value)  # type: ignore[arg-type]
        except OverflowError:  # an int too large for a double
            return None
    return None


def _step(value: object) -> int | None:
    number = _number(value)
    if number is None or not math.isfinite(number) or number != int(number) or not 0 <= number < MAX_STEP:
        return None
    return int(number)


def _flatten(obj: dict[str, object], prefix: str, depth: int, rec: Record) -> None:
    values = rec.values
    for key, value in obj.items():
        number = _number(value)
        if number is not None and len(values) < MAX_KEYS_PER_LINE and len(key) + len(prefix) <= MAX_KEY_CHARS:
            values[prefix + key if prefix else key] = number
        elif type(value) is dict and depth < MAX_DEPTH:
            _flatten(value, f"{prefix}{key}/", depth + 1, rec)  # type: ignore[arg-type]
        else:
            rec.skipped += 1


_json = json.JSONDecoder().decode


def parse_metrics_line(line: bytes) -> Record | None:
    """One metrics.jsonl line → its numbers; None when the line is not a JSON object."""
    try:
        obj = _json(line.decode("utf-8"))
    except (ValueError, RecursionError):  # UnicodeDecodeError is a ValueError
        return None
    if type(obj) is not dict:
        return None
    rec = Record()
    if "step" in obj:
        rec.step = _step(obj.pop("step"))
        if rec.step is None:
            rec.skipped += 1
    if len(obj) > MAX_KEYS_PER_LINE:
        _flatten(obj, "", 0, rec)
        return rec
    values = rec.values
    for key, value in obj.items():  # the common flat line, inlined (this runs per line)
        kind = type(value)
        if kind is float and len(key) <= MAX_KEY_CHARS:
            values[key] = value
        elif kind is int and len(key) <= MAX_KEY_CHARS and -_BIG < value < _BIG:
            values[key] = float(value)
        else:
            _flatten({key: value}, "", 0, rec)
    return rec


# ---- output.log -------------------------------------------------------------------------

_NUM = r"[-+]?(?:(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?|nan|inf(?:inity)?)"
# 'key': value inside a printed dict; numpy/torch scalars print as np.float64(0.5) / tensor(0.5).
_DICT = re.compile(r"\{[^{}]{1,20000}\}")
_DICT_PAIR = re.compile(
    r"""['"]([^'"]{1,200})['"]\s*:\s*(?:np\.\w+\(|numpy\.\w+\(|tensor\()?\s*(""" + _NUM + r")(?!\w)",
    re.IGNORECASE,
)
# key=value or key: value, the key not glued to a preceding word.
_PAIR = re.compile(r"(?<![\w./-])([A-Za-z_][\w./-]{0,100})\s*[=:]\s*(" + _NUM + r")(?!\w)", re.IGNORECASE)
_STEP = re.compile(r"\b(?:global_step|step|iter(?:ation)?)\b\s*[=:]?\s*(\d{1,18})\b", re.IGNORECASE)
_PROGRESS = re.compile(r"\|\s*(\d{1,18})/\d{1,18}\s*\[")  # tqdm: " 50/100 ["


def _float(text: str) -> float:
    return float(text)  # float() reads nan, inf, infinity in any case


def parse_log_line(line: str) -> Record | None:
    """A printed line → its metrics, or None when it carries none we recognise."""
    if "{" in line:
        for match in _DICT.finditer(line):
            values = {k: _float(v) for k, v in _DICT_PAIR.findall(match.group(0))}
            # A printed config dict is not a metrics dict: ask for a metric name (or Trainer's epoch).
            if values and ("epoch" in values or any(goal(k) for k in values)):
                rec = Record(values=values)
                for key in ("step", "global_step"):
                    if key in values:
                        rec.step = _step(values.pop(key))
                return rec
    if "=" not in line and ":" not in line:
        return None
    values = {k: _float(v) for k, v in _PAIR.findall(line) if goal(k)}
    if not values:
        return None
    rec = Record(values=values)
    if m := _STEP.search(line) or _PROGRESS.search(line):
        rec.step = _step(int(m.group(1)))
    return rec


def decode(line: bytes) -> str:
    return line.decode("utf-8", errors="replace")
