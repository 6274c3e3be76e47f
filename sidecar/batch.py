"""What one poll read from a run's metric sources, before it is committed.

The saved progress (offsets, counters, parser state) travels with the points it accounts
for: the writer commits both in one transaction, so a sidecar killed at any instant
resumes exactly where the last commit ended.
"""

from __future__ import annotations

import dataclasses
from typing import Any

# (key, step, value, source kind, the step is the source's own rather than inferred)
Point = tuple[str, int, float, str, bool]

# Sources of one key rank: a file the framework writes beats its printed output (exact
# steps, full precision); metrics.jsonl, written on purpose, beats both.
RANK = {"jsonl": 3, "tfevents": 2, "csv": 2, "trainer_state": 2, "log": 1}
FILE_KINDS = frozenset(k for k, rank in RANK.items() if rank == 2)


@dataclasses.dataclass
class Progress:
    """How far metrics.jsonl and output.log have been read (one row of the sidecars table)."""

    metrics_offset: int = 0
    metrics_records: int = 0
    metrics_skipping: bool = False
    output_offset: int = 0
    output_records: int = 0
    output_skipping: bool = False
    log_parsing: bool = True
    output_state: str = ""


@dataclasses.dataclass
class FileProgress:
    """How far one framework log file has been read (one row of the metric_files table)."""

    path: str  # relative to the run's workdir
    kind: str  # tfevents | csv | trainer_state
    offset: int = 0
    records: int = 0
    state: dict[str, Any] = dataclasses.field(default_factory=dict)
    stored: bool = False  # the row exists in the store
    points: int = 0  # this batch's counters, added to the row's
    bad: int = 0
    example: str = ""

    def advanced(self) -> FileProgress:
        """A copy for a new batch (counters at zero)."""
        return dataclasses.replace(self, state=dict(self.state), points=0, bad=0, example="")


@dataclasses.dataclass
class Batch:
    progress: Progress
    points: list[Point] = dataclasses.field(default_factory=list)
    files: dict[str, FileProgress] = dataclasses.field(default_factory=dict)  # changed file rows
    bad_lines: int = 0
    non_numeric: int = 0
    example: str = ""  # the first value that looked like a metric but was not a number
    huge_lines: int = 0
    partial_lines: int = 0
    duplicates: int = 0  # set by the writer: points another source's series already has
    backlog: bool = False

    def counters(self) -> tuple[int, int, int, int]:
        return (self.bad_lines, self.non_numeric, self.huge_lines, self.partial_lines)

    def note_bad(self, example: str | None, count: int = 1) -> None:
        self.non_numeric += count
        if example and not self.example:
            self.example = example[:120]

    def empty(self, before: Progress) -> bool:
        return self.progress == before and not self.points and not self.files and not any(self.counters())
