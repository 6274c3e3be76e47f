"""Per-run metric summaries (count, last, min, max) and a run's best value of one metric.

This is the single seam between sweeps/resources and wherever metrics live. Today it
reads the run's ``metrics.jsonl`` (one JSON object per line, appended by the job to
``$RESEARCH_METRICS_FILE``); when the sidecar's metrics table exists, point
``_load_stats`` and ``recent_records`` at it and nothing else changes.

Reading is incremental: summaries are cached per file with the byte offset already
consumed, so ranking a sweep re-reads only what its runs appended since the last call.
"""

from __future__ import annotations

import json
import math
import threading
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Literal

from mcp_server.core.jobfiles import JobFiles
from mcp_server.core.logs import tail_lines
from mcp_server.core.paths import StateDir

Direction = Literal["min", "max"]
# Keys that index a record rather than measure something.
STEP_KEYS: tuple[str, ...] = ("step", "_step", "global_step")
IGNORED_KEYS: frozenset[str] = frozenset({*STEP_KEYS, "timestamp", "_timestamp", "time", "ts"})
_READ_CHUNK = 4 * 1024 * 1024


@dataclass(frozen=True)
class MetricStats:
    key: str
    count: int
    last: float
    last_step: float | None
    min: float
    min_step: float | None
    max: float
    max_step: float | None

    def best(self, direction: Direction) -> tuple[float, float | None]:
        return (self.min, self.min_step) if direction == "min" else (self.max, self.max_step)


@dataclass
class _FileState:
    inode: int
    offset: int
    records: int
    stats: dict[str, MetricStats] = field(default_factory=dict)


_cache: dict[Path, _FileState] = {}
_cache_lock = threading.Lock()


def _number(value: object) -> float | None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    number = float(value)
    return number if math.isfinite(number) else None


def _fold(stats: dict[str, MetricStats], record: dict[str, object], index: int) -> None:
    step: float | None = None
    for key in STEP_KEYS:
        step = _number(record.get(key))
        if step is not None:
            break
    if step is None:
        step = float(index)
    for key, raw in record.items():
        if key in IGNORED_KEYS:
            continue
        value = _number(raw)
        if value is None:
            continue
        old = stats.get(key)
        if old is None:
            stats[key] = MetricStats(key, 1, value, step, value, step, value, step)
            continue
        new = replace(old, count=old.count + 1, last=value, last_step=step)
        if value < old.min:
            new = replace(new, min=value, min_step=step)
        if value > old.max:
            new = replace(new, max=value, max_step=step)
        stats[key] = new


def _read_jsonl(path: Path) -> dict[str, MetricStats]:
    """Fold newly appended complete lines of ``path`` into its cached summary."""
    try:
        st = path.stat()
    except FileNotFoundError:
        return {}
    with _cache_lock:
        state = _cache.get(path)
        if state is None or state.inode != st.st_ino or st.st_size < state.offset:
            state = _FileState(inode=st.st_ino, offset=0, records=0)
            _cache[path] = state
        if st.st_size == state.offset:
            return dict(state.stats)
        with open(path, "rb") as fh:
            fh.seek(state.offset)
            while True:
                chunk = fh.read(_READ_CHUNK)
                if not chunk:
                    break
                end = chunk.rfind(b"\n")
                if end < 0:
                    break  # a line still being written: read it next time, whole
                for line in chunk[: end + 1].splitlines():
                    state.records += 1
                    try:
                        record = json.loads(line)
                    except ValueError:
                        continue
                    if isinstance(record, dict):
                        _fold(state.stats, record, state.records)
                state.offset += end + 1
                fh.seek(state.offset)
        return dict(state.stats)


def _load_stats(state: StateDir, run_id: str) -> dict[str, MetricStats]:
    """Where summaries come from. The one line to change when metrics move to the store."""
    return _read_jsonl(JobFiles(state.run_dir(run_id)).metrics)


def metric_summary(state: StateDir, run_id: str, keys: list[str] | None = None) -> dict[str, MetricStats]:
    stats = _load_stats(state, run_id)
    if keys is not None:
        stats = {k: v for k, v in stats.items() if k in keys}
    return dict(sorted(stats.items()))


def best_value(
    state: StateDir, run_id: str, metric: str, direction: Direction
) -> tuple[float, float, float | None] | None:
    """(best value, last value, step of the best) of ``metric`` for one run, or None if never logged."""
    stats = _load_stats(state, run_id).get(metric)
    if stats is None:
        return None
    value, step = stats.best(direction)
    return value, stats.last, step


def recent_records(state: StateDir, run_id: str, n: int = 20) -> list[dict[str, object]]:
    """The last ``n`` metric records of a run, as logged (complete JSON objects only)."""
    tail = tail_lines(JobFiles(state.run_dir(run_id)).metrics, n, 256 * 1024)
    records: list[dict[str, object]] = []
    for line in tail.text.splitlines():
        try:
            record = json.loads(line)
        except ValueError:
            continue
        if isinstance(record, dict):
            records.append(record)
    return records
