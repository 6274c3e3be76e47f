"""Finish what a killed server left half-done, so a kill -9 never costs a run.

A create or a launch interrupted at any point leaves one of: a staging dir (its row may
or may not exist), a ready run that was meant to start (``spec.json`` says auto_start),
or a local run moved to launching/queued that never reached tmux. Every server start and
every full settle looks for these once they are older than the launch grace period (so a
create still in progress elsewhere is left alone) and completes them: the dir is put in
place or removed, the ready run is started, the unsubmitted run is submitted. Starting
and submitting go through compare-and-set claims, so two servers never launch one run.
"""

from __future__ import annotations

import logging
import os
import shutil
from typing import TYPE_CHECKING

from sqlmodel import col, select

from mcp_server.core.backends import registry
from mcp_server.core.errors import ResearchError
from mcp_server.core.execution import staging
from mcp_server.core.execution.jobfiles import JobFiles
from mcp_server.core.execution.run_status import RunStatus
from mcp_server.core.storage.models import Run
from mcp_server.core.storage.store import now

if TYPE_CHECKING:
    from mcp_server.core.execution.runs import RunService

log = logging.getLogger(__name__)

CLAIM = "resubmitting"


class Recovery:
    def __init__(self, runs: RunService) -> None:
        self.runs = runs
        self.state = runs.state
        self.store = runs.store
        self.grace_s = runs.settings.launch_grace_s

    def run(self) -> list[str]:
        """Complete interrupted creates and launches; returns the ids of runs it touched."""
        touched = self._staging()
        touched += self._ready_to_start()
        touched += self._unsubmitted()
        return touched

    def _staging(self) -> list[str]:
        left = staging.leftovers(self.state)
        if not left:
            return []
        ids = [run_id for run_id, _path, _age, _creator in left]
        with self.store.read() as s:
            known = set(s.exec(select(Run.id).where(col(Run.id).in_(ids))).all())
        out = []
        for run_id, path, age, creator in left:
            if staging.creator_name_alive(self.state, creator):
                continue  # being created right now
            if run_id in known:
                staging.place(self.state, run_id, path)
                out.append(run_id)
            elif creator or age > staging.ABANDONED_AFTER_S:
                log.info("removing %s: a create that never committed", path)
                shutil.rmtree(path, ignore_errors=True)
        return out

    def _ready_to_start(self) -> list[str]:
        cutoff = now() - self.grace_s
        with self.store.read() as s:
            ready = s.exec(
                select(Run).where(Run.status == RunStatus.READY.value, col(Run.created_at) < cutoff)
            ).all()
        out = []
        for run in ready:
            spec = staging.read_spec(self.runs.files(run.id).run_dir)
            if not spec or not spec.get("auto_start") or staging.creator_alive(self.state, spec):
                continue  # auto_start=false (start_run's to start), or its creator is still at it
            try:
                self.runs.start(run.id)
                out.append(run.id)
                log.info("started %s: its creator died before starting it", run.id)
            except ResearchError as err:
                log.warning("could not start %s left ready by a killed server: %s", run.id, err)
        return out

    def _unsubmitted(self) -> list[str]:
        cutoff = now() - self.grace_s
        with self.store.read() as s:
            candidates = s.exec(
                select(Run).where(
                    col(Run.status).in_([RunStatus.LAUNCHING.value, RunStatus.QUEUED.value]),
                    col(Run.launched_at) < cutoff,
                    # A backend that could run a job twice if submitted twice is left alone.
                    col(Run.backend).in_(registry.names_where("idempotent_submit")),
                )
            ).all()
        out = []
        for run in candidates:
            files = self.runs.files(run.id)
            traces = (files.run_dir / "backend_ref", files.launcher_pid, files.pgid, files.exit_code)
            if any(p.exists() for p in traces) or run.launched_at is None:
                continue  # tmux took it
            if staging.creator_alive(self.state, staging.read_spec(files.run_dir)) or not self._claim(files):
                continue
            try:
                self.runs.submit(run)
                out.append(run.id)
                log.info("submitted %s: its launch was interrupted before it reached tmux", run.id)
            except ResearchError as err:
                log.warning("could not submit %s: %s", run.id, err)
                (files.run_dir / CLAIM).unlink(missing_ok=True)  # the next look tries again
        return out

    @staticmethod
    def _claim(files: JobFiles) -> bool:
        """One recoverer per run, across processes: whoever creates the marker first."""
        try:
            os.close(os.open(files.run_dir / CLAIM, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600))
        except FileExistsError:
            return False
        return True
