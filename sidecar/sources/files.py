"""Framework log files under the run's workdir, found with no configuration, read incrementally.

Found: TensorBoard event files (``events.out.tfevents.*``: torch's SummaryWriter in
``runs/…``, Lightning's ``lightning_logs/version_N/``, Keras' TensorBoard callback, HF
``report_to="tensorboard"``), Lightning's ``metrics.csv`` and HF's ``trainer_state.json``.
A file counts when it was written after the run started. Several runs may share a
workdir (a sweep), so a file is only taken when it is this run's: an event file names its
writer's pid, and a live writer must be in the run's session; a file that cannot be told
apart that way is taken only when no other run in the workdir ran between this run's
start and the file's last write.

The workdir is walked at most every ``discover_s`` (bounded in depth and entries, hidden
and package directories skipped); known files are stat'ed each poll and read only when
they grew.
"""

from __future__ import annotations

import json
import logging
import os
import socket
from collections.abc import Callable
from pathlib import Path

from mcp_server.core.scheduling.procs import session_of
from sidecar.batch import Batch, FileProgress
from sidecar.sources import tfevents
from sidecar.sources.csvlog import read_csv
from sidecar.sources.io import READ_CAP, read_at, stat_of
from sidecar.sources.trainer_state import PATH as TRAINER_STATE
from sidecar.sources.trainer_state import newest, read_trainer_state

log = logging.getLogger("sidecar")

MAX_DEPTH = 8
MAX_ENTRIES = 20_000
SKIP_DIRS = frozenset({"node_modules", "__pycache__", "site-packages", "venv", "env"})
START_SLACK_S = 1.0

Scalar = tuple[str, int, float]  # file times and the run's start come from different clocks' readings


def kind_of(name: str) -> str | None:
    if name.startswith("events.out.tfevents."):
        return "tfevents"
    if name == "metrics.csv":
        return "csv"
    if name == "trainer_state.json":
        return "trainer_state"
    return None


def walk(root: Path) -> list[tuple[Path, os.stat_result]]:
    """Candidate files under ``root`` (breadth first, bounded), with their stat."""
    found: list[tuple[Path, os.stat_result]] = []
    queue, seen = [(root, 0)], 0
    while queue and seen < MAX_ENTRIES:
        directory, depth = queue.pop(0)
        try:
            entries = list(os.scandir(directory))
        except OSError:
            continue
        for entry in entries:
            seen += 1
            try:
                if entry.is_dir(follow_symlinks=False):
                    if depth < MAX_DEPTH and not entry.name.startswith(".") and entry.name not in SKIP_DIRS:
                        queue.append((Path(entry.path), depth + 1))
                elif kind_of(entry.name) is not None:
                    found.append((Path(entry.path), entry.stat()))
            except OSError:
                continue
    return found


class FileSources:
    """The log files one run's sidecar reads, and how far (mirrors the metric_files rows)."""

    def __init__(self, workdir: str, rows: dict[str, dict[str, object]]) -> None:
        self.root = Path(workdir)
        self.progress: dict[str, FileProgress] = {}
        for path, row in rows.items():
            self.progress[path] = FileProgress(
                path=path,
                kind=str(row["kind"]),
                offset=int(row["offset"]),  # type: ignore[call-overload]
                records=int(row["records"]),  # type: ignore[call-overload]
                state=json.loads(str(row["state"]) or "{}"),
                stored=True,
            )
        self.trainer_states: list[Path] = []  # every trainer_state.json of this run
        self.rejected: set[str] = set()
        self.seen: dict[str, tuple[int, int]] = {}  # path → (size, mtime_ns) when last read
        self.host = socket.gethostname()

    # ---- finding --------------------------------------------------------------------------

    def discover(
        self, started_at: float, local_pgid: int | None, shared_after: Callable[[float], int]
    ) -> None:
        """Walk the workdir for this run's log files. ``shared_after(t)``: how many other runs
        sharing the workdir ran between this run's start and ``t``."""
        if not self.root.is_dir():
            return
        for path, st in walk(self.root):
            rel = str(path.relative_to(self.root))
            kind = kind_of(path.name)
            if kind == "trainer_state":
                if path not in self.trainer_states and self._ours(path, st, started_at, None, shared_after):
                    self.trainer_states.append(path)
                    if TRAINER_STATE not in self.progress:
                        self.progress[TRAINER_STATE] = FileProgress(path=TRAINER_STATE, kind=kind)
                continue
            if rel in self.progress or rel in self.rejected or kind is None:
                continue
            if self._ours(path, st, started_at, local_pgid, shared_after):
                log.info("reading %s (%s) as a metric source", rel, kind)
                self.progress[rel] = FileProgress(path=rel, kind=kind)
            else:
                self.rejected.add(rel)

    def _ours(
        self,
        path: Path,
        st: os.stat_result,
        started_at: float,
        local_pgid: int | None,
        shared_after: Callable[[float], int],
    ) -> bool:
        if st.st_mtime < started_at - START_SLACK_S:
            return False  # written before this run started
        if path.name.startswith("events.out.tfevents.") and local_pgid is not None:
            pid = tfevents.writer_pid(path)
            host = ".".join(path.name.removesuffix(".v2").split(".")[4:-2])
            if pid is not None and host == self.host and (sid := session_of(pid)) is not None:
                return sid == local_pgid  # its writer lives: it is ours iff it runs in our session
        if shared_after(st.st_mtime) > 0:
            log.info("not reading %s: another run sharing this workdir may have written it", path)
            return False
        return True

    # ---- reading --------------------------------------------------------------------------

    def read(self, batch: Batch, final: bool) -> None:
        """Read what the known files gained since their saved offsets into ``batch``."""
        for rel, committed in self.progress.items():
            if committed.state.get("corrupt"):
                continue
            try:
                self._read_one(rel, committed, batch, final)
            except OSError as err:  # removed or unreadable between the stat and the read
                log.warning("could not read %s: %s", rel, err)

    def _read_one(self, rel: str, committed: FileProgress, batch: Batch, final: bool) -> None:
        if rel == TRAINER_STATE:
            path = newest(self.trainer_states)
            if path is None:
                return
            fp = committed.advanced()
            scalars = read_trainer_state(path, str(path.relative_to(self.root)), fp, final)
        else:
            path = self.root / rel
            st = stat_of(path)
            sig = None if st is None else (st.st_size, st.st_mtime_ns)
            if st is None or (self.seen.get(rel) == sig and not final):
                return
            self.seen[rel] = sig  # type: ignore[assignment]
            fp = committed.advanced()
            if fp.kind == "csv":
                scalars, more = read_csv(path, fp, final)
            else:
                scalars, more = self._read_events(path, fp, st.st_size)
            if more:
                self.seen.pop(rel, None)  # look again at once
                batch.backlog = True
        moved = (fp.offset, fp.records, fp.state) != (committed.offset, committed.records, committed.state)
        if moved or scalars or fp.bad or not fp.stored:
            fp.points = len(scalars)
            batch.files[rel] = fp
            batch.points.extend((key, step, value, fp.kind, True) for key, step, value in scalars)

    def _read_events(
        self, path: Path, fp: FileProgress, size: int
    ) -> tuple[list[tuple[str, int, float]], bool]:
        if size <= fp.offset:
            return [], False
        data = read_at(path, fp.offset, READ_CAP)
        more = fp.offset + len(data) < size
        framing = tfevents.split_records(data)
        out: list[Scalar] = []
        for record in framing.records:
            try:
                step, scalars = tfevents.event_scalars(record)
            except (ValueError, IndexError, TypeError):
                fp.bad += 1
                fp.example = fp.example or f"{fp.path}: a garbled event at byte {fp.offset}"
                continue
            out.extend((tfevents.key_for(path, tag), step, value) for tag, value in scalars)
        fp.records += len(framing.records)
        fp.offset += framing.consumed
        if framing.corrupt:
            log.warning("%s: not a TFRecord boundary at byte %d; no longer reading it", path, fp.offset)
            fp.state["corrupt"] = True
            fp.bad += 1
            fp.example = fp.example or f"{fp.path}: corrupt framing at byte {fp.offset}"
        return out, more and not framing.corrupt

    def adopt(self, batch: Batch) -> None:
        """The batch was committed: its file rows are the saved progress now."""
        for rel, fp in batch.files.items():
            fp.stored = True
            self.progress[rel] = fp
