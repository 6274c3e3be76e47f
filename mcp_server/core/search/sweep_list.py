"""Sweeps with their progress, in plain SQL: counted by the store, not by loading every run.

A sweep's status and progress are derived from how many of its runs are in each status
(and how many queued ones were never launched: held back by its ``parallel`` cap). With
thousands of runs per sweep that is one grouped scan of a covering index per read
(``ix_runs_sweep_status``), not thousands of rows turned into objects.
"""

from __future__ import annotations

import json
import sqlite3
from collections import Counter
from typing import Any

from mcp_server.core.execution.run_status import TERMINAL, RunStatus
from mcp_server.core.workflow.workflow_views import SweepProgress, SweepRow

_ACTIVE = (RunStatus.QUEUED.value, RunStatus.LAUNCHING.value, RunStatus.RUNNING.value)
_ISO = "strftime('%Y-%m-%dT%H:%M:%SZ', CAST({} AS INTEGER), 'unixepoch')"
SWEEP_COLUMNS = (
    "id, name, goal, parallel, " + _ISO.format("created_at") + ", method, base_command, parameters, "
    "max_runs, seed, gpus_per_run, backend, workdir"
)
SWEEP_FIELDS = (
    "id", "name", "goal", "parallel", "created_at", "method", "base_command", "parameters",
    "max_runs", "seed", "gpus_per_run", "backend", "workdir",
)  # fmt: skip


def derive_status(counts: Counter[str] | dict[str, int]) -> str:
    """A sweep's status from how many of its runs are in each status."""
    total = sum(counts.values())
    if total == 0:
        return "empty"
    if any(counts.get(s, 0) for s in _ACTIVE):
        return "running"
    if counts.get(RunStatus.READY.value, 0):
        return "pending"
    if counts.get(RunStatus.FINISHED.value, 0):
        return "completed"
    if counts.get(RunStatus.STOPPED.value, 0) == total:
        return "stopped"
    return "failed"


def progress_of(counts: Counter[str] | dict[str, int], waiting: int) -> SweepProgress:
    total = sum(counts.values())
    done = sum(counts.get(s.value, 0) for s in TERMINAL)
    return SweepProgress(
        total=total,
        ready=counts.get(RunStatus.READY.value, 0),
        waiting=waiting,
        active=sum(counts.get(s, 0) for s in _ACTIVE) - waiting,
        finished=counts.get(RunStatus.FINISHED.value, 0),
        failed=counts.get(RunStatus.FAILED.value, 0),
        stopped=counts.get(RunStatus.STOPPED.value, 0),
        lost=counts.get(RunStatus.LOST.value, 0),
        done=done,
        percent_done=round(100.0 * done / total, 1) if total else 0.0,
    )


def counts_of(conn: sqlite3.Connection, sweep_ids: list[str]) -> dict[str, tuple[Counter[str], int]]:
    """Per sweep: its runs by status, and how many are held back (queued, never launched)."""
    out: dict[str, tuple[Counter[str], int]] = {sid: (Counter(), 0) for sid in sweep_ids}
    if not sweep_ids:
        return out
    for sweep_id, status, unlaunched, n in conn.execute(
        "SELECT sweep_id, status, launched_at IS NULL, COUNT(*) FROM runs "
        f"WHERE sweep_id IN ({', '.join('?' * len(sweep_ids))}) "
        "GROUP BY sweep_id, status, launched_at IS NULL",
        sweep_ids,
    ):
        counts, waiting = out[sweep_id]
        counts[status] += n
        if status == RunStatus.QUEUED.value and unlaunched:
            waiting += n
        out[sweep_id] = (counts, waiting)
    return out


def sweep_row(fields: dict[str, Any], counts: Counter[str], waiting: int) -> SweepRow:
    return SweepRow(
        id=fields["id"],
        name=fields["name"],
        goal=fields["goal"],
        status=derive_status(counts),  # type: ignore[arg-type]
        parallel=fields["parallel"],
        progress=progress_of(counts, waiting),
        created_at=fields["created_at"],
    )


def load(conn: sqlite3.Connection, sweep_id: str) -> dict[str, Any] | None:
    """One sweep's row as a dict (its JSON parameters decoded), or None."""
    row = conn.execute(f"SELECT {SWEEP_COLUMNS} FROM sweeps WHERE id = ?", (sweep_id,)).fetchone()
    if row is None:
        return None
    fields = dict(zip(SWEEP_FIELDS, row, strict=True))
    fields["parameters"] = json.loads(fields["parameters"] or "{}")
    return fields


def newest(conn: sqlite3.Connection, limit: int) -> list[SweepRow]:
    rows = [
        dict(zip(SWEEP_FIELDS, r, strict=True))
        for r in conn.execute(f"SELECT {SWEEP_COLUMNS} FROM sweeps ORDER BY pk DESC LIMIT ?", (limit,))
    ]
    counts = counts_of(conn, [r["id"] for r in rows])
    return [sweep_row(r, *counts[r["id"]]) for r in rows]
