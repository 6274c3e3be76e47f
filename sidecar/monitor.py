"""The per-run monitor loop: read new lines, store metrics, raise alerts, settle status.

Each poll stats the run's files; when they grew it reads the new bytes from the saved
offsets, parses complete lines only (a partial last line waits for its end) and writes,
in ONE transaction, the metric points, the series summaries, any alerts the rules raise
and the advanced offsets. A sidecar killed at any instant therefore resumes exactly where
the last committed poll ended: no line lost, none counted twice. The offset update is a
compare-and-set on the previous offsets and this process's pid, so even two sidecars for
one run could not both ingest a line.

Status follows the same ``decide()`` as the server's reconcile, applied with the same
compare-and-set: stat-based on every poll (pgid → running, exit_code → ended), asking the
backend (a tmux subprocess) only rarely, when the job has not started or its process
group vanished without an exit code (→ lost).

Imports are stdlib plus the stdlib-only parts of ``mcp_server.core``; sqlmodel, pydantic
and libtmux stay out unless needed (idle RSS budget: 60 MB).
"""

from __future__ import annotations

import dataclasses
import logging
import math
import os
import socket
import time
from collections import deque
from pathlib import Path
from typing import Any

from mcp_server.core.alert_specs import AlertSpec, ending_alert
from mcp_server.core.backends.base import observe_files
from mcp_server.core.jobfiles import JobFiles
from mcp_server.core.lifecycle import TERMINAL, Observation, RunStatus, decide_for, decision_fields
from mcp_server.core.logs import tail_lines
from mcp_server.core.metric_keys import is_loss_like
from mcp_server.core.monitor_settings import MonitorSettings
from mcp_server.core.paths import StateDir
from mcp_server.core.procs import group_alive
from mcp_server.core.sidecar_proc import is_sidecar
from mcp_server.core.sqlwrites import raise_alert_sql, release_admission_sql, transition_sql
from sidecar import rules
from sidecar.db import RunState, SeriesState, SidecarDB
from sidecar.parsers import decode, parse_log_line, parse_metrics_line, split_lines

log = logging.getLogger("sidecar")

READ_CAP = 4 << 20  # bytes read per file per poll; a backlog is drained poll after poll without sleeping
RUN_REFRESH_S = 1.0  # re-read the run row (others may stop, requeue or settle it)
EXIT_CODE_GRACE_S = 2.0  # after the job's group ends, the launch script writes exit_code
SIGNAL_EXIT_CHECK_S = 1.0  # how often to ask a scheduler why a command was killed
RECENT = 10  # latest values per key kept for the judge's digest
TAIL_BYTES = 64 * 1024


SQL_ADVANCE = (
    "UPDATE sidecars SET metrics_offset = ?, metrics_records = ?, metrics_skipping = ?, "
    "output_offset = ?, output_records = ?, output_skipping = ?, log_parsing = ?, "
    "bad_lines = bad_lines + ?, non_numeric = non_numeric + ?, huge_lines = huge_lines + ?, "
    "partial_lines = partial_lines + ?, points = points + ?, "
    "last_data_at = COALESCE(?, last_data_at), heartbeat_at = ? "
    "WHERE run_id = ? AND pid = ? AND metrics_offset = ? AND output_offset = ?"
)
SQL_NEW_SERIES = "INSERT INTO metric_series (run_id, key, source, updated_at) VALUES (?, ?, ?, ?)"
SQL_POINT = "INSERT INTO metric_points (series_id, step, value, ts) VALUES (?, ?, ?, ?)"
SQL_SERIES = (
    "UPDATE metric_series SET count = ?, nonfinite = ?, first_nonfinite_step = ?, first_step = ?, "
    "last_step = ?, last_value = ?, min_value = ?, min_step = ?, max_value = ?, max_step = ?, "
    "updated_at = ? WHERE id = ?"
)
SQL_OPEN_ALERTS = (
    "SELECT severity, message FROM alerts WHERE run_id = ? AND status = 'open' ORDER BY pk DESC LIMIT 10"
)
SQL_JUDGE_USAGE = (
    "UPDATE sidecars SET judge_calls = judge_calls + 1, judge_errors = judge_errors + ?, "
    "judge_prompt_tokens = judge_prompt_tokens + ?, "
    "judge_completion_tokens = judge_completion_tokens + ?, "
    "judge_cost_usd = judge_cost_usd + ?, judge_last_at = ? WHERE run_id = ?"
)


class OwnershipLost(Exception):
    """Another sidecar owns this run now (or the row changed under us)."""


@dataclasses.dataclass
class Progress:
    metrics_offset: int = 0
    metrics_records: int = 0
    metrics_skipping: bool = False
    output_offset: int = 0
    output_records: int = 0
    output_skipping: bool = False
    log_parsing: bool = True


@dataclasses.dataclass
class Batch:
    """What one poll read, before it is committed."""

    progress: Progress
    points: list[tuple[str, int, float, str]] = dataclasses.field(default_factory=list)
    bad_lines: int = 0
    non_numeric: int = 0
    huge_lines: int = 0
    partial_lines: int = 0
    backlog: bool = False
    # Last (step, value) per key on the printed line still being redrawn with '\r' at the
    # end of this batch (a progress bar repeats them); adopted only once committed.
    log_seen: dict[str, tuple[int | None, float]] | None = None

    def counters(self) -> tuple[int, int, int, int]:
        return (self.bad_lines, self.non_numeric, self.huge_lines, self.partial_lines)


def _stat(path: Path) -> os.stat_result | None:
    try:
        return os.stat(path)
    except FileNotFoundError:
        return None


def _read(path: Path, offset: int, size: int) -> bytes:
    with open(path, "rb") as fh:
        fh.seek(offset)
        return fh.read(size)


class Monitor:
    def __init__(
        self,
        state: StateDir,
        run_id: str,
        settings: MonitorSettings,
        launch_grace_s: float,
        clock: Any = time.time,
    ) -> None:
        self.state = state
        self.run_id = run_id
        self.settings = settings
        self.launch_grace_s = launch_grace_s
        self.files = JobFiles(state.run_dir(run_id))
        self.db = SidecarDB(state.db_path)
        self.pid = os.getpid()
        self.host = socket.gethostname()
        self.clock = clock
        self.run: RunState | None = None
        self.progress = Progress()
        self.series: dict[str, SeriesState] = {}
        self.windows: dict[str, rules.RecentWindow] = {}
        self.window_steps: dict[str, deque[int]] = {}
        self.recent: dict[str, deque[tuple[int, float]]] = {}
        self.last_log_point: dict[str, tuple[int | None, float]] = {}
        self.nonfinite_raised = False
        self.raised_stall: str | None = None
        self.pgid: int | None = None
        self.group_gone_at: float | None = None
        self.backend_checked_at = -math.inf
        self.next_refresh = 0.0
        self.last_heartbeat = 0.0
        self.output_size = 0
        self.data_version = 0
        self.judged_version = 0
        self.judge: Any = None
        self.judge_due = 0.0
        self._backends: Any = None
        self.settled_end = False  # this sidecar recorded the run's end (so it runs the end hooks)

    # ---- ownership -----------------------------------------------------------------------

    def claim(self) -> bool:
        """Become this run's sidecar unless a live one already is."""
        t = self.clock()
        with self.db.write() as c:
            row = c.execute(
                "SELECT pid, host, heartbeat_at FROM sidecars WHERE run_id = ?", (self.run_id,)
            ).fetchone()
            if row is None:
                c.execute(
                    "INSERT INTO sidecars (run_id, pid, host, claimed_at, started_at, heartbeat_at, starts) "
                    "VALUES (?, ?, ?, ?, ?, ?, 1)",
                    (self.run_id, self.pid, self.host, t, t, t),
                )
                return True
            other, host, heartbeat = row
            if other not in (None, self.pid):
                if host == self.host and is_sidecar(other, self.run_id):
                    log.info(
                        "sidecar pid %s already watches %s; this one (pid %s) exits",
                        other,
                        self.run_id,
                        self.pid,
                    )
                    return False
                if host != self.host and heartbeat and t - heartbeat < self.settings.stale_s:
                    log.info("a sidecar on %s watches %s (fresh heartbeat); exiting", host, self.run_id)
                    return False
            c.execute(
                "UPDATE sidecars SET pid = ?, host = ?, started_at = ?, heartbeat_at = ?, exited_at = NULL, "
                "exit_reason = '', starts = starts + 1 WHERE run_id = ?",
                (self.pid, self.host, t, t, self.run_id),
            )
        return True

    def release(self, reason: str) -> None:
        t = self.clock()
        with self.db.write() as c:
            c.execute(
                "UPDATE sidecars SET pid = NULL, exited_at = ?, exit_reason = ?, heartbeat_at = ? "
                "WHERE run_id = ? AND pid = ?",
                (t, reason, t, self.run_id, self.pid),
            )

    def resync(self) -> None:
        """Reload progress and series from the store (at start, and after any failed commit)."""
        row = self.db.load_progress(self.run_id)
        if row is None:
            raise OwnershipLost("the sidecar row vanished")
        self.progress = Progress(
            metrics_offset=int(row["metrics_offset"]),
            metrics_records=int(row["metrics_records"]),
            metrics_skipping=bool(row["metrics_skipping"]),
            output_offset=int(row["output_offset"]),
            output_records=int(row["output_records"]),
            output_skipping=bool(row["output_skipping"]),
            log_parsing=bool(row["log_parsing"]),
        )
        self.series = self.db.load_series(self.run_id)
        self.windows.clear()
        self.window_steps.clear()
        self.recent.clear()
        for key, s in self.series.items():
            if s.nonfinite:
                self.nonfinite_raised = True
            n = rules.TREND_WINDOW if is_loss_like(key) else RECENT
            for step, value in self.db.recent_points(s.id, n):
                if value is not None:
                    self._remember(key, step, value, track=is_loss_like(key))

    # ---- the loop ------------------------------------------------------------------------

    def run_forever(self) -> str:
        """Watch until the run ends and its files are drained; returns why it stopped."""
        if not self.claim():
            return "another sidecar watches this run"
        self.resync()
        self.refresh_run()
        if self.run is None:
            self.release("the run does not exist")
            return "the run does not exist"
        log.info("sidecar pid %s watching %s (%s)", self.pid, self.run_id, self.run.status)
        self.judge_due = self.clock() + self.settings.judge_interval_s
        failures = 0
        reason = "the run ended"
        try:
            while True:
                try:
                    backlog = self.tick()
                    failures = 0
                except OwnershipLost as err:
                    log.warning("stopping: %s", err)
                    return f"ownership lost: {err}"
                except Exception:
                    failures += 1
                    log.exception("poll failed (%d in a row); retrying", failures)
                    if not self.files.run_dir.exists():
                        reason = "the run directory is gone"
                        break
                    time.sleep(min(5.0, self.settings.poll_s * 2**failures))
                    self.resync()
                    continue
                if self.run is None:
                    reason = "the run was deleted"
                    break
                if RunStatus(self.run.status) in TERMINAL:
                    self.finish()
                    break
                if not backlog:
                    time.sleep(self.settings.poll_s)
        finally:
            if self.judge is not None:
                self.judge.close()
        self.release(reason)
        log.info("sidecar for %s exits: %s", self.run_id, reason)
        return reason

    def tick(self) -> bool:
        t = self.clock()
        batch = self.read_new(final=False)
        if batch is not None:
            self.commit(batch, t)
        if t >= self.next_refresh:
            self.refresh_run()
        self.check_status(t)
        if self.run is not None and RunStatus(self.run.status) not in TERMINAL:
            self.check_stall(t)
            self.heartbeat(t)
            if self.settings.judge_model:
                self.judge_tick(t)
        return batch is not None and batch.backlog

    def refresh_run(self) -> None:
        self.run = self.db.load_run(self.run_id)
        self.next_refresh = self.clock() + RUN_REFRESH_S

    def heartbeat(self, t: float) -> None:
        if t - self.last_heartbeat < self.settings.heartbeat_s:
            return
        with self.db.write() as c:
            cur = c.execute(
                "UPDATE sidecars SET heartbeat_at = ? WHERE run_id = ? AND pid = ?",
                (t, self.run_id, self.pid),
            )
            if cur.rowcount != 1:
                raise OwnershipLost("another sidecar took over this run")
        self.last_heartbeat = t

    # ---- reading files -------------------------------------------------------------------

    def read_new(self, final: bool) -> Batch | None:
        """Parse what was appended since the saved offsets; None when nothing changed."""
        p = dataclasses.replace(self.progress)
        batch = Batch(progress=p)
        m = _stat(self.files.metrics)
        m_size = m.st_size if m else 0
        if m_size < p.metrics_offset:
            log.warning(
                "metrics.jsonl shrank from %d to %d bytes (rewritten by the job?); reading it from the start",
                p.metrics_offset,
                m_size,
            )
            p.metrics_offset, p.metrics_skipping = 0, False
        points = batch.points
        if m_size > p.metrics_offset:
            data = _read(self.files.metrics, p.metrics_offset, READ_CAP)
            more = p.metrics_offset + len(data) < m_size
            chunk = split_lines(data, split_cr=False, skipping=p.metrics_skipping, final=final and not more)
            for line in chunk.lines:
                rec = parse_metrics_line(line)
                if rec is None:
                    batch.bad_lines += 1
                    continue
                batch.non_numeric += rec.skipped
                if not rec.values:
                    continue
                step = rec.step if rec.step is not None else p.metrics_records
                p.metrics_records += 1
                for k, v in rec.values.items():
                    points.append((k, step, v, "jsonl"))
            p.metrics_offset += chunk.consumed
            p.metrics_skipping = chunk.skipping
            batch.huge_lines += chunk.huge
            batch.partial_lines += chunk.partial
            batch.backlog = more
        if p.log_parsing and m_size > 0:
            p.log_parsing = False  # metrics.jsonl is in use: it is the source of truth from now on
        o = _stat(self.files.output)
        o_size = o.st_size if o else 0
        if o_size != self.output_size:
            self.output_size = o_size
            self.data_version += 1
        if p.log_parsing and o_size < p.output_offset:
            p.output_offset, p.output_skipping = 0, False
        if p.log_parsing and o_size > p.output_offset:
            # At offset 0 (a new or rewritten log) no printed line is being redrawn yet.
            seen = batch.log_seen = dict(self.last_log_point) if p.output_offset else {}
            data = _read(self.files.output, p.output_offset, READ_CAP)
            more = p.output_offset + len(data) < o_size
            chunk = split_lines(data, split_cr=True, skipping=p.output_skipping, final=final and not more)
            for line, new_line in zip(chunk.lines, chunk.new_line, strict=True):
                if new_line:
                    seen.clear()
                rec = parse_log_line(decode(line))
                if rec is None:
                    continue
                # A progress bar redraws the same numbers many times on one printed line
                # ('\r' between): the same step (or none) and value as the key's last point on
                # this line is the same point. Every '\n'-ended line counts: a Trainer prints
                # its stepless dicts with a constant learning_rate line after line.
                fresh = [(k, v) for k, v in rec.values.items() if seen.get(k) != (rec.step, v)]
                if not fresh:
                    continue
                step = rec.step if rec.step is not None else p.output_records
                p.output_records += 1
                for k, v in fresh:
                    seen[k] = (rec.step, v)
                    points.append((k, step, v, "log"))
            if chunk.ends_line:
                seen.clear()  # the printed line is over; the next one starts afresh
            p.output_offset += chunk.consumed
            p.output_skipping = chunk.skipping
            batch.huge_lines += chunk.huge
            batch.backlog = batch.backlog or more
        if final:
            # The writer is gone: a line still being skipped (too long, never ended) ends here.
            if p.metrics_skipping and m_size <= p.metrics_offset:
                batch.huge_lines += 1
                p.metrics_skipping = False
            if p.log_parsing and p.output_skipping and o_size <= p.output_offset:
                batch.huge_lines += 1
                p.output_skipping = False
        if p == self.progress and not batch.points and not any(batch.counters()):
            return None
        return batch

    # ---- committing ----------------------------------------------------------------------

    def _remember(self, key: str, step: int, value: float, track: bool) -> None:
        recent = self.recent.get(key)
        if recent is None:
            recent = self.recent[key] = deque(maxlen=RECENT)
        recent.append((step, value))
        if track:
            window = self.windows.get(key)
            if window is None:
                window = self.windows[key] = rules.RecentWindow()
                self.window_steps[key] = deque(maxlen=rules.TREND_WINDOW)
            window.push(value)
            self.window_steps[key].append(step)

    def _context(self, key: str, source: str) -> tuple[SeriesState, deque[tuple[int, float]], Any, Any]:
        """Per-key state for one commit: a copy of the series summary and the rule windows."""
        old = self.series.get(key)
        series = dataclasses.replace(old) if old else SeriesState(id=0, key=key, source=source)
        recent = self.recent.setdefault(key, deque(maxlen=RECENT))
        if not is_loss_like(key):
            return series, recent, None, None
        window = self.windows.setdefault(key, rules.RecentWindow())
        steps = self.window_steps.setdefault(key, deque(maxlen=rules.TREND_WINDOW))
        return series, recent, window, steps

    def commit(self, batch: Batch, t: float) -> None:
        # The per-point loop is the ingest hot path (a million-line backlog runs through it).
        ctx: dict[str, tuple[SeriesState, deque[tuple[int, float]], Any, Any]] = {}
        rows: list[tuple[SeriesState, int, float]] = []
        specs: dict[str, AlertSpec] = {}
        ttl = self.settings.alert_ttl_s
        isfinite = math.isfinite
        for key, step, value, source in batch.points:
            c = ctx.get(key)
            if c is None:
                c = ctx[key] = self._context(key, source)
            s, recent, window, steps = c
            rows.append((s, step, value))
            recent.append((step, value))
            s.count += 1
            if s.first_step is None:
                s.first_step = step
            s.last_step, s.last_value = step, value
            if not isfinite(value):
                s.nonfinite += 1
                if s.first_nonfinite_step is None:
                    s.first_nonfinite_step = step
                if not self.nonfinite_raised and "nonfinite" not in specs:
                    specs["nonfinite"] = rules.nonfinite_alert(key, step, value)
                continue
            if s.min_value is None or value < s.min_value:
                s.min_value, s.min_step = value, step
            if s.max_value is None or value > s.max_value:
                s.max_value, s.max_step = value, step
            if window is not None:
                spike = rules.spike_alert(key, step, value, window, ttl)
                if spike is not None and spike.signature not in specs:
                    specs[spike.signature] = spike
                window.push(value)
                steps.append(step)
        for key, (_, _, window, steps) in ctx.items():
            if window is not None:
                div = rules.divergence_alert(key, list(steps), window, ttl)
                if div is not None:
                    specs.setdefault(div.signature, div)
        touched = {key: c[0] for key, c in ctx.items()}
        p = batch.progress
        old = self.progress
        try:
            with self.db.write() as c:
                advance = (
                    p.metrics_offset, p.metrics_records, p.metrics_skipping,
                    p.output_offset, p.output_records, p.output_skipping, p.log_parsing,
                    *batch.counters(), len(rows), t if rows else None, t,
                    self.run_id, self.pid, old.metrics_offset, old.output_offset,
                )  # fmt: skip
                if c.execute(SQL_ADVANCE, advance).rowcount != 1:
                    raise OwnershipLost("the progress row changed under this sidecar (another one took over)")
                for s in touched.values():
                    if not s.id:
                        s.id = c.execute(SQL_NEW_SERIES, (self.run_id, s.key, s.source, t)).lastrowid or 0
                c.executemany(SQL_POINT, [(s.id, step, value, t) for s, step, value in rows])
                c.executemany(
                    SQL_SERIES,
                    [
                        (s.count, s.nonfinite, s.first_nonfinite_step, s.first_step, s.last_step,
                         s.last_value, s.min_value, s.min_step, s.max_value, s.max_step, t, s.id)
                        for s in touched.values()
                    ],
                )  # fmt: skip
                raised = [self._raise(c.execute, spec) for spec in specs.values()]
        except BaseException:
            self.resync()  # the in-memory windows already saw these points; start again from the store
            raise
        self.progress = p
        self.series.update(touched)
        if batch.log_seen is not None:
            self.last_log_point = batch.log_seen
        self.last_heartbeat = t
        if rows:
            self.data_version += 1
        if "nonfinite" in specs:
            self.nonfinite_raised = True
        for spec, row in zip(specs.values(), raised, strict=True):
            if row is not None:
                log.info("alert %s [%s] %s", row["id"], spec.severity, spec.message)

    def _raise(self, execute: Any, spec: AlertSpec) -> dict[str, Any] | None:
        return raise_alert_sql(execute, run_id=self.run_id, **spec.fields())

    def raise_now(self, spec: AlertSpec) -> None:
        with self.db.write() as c:
            row = self._raise(c.execute, spec)
        if row is not None:
            log.info("alert %s [%s] %s", row["id"], spec.severity, spec.message)

    # ---- status --------------------------------------------------------------------------

    def _backend_observation(
        self, t: float, every: float | None = None, fallback: Observation | None = None
    ) -> Observation | None:
        """Ask the run's backend at most once per ``every`` seconds; ``fallback`` if it fails."""
        if t - self.backend_checked_at < (self.settings.backend_check_s if every is None else every):
            return None
        if self.run is None:
            return fallback
        self.backend_checked_at = t
        if self._backends is None:
            from mcp_server.core.backends.registry import Backends
            from mcp_server.core.settings import Settings

            # Only the Slurm backend uses the store (its shared squeue poll): open the full
            # store for it alone, so a local run's sidecar stays free of SQLAlchemy.
            store = None
            if self.run.backend != "local":
                from mcp_server.core.store import Store

                store = Store(self.state.db_path)
            self._backends = Backends(self.state, store, Settings.from_env())  # type: ignore[arg-type]
        try:
            backend = self._backends.get(self.run.backend)
            # Backends read only id / backend_ref of a run; RunState carries both.
            return backend.observe([self.run], {self.run.id: self.files}).get(self.run.id)
        except Exception as err:
            log.warning("could not ask the %s backend about %s: %s", self.run.backend, self.run_id, err)
            return fallback

    def observe(self, t: float) -> Observation | None:
        """What the run's files (and, rarely, its backend) say now; None when nothing new."""
        if self.files.exit_code.exists():
            obs = observe_files(self.files, present=None)  # with the launch script's failure note
            if obs.exit_code is not None:
                if obs.exit_code > 128 and self.run is not None and self.run.backend != "local":
                    # Killed by a signal: a scheduler (a Slurm TIMEOUT, OUT_OF_MEMORY) may be
                    # why, and only the backend can tell; it names it in the run's reason.
                    return self._backend_observation(t, every=SIGNAL_EXIT_CHECK_S, fallback=obs)
                return obs
        if self.pgid is None:
            self.pgid = self.files.read_pgid()
        local = self.run is not None and self.run.backend == "local"
        if self.pgid is not None and local:
            if group_alive(self.pgid):
                self.group_gone_at = None
                return Observation(present=True, started_at=self.files.started_at())
            if self.group_gone_at is None:
                self.group_gone_at = t
            self.pgid = None  # a requeued run gets a new group; read the file again next time
            if t - self.group_gone_at < EXIT_CODE_GRACE_S:
                return None
        return self._backend_observation(t)

    def check_status(self, t: float) -> None:
        if self.run is None or RunStatus(self.run.status) in TERMINAL | {RunStatus.READY}:
            return
        obs = self.observe(t)
        if obs is None:
            return
        if obs.present is True and obs.exit_code is None and self.run.status == RunStatus.RUNNING:
            return  # the common idle case: nothing to decide
        self.refresh_run()  # decide on the freshest row (a stop request changes the ending)
        run = self.run
        if run is None:
            return
        d = decide_for(run, obs, now=t, launch_grace_s=self.launch_grace_s)
        if d is None:
            return
        ending = None
        if d.status in TERMINAL:
            tail = tail_lines(self.files.output, 200, TAIL_BYTES).text
            ending = ending_alert(
                status=d.status.value, exit_code=d.exit_code, reason=d.reason, output_tail=tail
            )
        with self.db.write() as c:
            values = transition_sql(
                c.execute,
                run_id=run.id,
                run_name=run.name,
                current=RunStatus(run.status),
                new=d.status,
                reason=d.reason,
                fields=decision_fields(d, run.started_at),
            )
            if values is not None and d.status in TERMINAL and d.status is not RunStatus.LOST:
                # An ended run gives its GPU lease / run slot back at once, as a server would
                # (a lost run's job may still hold the GPUs: the queue reclaims those later).
                release_admission_sql(c.execute, run.id)
            if values is not None and ending is not None:
                self._raise(c.execute, ending)  # whoever reads 'failed' also finds why
        if values is not None:
            log.info("%s: %s → %s (%s)", run.id, run.status, d.status.value, d.reason)
            self.settled_end = d.status in TERMINAL
        self.refresh_run()

    def check_stall(self, t: float) -> None:
        run = self.run
        if run is None or run.status != RunStatus.RUNNING or self.settings.stall_s <= 0:
            return
        if self.pgid is None and run.backend == "local":
            return  # not started, or ended: not a stall
        times = [run.started_at or 0.0]
        for path in (self.files.output, self.files.metrics):
            st = _stat(path)
            if st is not None:
                times.append(st.st_mtime)
        last = max(times)
        spec = rules.stall_alert(t - last, self.settings.stall_s, last)
        if spec is None or spec.signature == self.raised_stall:
            return
        self.raised_stall = spec.signature
        self.raise_now(spec)

    def finish(self) -> None:
        """The run ended: drain what is left (a final unterminated line too), then say how it ended."""
        if self.settled_end:
            self.after_end()  # first: a sweep's next run should not wait for a long drain
        while True:
            batch = self.read_new(final=True)
            if batch is None:
                break
            self.commit(batch, self.clock())
            if not batch.backlog:
                break
        self.refresh_run()
        run = self.run
        if run is None:
            return
        tail = tail_lines(self.files.output, 200, TAIL_BYTES).text
        spec = ending_alert(
            status=run.status, exit_code=run.exit_code, reason=run.status_reason, output_tail=tail
        )
        if spec is not None:
            self.raise_now(spec)

    def after_end(self) -> None:
        """Do what a server does after recording an ending: release the run's GPU lease or
        run slot, launch its sweep's next held-back run. These need the full services
        (SQLAlchemy), loaded only now, as this sidecar is about to exit.

        Only a sweep's run needs them: the release was written with the ending, and the
        ending alert is raised by ``finish``. Skipping the import for the others keeps a
        burst of short runs from holding a 70 MB interpreter per ended run."""
        row = self.db.one("SELECT sweep_id FROM runs WHERE id = ?", (self.run_id,))
        if row is None or row[0] is None:
            return
        from mcp_server.core.services import Services

        services = Services(self.state.root)
        try:
            run = services.runs.load(self.run_id)
            for hook in services.reconciler.on_terminal:
                try:
                    hook(run)
                except Exception:
                    name = getattr(hook, "__name__", repr(hook))
                    log.exception("after-end hook %s failed for %s", name, self.run_id)
        finally:
            services.close()

    # ---- LLM judge -----------------------------------------------------------------------

    def judge_tick(self, t: float) -> None:
        if self.judge is None:
            from sidecar.judge import Judge

            self.judge = Judge(self.settings.judge_model or "", self.settings.judge_timeout_s)
        result = self.judge.collect()
        if result is not None:
            self.record_verdict(result, t)
        if self.judge.busy or t < self.judge_due or self.data_version == self.judged_version:
            return
        self.judge_due = t + self.settings.judge_interval_s
        self.judged_version = self.data_version
        self.judge.submit(self.digest(t))

    def digest(self, t: float) -> str:
        from sidecar.judge import build_digest

        run = self.run
        assert run is not None
        metrics = []
        for key, s in sorted(self.series.items()):
            recent = [v for _, v in self.recent.get(key, ())]
            first = self.db.one(
                "SELECT value FROM metric_points WHERE series_id = ? ORDER BY step, id LIMIT 1", (s.id,)
            )
            metrics.append(
                {
                    "key": key, "count": s.count, "first": first[0] if first else None,
                    "min": s.min_value, "max": s.max_value, "last": s.last_value, "last_step": s.last_step,
                    "recent": recent, "nonfinite": s.nonfinite,
                }
            )  # fmt: skip
        alerts = [f"[{sev}] {msg}" for sev, msg in self.db.conn.execute(SQL_OPEN_ALERTS, (self.run_id,))]
        elapsed = round(t - run.started_at, 1) if run.started_at else None
        return build_digest(
            run={
                "id": run.id,
                "name": run.name,
                "status": run.status,
                "command": run.command,
                "elapsed_s": elapsed,
            },
            metrics=metrics,
            log_tail=tail_lines(self.files.output, 40, 4096).text,
            open_alerts=alerts,
        )

    def record_verdict(self, result: Any, t: float) -> None:
        from sidecar.judge import verdict_alert

        spec = None
        if result.error:
            log.warning("%s", result.error)
        elif result.verdict is not None and result.verdict.action == "alert":
            spec = verdict_alert(result.verdict, self.settings.judge_model or "")
        with self.db.write() as c:
            usage = (
                1 if result.error else 0,
                result.prompt_tokens,
                result.completion_tokens,
                result.cost_usd,
            )
            c.execute(SQL_JUDGE_USAGE, (*usage, t, self.run_id))
            row = self._raise(c.execute, spec) if spec is not None else None
        if row is not None and spec is not None:
            log.info("judge alert %s [%s] %s", row["id"], spec.severity, spec.message)
        elif spec is not None:
            log.info("judge alert not raised: the same concern was raised recently")
        elif result.verdict is not None and not result.error:
            log.info("judge: %s", result.verdict.action)
