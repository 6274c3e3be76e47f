"""The per-run monitor loop: read the run's metric sources, store metrics, raise alerts, settle status.

Each poll stats the run's files; when they grew it reads the new bytes from the saved
offsets (``sidecar.sources``: metrics.jsonl, output.log and the framework log files found
under the workdir), and ``sidecar.writer`` stores, in ONE transaction, the metric points,
the series summaries, any alerts the rules raise and every advanced offset. A sidecar
killed at any instant therefore resumes exactly where the last committed poll ended: no
line lost, none counted twice. The offset update is a compare-and-set on the previous
offsets and this process's pid, so even two sidecars for one run could not both ingest a
line. Status is settled by ``sidecar.status``, the optional LLM judge by ``sidecar.judging``.

Imports are stdlib plus the stdlib-only parts of ``mcp_server.core``; sqlmodel, pydantic
and libtmux stay out unless needed (idle RSS budget: 60 MB).
"""

from __future__ import annotations

import dataclasses
import logging
import os
import socket
import time
from typing import Any

from mcp_server.core.execution import ending
from mcp_server.core.execution.jobfiles import JobFiles
from mcp_server.core.execution.logs import tail_lines
from mcp_server.core.execution.provenance_probe import wait_for_probe
from mcp_server.core.execution.run_status import TERMINAL, RunStatus
from mcp_server.core.execution.sidecar_proc import is_sidecar
from mcp_server.core.monitoring.alert_specs import AlertSpec, ending_alert
from mcp_server.core.monitoring.monitor_settings import MonitorSettings
from mcp_server.core.paths import StateDir
from mcp_server.core.storage.sqlwrites import raise_alert_sql
from sidecar.batch import Batch, Progress
from sidecar.db import RunState, SidecarDB
from sidecar.judging import JudgeMixin
from sidecar.pruner import PruneMixin
from sidecar.sources.files import FileSources
from sidecar.sources.jsonl import read_jsonl
from sidecar.sources.output import read_output
from sidecar.status import StatusMixin
from sidecar.writer import OwnershipLost, Writer

log = logging.getLogger("sidecar")

RUN_REFRESH_S = 1.0  # re-read the run row (others may stop, requeue or settle it)
SLOW_WALK_S = 0.1  # a workdir walk slower than this spaces the next ones out


class Monitor(StatusMixin, JudgeMixin, PruneMixin):
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
        self.writer = Writer(self.db, run_id, self.pid, settings.alert_ttl_s)
        self.sources = FileSources(str(self.files.run_dir), {})
        self.discover_due = 0.0
        self.last_points_at = 0.0  # when a poll last stored points (from any source)
        self.raised_stall: str | None = None
        self._watcher: Any = None
        self._backend: Any = None
        self.next_refresh = 0.0
        self.last_heartbeat = 0.0
        self.output_size = 0
        self.data_version = 0
        self.judged_version = 0
        self.judge: Any = None
        self.judge_due = 0.0
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
            output_state=str(row["output_state"] or ""),
        )
        self.writer.load()
        run = self.run or self.db.load_run(self.run_id)
        workdir = run.workdir if run is not None else str(self.files.run_dir)
        self.sources = FileSources(workdir, self.db.load_files(self.run_id))
        self.discover_due = 0.0  # the files found so far are known again only by looking

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
        self.prune_setup()
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
        self.discover_files(t)
        batch = self.read_new(final=False)
        if batch is not None:
            self.commit(batch, t)
        if t >= self.next_refresh:
            self.refresh_run()
        self.check_status(t)
        if self.run is not None and RunStatus(self.run.status) not in TERMINAL:
            self.prune_tick(t)
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

    # ---- reading and committing ------------------------------------------------------------

    def discover_files(self, t: float, force: bool = False) -> None:
        """Look for framework log files under the workdir (at most every discover_s)."""
        run = self.run
        if run is None or (not force and t < self.discover_due):
            return
        self.discover_due = t + self.settings.discover_s
        started = run.started_at or run.launched_at
        if started is None:
            return
        pgid = self.watcher.job_session() if self.watcher is not None else None
        t0 = time.monotonic()
        self.sources.discover(started, pgid, lambda until: self.db.runs_sharing_workdir(run, until))
        elapsed = time.monotonic() - t0
        if elapsed > SLOW_WALK_S:  # a huge workdir is walked less often: ~5% of a core at most
            self.discover_due = max(self.discover_due, t + 20 * elapsed)

    def read_new(self, final: bool) -> Batch | None:
        """Parse what every source gained since its saved offset; None when nothing changed."""
        p = dataclasses.replace(self.progress)
        batch = Batch(progress=p)
        m_size = read_jsonl(self.files.metrics, batch, final)
        if p.log_parsing and m_size > 0:
            p.log_parsing = False  # metrics.jsonl is in use: it is the source of truth from now on
        self.sources.read(batch, final)
        o_size = read_output(self.files.output, batch, final, self.settings.log_all_ranks)
        if o_size != self.output_size:
            self.output_size = o_size
            self.data_version += 1
        if final:
            # The writer is gone: a line still being skipped (too long, never ended) ends here.
            if p.metrics_skipping and m_size <= p.metrics_offset:
                batch.huge_lines += 1
                p.metrics_skipping = False
            if p.log_parsing and p.output_skipping and o_size <= p.output_offset:
                batch.huge_lines += 1
                p.output_skipping = False
        return None if batch.empty(self.progress) else batch

    def commit(self, batch: Batch, t: float) -> None:
        raised = self.writer.commit(batch, self.progress, self.sources.progress, t)
        self.progress = batch.progress
        self.sources.adopt(batch)
        self.last_heartbeat = t
        if len(batch.points) > batch.duplicates:
            self.data_version += 1
            self.last_points_at = t
        for spec, row in raised:
            if row is not None:
                log.info("alert %s [%s] %s", row["id"], spec.severity, spec.message)

    def _raise(self, execute: Any, spec: AlertSpec) -> dict[str, Any] | None:
        return raise_alert_sql(execute, run_id=self.run_id, **spec.fields())

    def raise_now(self, spec: AlertSpec) -> None:
        with self.db.write() as c:
            row = self._raise(c.execute, spec)
        if row is not None:
            log.info("alert %s [%s] %s", row["id"], spec.severity, spec.message)

    def finish(self) -> None:
        """The run ended: drain what is left (a final unterminated line too), then say how it ended.

        A sweep's next run should not wait for a long drain, so the end hooks run first,
        unless the sweep is adaptive: its next configuration is chosen from this run's result."""
        adaptive = self.db.sweep_method(self.run_id) == "tpe"
        if self.settled_end and not adaptive:
            self.after_end()
        self.discover_files(self.clock(), force=True)  # a short run may have written files unseen
        while True:
            batch = self.read_new(final=True)
            if batch is None:
                break
            self.commit(batch, self.clock())
            if not batch.backlog:
                break
        if self.settled_end and adaptive:
            self.after_end(drained=True)
        self.refresh_run()
        run = self.run
        if run is None:
            return
        # Raised already by whoever recorded the ending (core.execution.ending), unless the run was ended
        # another way (stopped while queued, out of gpuwrap retries): the signature dedups it.
        tail = tail_lines(self.files.output, ending.TAIL_LINES, ending.TAIL_BYTES).text
        spec = ending_alert(
            status=run.status, exit_code=run.exit_code, reason=run.status_reason, output_tail=tail
        )
        if spec is not None:
            self.raise_now(spec)
        wait_for_probe(self.files.run_dir)
