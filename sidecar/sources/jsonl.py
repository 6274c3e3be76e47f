"""metrics.jsonl: one JSON object per line, read from the saved offset."""

from __future__ import annotations

import logging
from pathlib import Path

from sidecar.batch import Batch
from sidecar.jsonl import parse_metrics_line
from sidecar.lines import split_lines
from sidecar.sources.io import READ_CAP, read_at, size_of

log = logging.getLogger("sidecar")


def read_jsonl(path: Path, batch: Batch, final: bool) -> int:
    """Parse what was appended since the saved offset into ``batch``; returns the file's size."""
    p = batch.progress
    size = size_of(path)
    if size < p.metrics_offset:
        log.warning(
            "metrics.jsonl shrank from %d to %d bytes (rewritten by the job?); reading it from the start",
            p.metrics_offset,
            size,
        )
        p.metrics_offset, p.metrics_skipping = 0, False
    if size <= p.metrics_offset:
        return size
    data = read_at(path, p.metrics_offset, READ_CAP)
    more = p.metrics_offset + len(data) < size
    chunk = split_lines(data, split_cr=False, skipping=p.metrics_skipping, final=final and not more)
    points = batch.points
    for line in chunk.lines:
        rec = parse_metrics_line(line)
        if rec is None:
            batch.bad_lines += 1
            continue
        if rec.skipped:
            batch.note_bad(rec.example and f"metrics.jsonl: {rec.example}", rec.skipped)
        if not rec.values:
            continue
        step = rec.step if rec.step is not None else p.metrics_records
        p.metrics_records += 1
        for k, v in rec.values.items():
            points.append((k, step, v, "jsonl", True))
    p.metrics_offset += chunk.consumed
    p.metrics_skipping = chunk.skipping
    batch.huge_lines += chunk.huge
    batch.partial_lines += chunk.partial
    batch.backlog = batch.backlog or more
    return size
