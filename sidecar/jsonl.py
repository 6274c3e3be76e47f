"""One ``metrics.jsonl`` line into its numbers. Pure functions, no I/O.

One JSON object per line; numeric fields are metrics (bools are not), nested objects
flatten to ``a/b``, ``step`` is optional. Anything malformed is counted, never fatal: a
training log is not ours to reject.
"""

from __future__ import annotations

import json
import math

MAX_KEY_CHARS = 200
MAX_KEYS_PER_LINE = 1000
MAX_DEPTH = 4
MAX_STEP = 1 << 62
_BIG = 1 << 1000  # ints this large still convert to a float; beyond ~1e308 they overflow


class Record:
    """The numbers of one line. ``step`` is None when the line did not say."""

    __slots__ = ("example", "skipped", "step", "values")

    def __init__(
        self, values: dict[str, float] | None = None, step: int | None = None, skipped: int = 0
    ) -> None:
        self.values: dict[str, float] = {} if values is None else values
        self.step = step
        self.skipped = skipped  # values that were not numbers (or keys too long / too many)
        self.example: str | None = None  # the first skipped value, shown in get_run's ingest


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
            if rec.example is None:
                rec.example = f"{prefix}{key}={json.dumps(value)[:60]}"


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
        raw = obj.pop("step")
        rec.step = _step(raw)
        if rec.step is None:
            rec.skipped += 1
            rec.example = f"step={json.dumps(raw)[:60]}"
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
