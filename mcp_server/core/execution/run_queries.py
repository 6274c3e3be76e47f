"""Reading runs: rows, records, one run in full, pages, logs, waiting for an end.

Split from ``core.execution.runs`` (RunService inherits it). A query settles first (an ended job
is reported as ended), but answers from the store as it is when the store cannot take
writes now (a full disk, a long lock).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from mcp_server.core.errors import Conflict, InvalidInput
from mcp_server.core.execution import run_list
from mcp_server.core.execution.jobfiles import JobFiles
from mcp_server.core.execution.logs import compile_filter, read_window, tail_lines
from mcp_server.core.execution.run_inputs import MAX_LOG_BYTES, MAX_LOG_LINES
from mcp_server.core.execution.run_status import TERMINAL
from mcp_server.core.run_views import LogChunk, RunDetail, RunPage, RunRecord, RunRow, iso
from mcp_server.core.storage.models import Run

if TYPE_CHECKING:
    from mcp_server.core.backends.registry import Backends
    from mcp_server.core.execution.reconcile import Reconciler
    from mcp_server.core.paths import StateDir
    from mcp_server.core.scheduling.admission import Admission
    from mcp_server.core.storage.store import Store


def to_row(run: Run, leased: list[int] | None = None) -> RunRow:
    duration = None
    if run.started_at is not None:
        duration = round((run.ended_at or time.time()) - run.started_at, 3)
    return RunRow(
        id=run.id,
        name=run.name,
        status=run.status,
        status_reason=run.status_reason,
        exit_code=run.exit_code,
        backend=run.backend,
        gpus=run.gpus,
        leased_gpus=leased,
        sweep_id=run.sweep_id,
        created_at=iso(run.created_at) or "",
        started_at=iso(run.started_at),
        ended_at=iso(run.ended_at),
        duration_s=duration,
    )


def to_record(run: Run, run_dir: Path, leased: list[int] | None = None) -> RunRecord:
    return RunRecord(
        **to_row(run, leased).model_dump(),
        command=run.command,
        workdir=run.workdir,
        params=run.params,
        env_keys=run.env_keys,
        options=run.options,
        error=run.error,
        parent_run_id=run.parent_run_id,
        backend_ref=run.backend_ref,
        run_dir=str(run_dir),
        stop_requested_at=iso(run.stop_requested_at),
    )


log = logging.getLogger("mcp_server.core.execution.runs")


class QueryMixin:
    state: StateDir
    store: Store
    reconciler: Reconciler
    admission: Admission
    backends: Backends
    detail_extras: list[Callable[[RunDetail], None]]

    def files(self, run_id: str) -> JobFiles:
        return JobFiles(self.state.run_dir(run_id))

    def load(self, run_id: str) -> Run:
        raise NotImplementedError

    def _fresh(self, run_id: str) -> Run:
        raise NotImplementedError

    def _record(self, run_id: str) -> RunRecord:
        raise NotImplementedError

    def _settle_first(self, run_ids: list[str] | None = None) -> bool:
        raise NotImplementedError

    def known(self, run_id: str) -> Any:
        raise NotImplementedError

    def get(self, run_id: str) -> RunDetail:
        self._fresh(run_id)
        detail = RunDetail(**self._record(run_id).model_dump())
        for extra in self.detail_extras:
            extra(detail)
        return detail

    def list(
        self,
        *,
        status: list[str] | None = None,
        name_contains: str | None = None,
        sweep_id: str | None = None,
        limit: int = 50,
        offset: int = 0,
    ) -> RunPage:
        run_list.check(status, sweep_id, limit, offset)
        self._settle_first()
        with self.store.sql.snapshot() as conn:  # plain SQL: no ORM row per run (core.execution.run_list)
            return run_list.page(
                conn, status=status, name_contains=name_contains, sweep_id=sweep_id, limit=limit,
                offset=offset,
            )  # fmt: skip

    def _sync_output(self, run: Any, files: JobFiles) -> None:
        """Let the run's backend bring its job's output into the run dir first (an engine whose
        workers do not share this filesystem); a backend that cannot now leaves it as it is."""
        try:
            self.backends.get(run.backend).sync(run, files)
        except Exception as err:  # reading what is there beats failing the read
            log.warning("could not sync the output of %s from its backend: %s", run.id, err)

    def logs(
        self,
        run_id: str,
        *,
        lines: int = 100,
        source: str = "output",
        offset: int | None = None,
        length: int | None = None,
        filter: str | None = None,
        max_bytes: int = 64 * 1024,
    ) -> LogChunk:
        if source not in ("output", "sidecar"):
            raise InvalidInput(
                f"source {source!r} is not valid; choose 'output' (the command's output) or 'sidecar'."
            )
        if not 1 <= lines <= MAX_LOG_LINES:
            raise InvalidInput(f"lines={lines} is out of range; give 1 to {MAX_LOG_LINES}.")
        if not 1 <= max_bytes <= MAX_LOG_BYTES:
            raise InvalidInput(f"max_bytes={max_bytes} is out of range; give 1 to {MAX_LOG_BYTES}.")
        pattern = compile_filter(filter) if filter else None
        run = self.known(run_id)  # one indexed read; the file is checked with one lstat (file_in)
        files = self.files(run_id)
        if source == "output" and run.status not in ("ready",):
            self._sync_output(run, files)
        path = self.state.file_in(files.output if source == "output" else files.sidecar_log)
        note = ""
        if offset is not None:
            if pattern is not None:
                raise InvalidInput("give either filter or offset/length, not both.")
            size = min(length or max_bytes, max_bytes)
            if size < 1:
                raise InvalidInput(f"length={length} must be ≥ 1.")
            chunk = read_window(path, offset, size)
        else:
            if length is not None:
                raise InvalidInput("length needs offset; for the end of the log give lines instead.")
            chunk = tail_lines(path, lines, max_bytes, pattern)
        if chunk.problem:
            raise Conflict(f"cannot read the {source} log of {run_id}: {chunk.problem}.")
        if chunk.size == 0:
            note = f"the {source} log is empty so far" if path.exists() else f"no {source} log yet"
        elif chunk.truncated:
            note = "more text precedes this window; page with offset/length or raise lines/max_bytes"
        return LogChunk(
            text=chunk.text,
            start_offset=chunk.start,
            end_offset=chunk.end,
            file_size=chunk.size,
            lines=chunk.lines,
            truncated=chunk.truncated,
            note=note,
        )

    def wait(self, run_id: str, timeout_s: float, poll_s: float = 0.2) -> RunDetail:
        """Block until the run ends or ``timeout_s`` passes (used by the CLI demo)."""
        deadline = time.monotonic() + timeout_s
        while True:
            detail = self.get(run_id)
            if detail.status in {s.value for s in TERMINAL} or time.monotonic() >= deadline:
                return detail
            time.sleep(poll_s)
