"""The Slurm backend's engine room: sbatch, the shared squeue poll, sacct, scancel.

The scheduler is polled sparingly: at most one ``squeue`` for *all* active jobs per
``slurm_poll_s`` across every process sharing the state dir (the claim and the answers
live in the store), because shared clusters punish tight polling loops. A job that the
scheduler stops listing is settled from its exit_code file, then from ``sacct`` where
accounting exists (asked when the job first goes missing and once more before giving up,
not on every poll), and only declared lost after it stayed missing for two polls and a
grace period. A job whose ending is known, or that is given up as lost, is not asked about
again: a lost run stays watched only for its exit_code file. pyslurm does not build against
the Slurm this targets, so the CLI is the API.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any

from sqlmodel import col, select

from mcp_server.core.backends.base import observe_files
from mcp_server.core.backends.slurm.jobs import SlurmJob
from mcp_server.core.backends.slurm.options import validate_slurm_options
from mcp_server.core.errors import BackendError
from mcp_server.core.execution.jobfiles import JobFiles
from mcp_server.core.execution.run_status import ACTIVE as ACTIVE_RUNS
from mcp_server.core.execution.run_status import Observation, RunStatus, describe_exit
from mcp_server.core.settings import _float_env
from mcp_server.core.storage.models import Meta, Run
from mcp_server.core.storage.store import Store, now

CLI_TIMEOUT_S = 20.0
# How long a job Slurm calls finished may lack its exit_code file (shared filesystems lag).
EXIT_FILE_GRACE_S = 10.0
POLL_CLAIM_KEY = "slurm.last_poll"

PENDING = {"PENDING", "CONFIGURING", "REQUEUED", "REQUEUE_HOLD", "REQUEUE_FED", "RESV_DEL_HOLD", "SUSPENDED"}
ACTIVE = {"RUNNING", "COMPLETING", "SIGNALING", "STAGE_OUT", "RESIZING"}
# Terminal states and what they mean for a run that left no exit_code file.
ENDINGS: dict[str, tuple[RunStatus, str]] = {
    "COMPLETED": (RunStatus.FINISHED, "Slurm: COMPLETED"),
    "FAILED": (RunStatus.FAILED, "Slurm: FAILED (the batch script ended with an error)"),
    "CANCELLED": (RunStatus.STOPPED, "Slurm: CANCELLED (scancel or an administrator)"),
    "TIMEOUT": (RunStatus.FAILED, "Slurm: TIMEOUT — the job reached its time limit (raise slurm.time)"),
    "OUT_OF_MEMORY": (
        RunStatus.FAILED,
        "Slurm: OUT_OF_MEMORY — the job exceeded its memory (raise slurm.mem)",
    ),
    "NODE_FAIL": (RunStatus.FAILED, "Slurm: NODE_FAIL — the job's node failed"),
    "PREEMPTED": (RunStatus.FAILED, "Slurm: PREEMPTED by a higher-priority job"),
    "BOOT_FAIL": (RunStatus.FAILED, "Slurm: BOOT_FAIL — the node failed to boot"),
    "DEADLINE": (RunStatus.FAILED, "Slurm: DEADLINE — the job missed its deadline"),
    "SPECIAL_EXIT": (RunStatus.FAILED, "Slurm: SPECIAL_EXIT"),
    "REVOKED": (RunStatus.FAILED, "Slurm: REVOKED"),
}
# Endings the exit code alone explains; any other one (TIMEOUT, OUT_OF_MEMORY, PREEMPTED...)
# is how the scheduler killed the command, and the run's reason says so next to the code.
PLAIN_ENDINGS = {"COMPLETED", "FAILED"}

# ---- scheduler CLI --------------------------------------------------------------------------


@dataclass(frozen=True)
class CliResult:
    code: int
    out: str
    err: str


def _clean_env() -> dict[str, str]:
    """The submitting environment minus research-mcp's own secrets (sbatch exports it to the job)."""
    return {k: v for k, v in os.environ.items() if k != "RESEARCH_MCP_TOKEN"}


def run_cli(*argv: str, timeout: float = CLI_TIMEOUT_S) -> CliResult:
    if shutil.which(argv[0]) is None:
        raise BackendError(
            f"{argv[0]} was not found on PATH: this machine has no Slurm client. "
            "Use backend='local', or run research-mcp on a Slurm login node."
        )
    try:
        proc = subprocess.run(argv, capture_output=True, text=True, timeout=timeout, env=_clean_env())
    except subprocess.TimeoutExpired:
        raise BackendError(f"{argv[0]} did not answer within {timeout:.0f} s; is slurmctld up?") from None
    return CliResult(proc.returncode, proc.stdout, proc.stderr.strip())


def job_id_of(run: Run) -> str | None:
    ref = run.backend_ref or ""
    return ref.split(":", 1)[1] if ref.startswith("slurm:") else None


@dataclass(frozen=True)
class SlurmSettings:
    # At most one scheduler query per this many seconds, shared by all processes.
    poll_s: float = 6.0
    # A job the scheduler stops listing is declared lost only after this long (and two polls).
    missing_grace_s: float = 60.0

    @classmethod
    def from_env(cls) -> SlurmSettings:
        return cls(
            poll_s=_float_env("RESEARCH_MCP_SLURM_POLL_S", cls.poll_s),
            missing_grace_s=_float_env("RESEARCH_MCP_SLURM_MISSING_GRACE_S", cls.missing_grace_s),
        )


class SlurmScheduler:
    name = "slurm"

    def __init__(self, store: Store, settings: SlurmSettings) -> None:
        self.store = store
        self.settings = settings
        self.calls = 0  # scheduler CLI calls made by this process (for benches and logs)

    def _cli(self, *argv: str) -> CliResult:
        self.calls += 1
        return run_cli(*argv)

    # ---- submit ----------------------------------------------------------------------------

    def sbatch_argv(self, run: Run, files: JobFiles) -> list[str]:
        opts = validate_slurm_options(run.options.get("slurm"))
        argv = [
            "sbatch", "--parsable",
            f"--job-name={run.name}",
            f"--comment=research-mcp {run.id}",
            f"--output={files.run_dir / 'slurm.out'}",
            "--open-mode=append",
            f"--chdir={run.workdir}",
        ]  # fmt: skip
        if run.gpus:
            argv.append(f"--gres=gpu:{run.gpus}")
        for key, flag in (
            ("partition", "partition"),
            ("time", "time"),
            ("account", "account"),
            ("qos", "qos"),
        ):
            if key in opts:
                argv.append(f"--{flag}={opts[key]}")
        if "cpus_per_task" in opts:
            argv.append(f"--cpus-per-task={opts['cpus_per_task']}")
        if "mem" in opts:
            argv.append(f"--mem={opts['mem']}")
        argv += opts.get("extra_args", [])
        argv.append(str(files.launch))
        return argv

    def submit(self, run: Run, files: JobFiles) -> str:
        res = self._cli(*self.sbatch_argv(run, files))
        if res.code != 0:
            detail = res.err or res.out.strip() or f"exit code {res.code}"
            raise BackendError(f"sbatch refused the job: {detail}")
        job_id = res.out.strip().split(";", 1)[0]
        if not job_id.isdigit():
            raise BackendError(f"sbatch answered {res.out.strip()!r}, not a job id.")
        with self.store.write() as s:
            s.merge(SlurmJob(job_id=job_id, run_id=run.id, state="SUBMITTED", updated_at=now()))
        return f"slurm:{job_id}"

    # ---- polling -----------------------------------------------------------------------------

    def _claim_poll(self) -> bool:
        """True for exactly one caller per poll interval across all processes."""
        t = now()
        with self.store.write() as s:
            row = s.get(Meta, POLL_CLAIM_KEY)
            if row is not None and t - float(row.value) < self.settings.poll_s:
                return False
            s.merge(Meta(key=POLL_CLAIM_KEY, value=repr(t)))
        return True

    def _gone(self, job: SlurmJob, t: float) -> bool:
        """Missing from the scheduler for two polls and the grace period: given up as lost."""
        gone_for = t - job.missing_since if job.missing_since is not None else 0.0
        return job.missing_polls >= 2 and gone_for >= self.settings.missing_grace_s

    def _jobs_to_ask(self, t: float) -> tuple[dict[str, str], dict[str, SlurmJob]]:
        """Jobs of active runs whose state may still change, and what the cache says of them.

        Not lost runs (reconcile keeps watching them, but only for an exit_code file), not
        jobs with a known ending (Slurm's endings are final), not jobs given up as missing:
        asking about those every poll would cost scheduler calls forever.
        """
        statuses = [status.value for status in ACTIVE_RUNS]
        with self.store.read() as s:
            runs = s.exec(
                select(Run.id, Run.backend_ref).where(Run.backend == self.name, col(Run.status).in_(statuses))
            ).all()
            jobs = {ref.split(":", 1)[1]: rid for rid, ref in runs if ref and ref.startswith("slurm:")}
            rows = {
                row.job_id: row
                for row in s.exec(select(SlurmJob).where(col(SlurmJob.job_id).in_(list(jobs)))).all()
            }
        settled = {job_id for job_id, row in rows.items() if row.state in ENDINGS or self._gone(row, t)}
        return {job_id: rid for job_id, rid in jobs.items() if job_id not in settled}, rows

    def poll(self) -> None:
        """One squeue for every job still worth asking about; answers go to the shared cache."""
        t = now()
        jobs, rows = self._jobs_to_ask(t)
        if not jobs:
            return
        res = self._cli("squeue", "-h", "--states=all", "-j", ",".join(sorted(jobs)), "-o", "%i|%T|%r")
        if res.code != 0 and "Invalid job id" not in res.err:
            return  # controller unreachable: keep what we knew; an unknown is never an ending
        listed: dict[str, tuple[str, str]] = {}
        for line in res.out.splitlines() if res.code == 0 else []:
            parts = line.strip().split("|")
            if len(parts) == 3 and parts[0] in jobs:
                listed[parts[0]] = (parts[1].split()[0], parts[2])
        # sacct only when a job first goes missing and once more before it is given up: an
        # answer then is final, and no answer will not change on the next poll.
        ask = [job_id for job_id in sorted(set(jobs) - set(listed)) if self._sacct_due(rows.get(job_id), t)]
        from_sacct = self._sacct(ask) if ask else {}
        listed.update(from_sacct)
        t = now()
        with self.store.write() as s:
            for job_id, run_id in jobs.items():
                row = s.get(SlurmJob, job_id) or SlurmJob(job_id=job_id, run_id=run_id, updated_at=t)
                if job_id in listed:
                    row.state, row.reason = listed[job_id]
                    row.seen_at = t
                    if row.state in ENDINGS and row.ended_seen_at is None:
                        # The controller forgets a job MinJobAge (300 s by default) after it
                        # ended: one only accounting knows had time to write its exit_code.
                        row.ended_seen_at = t - EXIT_FILE_GRACE_S if job_id in from_sacct else t
                    row.missing_since = None
                    row.missing_polls = 0
                else:
                    row.missing_since = row.missing_since or t
                    row.missing_polls += 1
                row.updated_at = t
                s.add(row)

    def _sacct_due(self, row: SlurmJob | None, t: float) -> bool:
        if row is None or row.missing_since is None:
            return True  # first time missing
        gone_for = t - row.missing_since
        return gone_for >= self.settings.missing_grace_s and not self._gone(row, t)

    def _sacct(self, job_ids: Sequence[str]) -> dict[str, tuple[str, str]]:
        """Final states of jobs the controller forgot, where accounting exists.

        Only endings count: accounting that still calls a forgotten job RUNNING (a
        controller that lost its state) must not keep it from being declared lost.
        """
        if shutil.which("sacct") is None:
            return {}
        res = self._cli("sacct", "-n", "-P", "-X", "-j", ",".join(job_ids), "-o", "JobID,State,Reason")
        if res.code != 0:
            return {}
        out: dict[str, tuple[str, str]] = {}
        for line in res.out.splitlines():
            parts = line.split("|")
            if len(parts) >= 2 and parts[0] in job_ids and parts[1].split()[0] in ENDINGS:
                out[parts[0]] = (parts[1].split()[0], parts[2] if len(parts) > 2 else "")
        return out

    def observe(self, runs: Sequence[Any], files: Mapping[str, JobFiles]) -> dict[str, Observation]:
        if self._claim_poll():
            self.poll()
        with self.store.read() as s:
            ids = [r.id for r in runs]
            cache = {
                row.run_id: row for row in s.exec(select(SlurmJob).where(col(SlurmJob.run_id).in_(ids))).all()
            }
        t = now()
        return {run.id: self._observation(run, files[run.id], cache.get(run.id), t) for run in runs}

    def _observation(self, run: Run, files: JobFiles, job: SlurmJob | None, t: float) -> Observation:
        """What the run's files and the cached scheduler state say of one run."""
        obs = observe_files(files, present=None)
        if obs.exit_code is not None:
            return self._ended_with_code(obs, job, t)
        started = obs.started_at
        if job is None:
            return obs
        label = f"Slurm job {job.job_id}"
        if job.state in ENDINGS:
            ended_seen = job.ended_seen_at or t
            if job.state in PLAIN_ENDINGS and t - ended_seen < EXIT_FILE_GRACE_S:
                # The launch script writes exit_code before the job ends; give a lagging
                # shared filesystem a moment before settling from the scheduler's word.
                return Observation(present=True, started_at=started, detail=f"{label}: {job.state}")
            final, why = ENDINGS[job.state]
            return Observation(present=False, started_at=started, final=final, detail=f"{why} [{label}]")
        if job.missing_since is not None:
            # Not listed by the last poll: the state cached before is stale.
            if self._gone(job, t):
                return Observation(
                    present=False,
                    started_at=started,
                    detail=f"Slurm no longer knows {label} and it left no exit code",
                )
            return Observation(present=None, started_at=started, detail=f"{label}: not listed by squeue")
        if job.state in PENDING:
            reason = f" ({job.reason})" if job.reason and job.reason != "None" else ""
            return Observation(
                present=True, waiting=True, started_at=started, detail=f"{label}: {job.state}{reason}"
            )
        if job.state in ACTIVE:
            return Observation(present=True, started_at=started, detail=f"{label}: {job.state}")
        return Observation(
            present=None, started_at=started, detail=f"{label}: {job.state or 'not listed yet'}"
        )

    def _ended_with_code(self, obs: Observation, job: SlurmJob | None, t: float) -> Observation:
        """The exit code decides the status; a scheduler's kill is named in the reason.

        A TIMEOUT, OUT_OF_MEMORY or PREEMPTED job's command dies by a signal (143, 137) and
        the launch script may still write that code, which alone reads "killed by SIGTERM".
        Slurm calls the job ended only after the script exits, so a signal exit waits (at
        most EXIT_FILE_GRACE_S) for a poll to see the job's ending.
        """
        code = obs.exit_code
        assert code is not None
        if job is None:
            return obs
        label = f"Slurm job {job.job_id}"
        if job.state in ENDINGS and job.state not in PLAIN_ENDINGS:
            why = ENDINGS[job.state][1] + "; " + describe_exit(code)
            if obs.failure:
                why += f": {obs.failure}"
            final = RunStatus.FINISHED if code == 0 else RunStatus.FAILED
            return replace(obs, present=False, final=final, detail=f"{why} [{label}]")
        ended = obs.ended_at if obs.ended_at is not None else t
        if code > 128 and job.state in ACTIVE and job.missing_since is None and t - ended < EXIT_FILE_GRACE_S:
            return Observation(
                present=True,
                started_at=obs.started_at,
                detail=f"{label}: {job.state}; {describe_exit(code)}, waiting for Slurm to say why",
            )
        return obs

    # ---- stop -------------------------------------------------------------------------------

    def stop(self, run: Run, files: JobFiles, grace_s: float) -> None:
        job_id = job_id_of(run)
        if job_id is None:
            return
        res = self._cli("scancel", job_id)
        if res.code != 0 and "Invalid job id" not in res.err:
            raise BackendError(f"scancel {job_id} failed: {res.err or res.out}")
        # Slurm signals the job itself (SIGTERM, then SIGKILL after KillWait); wait for the
        # scheduler to call it ended so the caller sees the final status.
        deadline = time.monotonic() + grace_s + 30
        while time.monotonic() < deadline:
            res = self._cli("squeue", "-h", "--states=all", "-j", job_id, "-o", "%T")
            state = res.out.strip().split()[0] if res.code == 0 and res.out.strip() else None
            if state is None or state in ENDINGS:
                with self.store.write() as s:
                    row = s.get(SlurmJob, job_id) or SlurmJob(job_id=job_id, run_id=run.id, updated_at=now())
                    if state is not None:
                        row.state, row.seen_at = state, now()
                        row.ended_seen_at = row.ended_seen_at or now()
                    row.updated_at = now()
                    s.add(row)
                return
            time.sleep(0.5)
