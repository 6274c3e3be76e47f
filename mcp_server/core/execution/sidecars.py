"""Keep one sidecar alive per live run: start it after launch, restart it when it died.

The sidecar table row is the lock. Starting takes a claim with a compare-and-set on the
row (insert-if-absent, or update-if-unchanged), so two server processes reconciling at the
same moment never start two sidecars for one run; the sidecar itself also refuses to run
beside a live twin, and its offset updates are compare-and-set too.
"""

from __future__ import annotations

import logging
import socket
import sqlite3
import time
from collections.abc import Iterable
from types import SimpleNamespace
from typing import Any

from sqlalchemy import text
from sqlmodel import Session

from mcp_server.core.backends import registry
from mcp_server.core.execution.jobfiles import JobFiles
from mcp_server.core.execution.run_status import ACTIVE, TERMINAL, RunStatus
from mcp_server.core.execution.sidecar_proc import is_sidecar, spawn_sidecar
from mcp_server.core.monitoring.metric_sources import sources_of
from mcp_server.core.monitoring.monitor_settings import MonitorSettings
from mcp_server.core.paths import StateDir
from mcp_server.core.run_views import IngestStats, JudgeUsage, MonitorInfo
from mcp_server.core.storage.models import Run, Sidecar
from mcp_server.core.storage.store import Store

log = logging.getLogger(__name__)

# A claimed sidecar that has not written its pid within this long is presumed failed to start.
START_GRACE_S = 15.0
# How long a sidecar seen alive in /proc counts as alive without looking again.
ALIVE_TTL_S = 1.0


def ingest_fields(row: Any) -> dict[str, Any]:
    """A sidecars row's counters, as ``IngestStats``' fields (an ORM ``Sidecar`` or a plain
    row with the same names)."""
    return {
        "metrics_records": row.metrics_records,
        "log_records": row.output_records,
        "points": row.points,
        "bad_lines": row.bad_lines,
        "non_numeric": row.non_numeric,
        "non_numeric_example": row.non_numeric_example,
        "huge_lines": row.huge_lines,
        "partial_lines": row.partial_lines,
        "duplicates": row.duplicates,
        "log_parsing": row.log_parsing,
    }


def ingest_stats(row: Any) -> IngestStats:
    """A sidecars row's counters (an ORM ``Sidecar`` or a plain row with the same names)."""
    return IngestStats(**ingest_fields(row))


def monitor_info(session: Session, run_id: str, settings: MonitorSettings) -> MonitorInfo | None:
    row = session.get(Sidecar, run_id)
    if row is None:
        return None
    age = None if row.heartbeat_at is None else round(time.time() - row.heartbeat_at, 3)
    return MonitorInfo(
        alive=row.pid is not None and age is not None and age < settings.stale_s,
        pid=row.pid,
        heartbeat_age_s=age,
        starts=row.starts,
        exited=row.exited_at is not None,
        exit_reason=row.exit_reason,
        ingest=ingest_stats(row),
        sources=sources_of(session, row),
        judge=JudgeUsage(
            calls=row.judge_calls,
            errors=row.judge_errors,
            prompt_tokens=row.judge_prompt_tokens,
            completion_tokens=row.judge_completion_tokens,
            cost_usd=round(row.judge_cost_usd, 6),
        ),
    )


# How long a metrics reader waits for an ended run's sidecar to finish reading its files.
DRAIN_WAIT_S = 5.0


def wait_drained(store: Store, run_ids: Iterable[str], timeout: float = DRAIN_WAIT_S) -> list[str]:
    """Wait until every ended run among ``run_ids`` has had its files read to the end.

    A run's end is recorded by whoever looks first, which can be a moment before its sidecar
    has stored the last lines; an agent told "finished" must not then rank a sweep on a
    truncated series. Returns the runs still being read when ``timeout`` ran out.
    """
    ids = list(run_ids)
    if not ids:
        return []
    marks = ", ".join("?" * len(ids))
    ended = [s.value for s in TERMINAL]
    sql = (
        "SELECT s.run_id FROM sidecars s JOIN runs r ON r.id = s.run_id "
        f"WHERE s.run_id IN ({marks}) AND s.exited_at IS NULL AND r.status IN ({', '.join('?' * len(ended))})"
    )
    deadline = time.monotonic() + timeout
    while True:
        with store.sql.snapshot() as conn:
            pending = [r[0] for r in conn.execute(sql, [*ids, *ended])]
        if not pending or time.monotonic() >= deadline:
            return pending
        time.sleep(0.05)


_CLAIM_COLUMNS = ("run_id", "pid", "host", "claimed_at", "heartbeat_at", "exited_at")


def _rows(conn: sqlite3.Connection, where: str, params: list[Any]) -> list[Any]:
    """Sidecar rows (the columns that say who runs it and whether it lives), as plain objects."""
    return [
        SimpleNamespace(**dict(zip(_CLAIM_COLUMNS, r, strict=True)))
        for r in conn.execute(f"SELECT {', '.join(_CLAIM_COLUMNS)} FROM sidecars WHERE {where}", params)
    ]


def waits_for_admission(run: Any) -> bool:
    """A local run queued for a GPU lease or run slot: its command cannot have started."""
    return run.status == RunStatus.QUEUED.value and bool((run.options or {}).get("queue"))


class SidecarSupervisor:
    def __init__(self, state: StateDir, store: Store, settings: MonitorSettings) -> None:
        self.state = state
        self.store = store
        self.settings = settings
        self.host = socket.gethostname()
        # (pid, run_id) → when /proc last showed that sidecar alive. Every run query asks
        # again; within ALIVE_TTL_S the answer stands (a sidecar killed meanwhile is restarted
        # by the next look after that).
        self._alive_at: dict[tuple[int, str], float] = {}

    def start(self, run: Run) -> None:
        """After a launch: make sure the run has a sidecar (a relaunch may still have one).

        Not while it waits in the admission queue: nothing is there to watch yet, and 200
        queued runs would cost 200 sidecars. The dispatcher starts it on admission."""
        if not waits_for_admission(run) and registry.monitored(run.backend):
            self.ensure([], also=[run.id])

    def ensure(self, runs: Iterable[Any], also: Iterable[str] = ()) -> list[str]:
        """Start a sidecar where one is missing; returns the run ids it started one for.

        That is every live run among ``runs`` (and each of ``also``, just launched) without a
        running sidecar, and every run whose
        sidecar died before it finished (its row never got ``exited_at``), even if the run
        ended meanwhile: the new sidecar reads the lines its predecessor did not, then exits.
        """
        runs = [r for r in runs if registry.monitored(r.backend)]
        live = [
            r.id
            for r in runs
            if RunStatus(r.status) in ACTIVE and r.launched_at is not None and not waits_for_admission(r)
        ]
        live += [run_id for run_id in also if run_id not in live]
        # A run that ended before any sidecar could start (e.g. the disk was full): one still
        # has to read its files once.
        ended = [r.id for r in runs if RunStatus(r.status) in TERMINAL and r.launched_at is not None]
        # Plain SQL: this runs on every run query (after reconcile), so it must cost the live runs.
        with self.store.sql.snapshot() as conn:
            unfinished = _rows(conn, "exited_at IS NULL", [])
            rows = {row.run_id: row for row in unfinished}
            missing = [i for i in [*live, *ended] if i not in rows]
            if missing:
                marks = ", ".join("?" * len(missing))
                rows.update((row.run_id, row) for row in _rows(conn, f"run_id IN ({marks})", missing))
        live += [i for i in ended if i not in rows]
        started = []
        for run_id in dict.fromkeys([*live, *(r.run_id for r in unfinished)]):
            row = rows.get(run_id)
            if row is not None and self._running(row):
                continue
            if row is not None and row.exited_at is not None and run_id not in live:
                continue
            if self._claim(run_id, row):
                self._spawn(run_id)
                started.append(run_id)
        return started

    def _running(self, row: Any) -> bool:
        t = time.time()
        if row.pid is None:
            # Claimed by a starter that has not heard back yet, or exited (then not running).
            return row.exited_at is None and t - row.claimed_at < START_GRACE_S
        if row.host == self.host:
            key = (row.pid, row.run_id)
            if t - self._alive_at.get(key, -ALIVE_TTL_S) < ALIVE_TTL_S:
                return True
            alive = is_sidecar(row.pid, row.run_id)
            if alive:
                if len(self._alive_at) > 4096:
                    self._alive_at.clear()
                self._alive_at[key] = t
            else:
                self._alive_at.pop(key, None)
            return alive
        return row.heartbeat_at is not None and t - row.heartbeat_at < self.settings.stale_s

    def _claim(self, run_id: str, seen: Any) -> bool:
        t = time.time()
        with self.store.write() as s:
            conn = s.connection()
            if seen is None:
                res = conn.execute(
                    text(
                        "INSERT OR IGNORE INTO sidecars (run_id, host, claimed_at) VALUES (:r, :h, :t)"
                    ).bindparams(r=run_id, h=self.host, t=t)
                )
            else:
                res = conn.execute(
                    text(
                        "UPDATE sidecars SET pid = NULL, host = :h, claimed_at = :t, exited_at = NULL, "
                        "exit_reason = '' WHERE run_id = :r AND claimed_at = :c AND pid IS :p"
                    ).bindparams(h=self.host, t=t, r=run_id, c=seen.claimed_at, p=seen.pid)
                )
            return res.rowcount == 1

    def _spawn(self, run_id: str) -> None:
        files = JobFiles(self.state.run_dir(run_id))
        try:
            pid = spawn_sidecar(self.state.root, run_id, files.sidecar_log)
        except OSError as err:
            log.warning("could not start a sidecar for %s: %s", run_id, err)
            if not files.run_dir.is_dir():  # nothing left to watch: do not retry forever
                with self.store.write() as s:
                    s.connection().execute(
                        text(
                            "UPDATE sidecars SET exited_at = :t, exit_reason = 'the run directory is gone' "
                            "WHERE run_id = :r"
                        ).bindparams(t=time.time(), r=run_id)
                    )
            return
        with self.store.write() as s:
            s.connection().execute(
                text(
                    "UPDATE sidecars SET pid = :p WHERE run_id = :r AND pid IS NULL AND exited_at IS NULL"
                ).bindparams(p=pid, r=run_id)
            )
