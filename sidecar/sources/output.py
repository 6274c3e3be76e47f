"""output.log: what the job printed, read from the saved offset through ``PrintedStream``."""

from __future__ import annotations

import json
from pathlib import Path

from sidecar.batch import Batch
from sidecar.lines import split_lines
from sidecar.printed import PrintedStream
from sidecar.sources.io import READ_CAP, read_at, size_of


def read_output(path: Path, batch: Batch, final: bool, all_ranks: bool) -> int:
    """Parse what was printed since the saved offset into ``batch``; returns the file's size."""
    p = batch.progress
    size = size_of(path)
    if not p.log_parsing:
        return size
    if size < p.output_offset:  # rewritten: start afresh
        p.output_offset, p.output_skipping, p.output_state = 0, False, ""
    if size > p.output_offset:
        data = read_at(path, p.output_offset, READ_CAP)
        more = p.output_offset + len(data) < size
        last = final and not more
        chunk = split_lines(data, split_cr=True, skipping=p.output_skipping, final=last)
        stream = PrintedStream(json.loads(p.output_state or "{}"), p.output_records, all_ranks)
        for line, new_line, ends in zip(chunk.lines, chunk.new_line, chunk.ends, strict=True):
            stream.feed(line.decode("utf-8", errors="replace"), new_line, ends)
        if last:
            stream.finish()
        _take(stream, batch)
        p.output_offset += chunk.consumed
        p.output_skipping = chunk.skipping
        batch.huge_lines += chunk.huge
        batch.backlog = batch.backlog or more
    elif final and p.output_state:
        stream = PrintedStream(json.loads(p.output_state), p.output_records, all_ranks)
        stream.finish()  # a dict still waiting for its bar when the job ended
        _take(stream, batch)
    return size


def _take(stream: PrintedStream, batch: Batch) -> None:
    p = batch.progress
    state = stream.state()
    p.output_state = json.dumps(state, separators=(",", ":")) if state else ""
    p.output_records = stream.records
    if stream.bad:
        batch.note_bad(stream.example and f"output: {stream.example}", stream.bad)
    batch.points.extend((k, step, v, "log", exact) for k, step, v, exact in stream.points)
