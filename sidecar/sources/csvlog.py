"""Lightning's CSVLogger ``metrics.csv``: one row per logging call, ``step`` a column.

Lightning appends rows, but rewrites the whole file (with a wider header) when a new
metric appears. A changed header therefore means "same rows, more columns": the rows
already read are skipped by count, so none is stored twice.
"""

from __future__ import annotations

import csv
from pathlib import Path

from sidecar.batch import FileProgress
from sidecar.lines import split_lines
from sidecar.printed_formats import number
from sidecar.sources.io import READ_CAP, read_at, size_of

HEADER_CAP = 64 * 1024

Scalar = tuple[str, int, float]


def read_csv(path: Path, fp: FileProgress, final: bool) -> tuple[list[Scalar], bool]:
    """New rows since the saved offset → (key, step, value); True when more bytes wait."""
    size = size_of(path)
    head = read_at(path, 0, min(size, HEADER_CAP))
    if b"\n" not in head:
        return [], False  # not even a header yet
    header_line = head[: head.index(b"\n")]
    header = next(csv.reader([header_line.decode("utf-8", "replace")]))
    skip = 0
    if header != fp.state.get("header") or size < fp.offset:
        # New file, or rewritten with more columns: start after the header, skip rows we have.
        fp.state["header"] = header
        fp.offset = len(header_line) + 1
        skip = fp.records
    if size <= fp.offset:
        return [], False
    data = read_at(path, fp.offset, READ_CAP)
    more = fp.offset + len(data) < size
    chunk = split_lines(data, split_cr=False, final=final and not more)
    out: list[Scalar] = []
    step_col = header.index("step") if "step" in header else None
    for row in csv.reader(line.decode("utf-8", "replace") for line in chunk.lines):
        if skip:
            skip -= 1
            continue
        step = fp.records
        if step_col is not None and step_col < len(row) and (s := number(row[step_col])) is not None:
            step = int(s)
        fp.records += 1
        for i, (key, cell) in enumerate(zip(header, row, strict=False)):
            if i == step_col or not cell.strip():
                continue
            value = number(cell)
            if value is None:
                fp.bad += 1
                fp.example = fp.example or f"{key}={cell[:40]}"
            else:
                out.append((key, step, value))
    fp.offset += chunk.consumed
    return out, more
