"""Ray backend: a run is a Ray job (Jobs API), its launch script the job's entrypoint.

``backend="ray"`` submits the run's launch script to the cluster named by ``RAY_ADDRESS`` (the
job server, e.g. ``http://head:8265``; unset: ``http://127.0.0.1:8265``) with ``gpus`` as the
entrypoint's GPUs (Ray sets ``CUDA_VISIBLE_DEVICES``), waits its turn in Ray's queue while
the cluster lacks them (PENDING → ``queued``), and maps the job's end to the run's with the
command's true exit code (the run dir's exit_code file, else the job's ``driver_exit_code``).
A job outlives the server that submitted it; any later server settles it. ``stop_run`` is
Ray's ``stop_job``. Workers that do not share the state dir's filesystem get the run's files
through the job (``bundle``) and send its output, metrics and exit code back through its log
(``frames``).

This module is what the registry loads; Ray's client loads with the first submission.
"""

from __future__ import annotations

import dataclasses
import logging
import math
import re
import time
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

from mcp_server.core.backends.base import (
    AVAILABLE,
    EXPLICIT,
    UNAVAILABLE,
    Backend,
    Facts,
    Probe,
    Watcher,
    observe_files,
)
from mcp_server.core.backends.ray_jobs import api, bundle, frames
from mcp_server.core.backends.ray_jobs.bundle import BUNDLE
from mcp_server.core.errors import BackendError, InvalidInput
from mcp_server.core.execution.jobfiles import JobFiles
from mcp_server.core.execution.run_status import Observation, RunStatus

if TYPE_CHECKING:
    from pydantic import BaseModel

__all__ = ["RayBackend"]

log = logging.getLogger("sidecar")

PREFIX = "ray:"
# A job Ray calls ended may lack its exit_code file a moment on a lagging shared filesystem.
EXIT_FILE_GRACE_S = 5.0
ENDED = {"SUCCEEDED", "FAILED", "STOPPED"}
_MEM = re.compile(r"^(\d+(?:\.\d+)?)([KMGT]?)$")
_UNITS = {"": 1, "K": 2**10, "M": 2**20, "G": 2**30, "T": 2**40}
# How often a sidecar re-reads a shipped job's log: more often for a small log.
SYNC_MIN_S, SYNC_PER_MIB_S, SYNC_MAX_S = 1.0, 1.0, 60.0


def parse_ref(ref: str | None) -> tuple[str, str] | None:
    """``ray:<submission id>@<job server>`` → (submission id, address)."""
    if not ref or not ref.startswith(PREFIX) or "@" not in ref:
        return None
    sid, _, address = ref[len(PREFIX) :].partition("@")
    return sid, address


def submission_id(run_id: str) -> str:
    return f"research-mcp-{run_id}"


def _options_model() -> type[BaseModel]:
    from pydantic import BaseModel, ConfigDict, Field

    class RayOptions(BaseModel):
        model_config = ConfigDict(extra="forbid")

        num_cpus: float | None = Field(None, ge=0, le=4096, description="ray: entrypoint CPUs")
        memory: str | None = Field(None, description="ray: entrypoint memory, e.g. 8G")
        resources: dict[str, float] | None = Field(None, description="ray: custom resources")
        ship_files: bool = Field(False, description="ray: send output back via the job log")

    return RayOptions


class RayWatcher(Watcher):
    """Files first, as for any run; a shipped job's files are fetched from its log first."""

    def __init__(self, backend: Backend, files: JobFiles, check_s: float) -> None:
        super().__init__(backend, files, check_s)
        self.synced_at = -math.inf

    def look(self, run: Any, t: float) -> Observation | None:
        if RayBackend.shipped(self.files) and t - self.synced_at >= self._sync_every():
            self.synced_at = t
            try:
                self.backend.sync(run, self.files)
            except BackendError as err:  # the cluster may be briefly away; the next look tries again
                log.warning("cannot read %s's job log: %s", run.id, err)
        return super().look(run, t)

    def _sync_every(self) -> float:
        try:
            size = self.files.output.stat().st_size
        except OSError:
            size = 0
        return min(SYNC_MAX_S, SYNC_MIN_S + SYNC_PER_MIB_S * size / 2**20)


class RayBackend(Backend):
    name = "ray"
    summary = "a Ray job per run on the cluster RAY_ADDRESS names"
    idempotent_submit = True  # the submission id is the run's: Ray refuses it twice

    # ---- class level -------------------------------------------------------------------------

    @classmethod
    def affinity(cls, facts: Facts) -> int:
        try:
            explicit = api.address_from_env() is not None
        except BackendError:
            return UNAVAILABLE
        if explicit:
            return EXPLICIT
        found = facts.backends.get(cls.name) or {}
        return AVAILABLE if found.get("answered") else UNAVAILABLE

    @classmethod
    def probe(cls, timeout_s: float) -> Probe:
        try:
            address = api.resolve_address()
        except BackendError as err:
            return Probe({"answered": False}, signals=[str(err)])
        source = "RAY_ADDRESS" if api.address_from_env() else "default address"
        try:
            info = api.version(address, timeout_s)
            nodes = [n for n in api.nodes(address, timeout_s) if n.get("state") == "ALIVE"]
        except BackendError as err:
            return Probe({"answered": False, "address": address}, signals=[f"Ray ({source}): {err}"])
        totals = [n.get("resources_total") or {} for n in nodes]
        facts = {
            "answered": True,
            "address": address,
            "ray_version": (info or {}).get("ray_version"),
            "nodes": len(nodes),
            "cpus": sum(float(t.get("CPU", 0)) for t in totals),
            "gpus": sum(float(t.get("GPU", 0)) for t in totals),
        }
        signal = (
            f"Ray {facts['ray_version']} at {address} ({source}): {facts['nodes']} node(s), "
            f"{facts['cpus']:g} CPU(s), {facts['gpus']:g} GPU(s)"
        )
        return Probe(facts, signals=[signal])

    @classmethod
    def describe(cls, facts: Mapping[str, Any]) -> list[str]:
        if not facts.get("answered"):
            return []
        return [
            f"Ray cluster at {facts.get('address')}: {facts.get('nodes')} node(s), "
            f"{float(facts.get('cpus') or 0):g} CPU(s), {float(facts.get('gpus') or 0):g} GPU(s)"
        ]

    @classmethod
    def options_model(cls) -> type[BaseModel]:
        return _options_model()

    @classmethod
    def validate_options(cls, raw: Mapping[str, Any] | None) -> dict[str, Any]:
        kept = super().validate_options(raw)
        if "memory" in kept:
            cls.memory_bytes(kept["memory"])
        return kept

    @staticmethod
    def memory_bytes(text: str) -> int:
        match = _MEM.match(str(text).strip().upper())
        if not match:
            raise InvalidInput(
                f"options.memory={text!r} for backend 'ray' is not a size; use e.g. '8G' or '512M'."
            )
        return int(float(match.group(1)) * _UNITS[match.group(2)])

    # ---- runs --------------------------------------------------------------------------------

    @staticmethod
    def shipped(files: JobFiles) -> bool:
        """The job runs where the state dir is not: no launch script of ours ever ran here."""
        return (files.run_dir / BUNDLE).exists() and not files.launcher_pid.exists()

    def planned_ref(self, run: Any) -> str | None:
        return f"{PREFIX}{submission_id(run.id)}@{api.resolve_address()}"

    def submit(self, run: Any, files: JobFiles) -> str:
        from mcp_server.core.execution.launch import render_launch_script

        address = api.resolve_address()
        opts = self.options_of_run(run.options or {})
        shipped_launch = render_launch_script(
            run_id=run.id,
            workdir=run.workdir,
            files=files,
            echo_output=False,
            end_leftovers=self.ctx.settings.end_leftovers,
            run_dir_expr='"$PWD"',
        )
        kwargs: dict[str, Any] = {
            "entrypoint": bundle.ENTRYPOINT,
            "submission_id": submission_id(run.id),
            "runtime_env": {
                "working_dir": str(
                    bundle.build(files, shipped_launch, always_ship=bool(opts.get("ship_files")))
                )
            },
            "metadata": {"research_mcp_run": run.id, "name": run.name},
        }
        if run.gpus:
            kwargs["entrypoint_num_gpus"] = run.gpus
        if opts.get("num_cpus") is not None:
            kwargs["entrypoint_num_cpus"] = opts["num_cpus"]
        if opts.get("memory"):
            kwargs["entrypoint_memory"] = self.memory_bytes(opts["memory"])
        if opts.get("resources"):
            kwargs["entrypoint_resources"] = opts["resources"]
        sid = api.submit(address, **kwargs)
        return f"{PREFIX}{sid}@{address}"

    def sync(self, run: Any, files: JobFiles) -> None:
        ref = parse_ref(run.backend_ref)
        if ref is None or not self.shipped(files) or files.exit_code.exists():
            return
        log = api.job_log(ref[1], ref[0])
        shipped = frames.parse(log)
        if shipped.hello:
            frames.apply(shipped, files)

    def observe(self, runs: Sequence[Any], files: Mapping[str, JobFiles]) -> dict[str, Observation]:
        out: dict[str, Observation] = {}
        t = time.time()
        for run in runs:
            ref = parse_ref(run.backend_ref)
            if ref is None:
                out[run.id] = observe_files(files[run.id], present=None)
                continue
            info = api.job_info(ref[1], ref[0])  # one GET; BackendError: observe what we can later
            if info is not None and info.status not in ("PENDING",):
                self.sync(run, files[run.id])
            out[run.id] = self._observation(ref[0], files[run.id], info, t)
        return out

    def _observation(self, sid: str, files: JobFiles, info: api.JobInfo | None, t: float) -> Observation:
        label = f"Ray job {sid}"
        obs = observe_files(files, present=None)
        started = obs.started_at or frames.started_at(files)
        if info is None:
            # Never submitted (a launch a killed server interrupted), or the cluster forgot it.
            unsubmitted = not (files.run_dir / "backend_ref").exists()
            if obs.exit_code is not None:
                return dataclasses.replace(obs, present=False)
            return Observation(
                present=False,
                started_at=started,
                detail=f"Ray no longer knows {label}",
                unsubmitted=unsubmitted,
            )
        if obs.exit_code is not None:
            return dataclasses.replace(obs, present=info.status not in ENDED, started_at=started)
        if info.status == "PENDING":
            why = f" — {info.message}" if info.message else ""
            return Observation(present=True, waiting=True, detail=f"{label}: PENDING{why}")
        if info.status == "RUNNING":
            started = started or (info.start_time if self.shipped(files) else None)
            return Observation(present=True, started_at=started, detail=f"{label}: RUNNING")
        ended = info.end_time or t
        if info.driver_exit_code is not None and (self.shipped(files) or t - ended >= EXIT_FILE_GRACE_S):
            return Observation(
                present=False,
                started_at=started or info.start_time,
                exit_code=info.driver_exit_code,
                ended_at=info.end_time,
                detail=f"{label}: {info.status}",
            )
        if info.status == "STOPPED":
            return Observation(
                present=False,
                started_at=started,
                final=RunStatus.STOPPED,
                detail=f"{label}: STOPPED",
                stop_note=files.read_stop_note(),
            )
        if info.status == "FAILED" and info.driver_exit_code is None:
            why = info.message.splitlines()[0][:300] if info.message else "no reason given"
            return Observation(
                present=False, started_at=started, final=RunStatus.FAILED, detail=f"{label}: FAILED — {why}"
            )
        # Ended with a code the run dir does not show yet (a lagging shared filesystem).
        return Observation(present=True, started_at=started, detail=f"{label}: {info.status}")

    def watcher(self, files: JobFiles, check_s: float) -> Watcher:
        return RayWatcher(self, files, check_s)

    def stop(self, run: Any, files: JobFiles, grace_s: float) -> None:
        ref = parse_ref(run.backend_ref)
        if ref is None:
            return
        sid, address = ref
        api.stop(address, sid)
        # Ray signals the job (SIGTERM, then SIGKILL after RAY_JOB_STOP_WAIT_TIME_S, 3 s by
        # default); wait for it to say so, so the caller sees the final status.
        deadline = time.monotonic() + grace_s + 30
        while time.monotonic() < deadline:
            info = api.job_info(address, sid)
            if info is None or info.status in ENDED:
                return
            time.sleep(0.2)
