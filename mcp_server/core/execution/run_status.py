"""Run statuses and the one function that decides a run's next status.

``decide`` is pure: it takes what a backend observed about a job and returns the
transition, if any. The server's reconcile and the sidecar both call it, so a run's end
is decided the same way no matter who looks first; the store applies the result with a
compare-and-set, so two lookers can never record two different ends.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum
from typing import Any, Protocol


class RunStatus(StrEnum):
    READY = "ready"
    QUEUED = "queued"
    LAUNCHING = "launching"
    RUNNING = "running"
    FINISHED = "finished"
    FAILED = "failed"
    STOPPED = "stopped"
    LOST = "lost"


TERMINAL: frozenset[RunStatus] = frozenset(
    {RunStatus.FINISHED, RunStatus.FAILED, RunStatus.STOPPED, RunStatus.LOST}
)
ACTIVE: frozenset[RunStatus] = frozenset({RunStatus.QUEUED, RunStatus.LAUNCHING, RunStatus.RUNNING})

# LOST may still be corrected to an exit-code ending: a job can outlive a scheduler hiccup.
_ALLOWED: dict[RunStatus, frozenset[RunStatus]] = {
    RunStatus.READY: frozenset({RunStatus.QUEUED, RunStatus.LAUNCHING, RunStatus.FAILED, RunStatus.STOPPED}),
    RunStatus.QUEUED: frozenset({RunStatus.LAUNCHING, RunStatus.RUNNING} | TERMINAL),
    RunStatus.LAUNCHING: frozenset({RunStatus.QUEUED, RunStatus.RUNNING} | TERMINAL),
    RunStatus.RUNNING: frozenset({RunStatus.QUEUED} | TERMINAL),
    RunStatus.LOST: frozenset({RunStatus.FINISHED, RunStatus.FAILED, RunStatus.STOPPED}),
    RunStatus.FINISHED: frozenset(),
    RunStatus.FAILED: frozenset(),
    RunStatus.STOPPED: frozenset(),
}


def can_transition(current: RunStatus, new: RunStatus) -> bool:
    return new in _ALLOWED[current]


@dataclass(frozen=True)
class Observation:
    """What a backend saw of one run's job.

    ``present`` is None when the backend could not tell (a scheduler that did not answer):
    an unknown is never turned into ``lost``.
    """

    present: bool | None
    started_at: float | None = None
    exit_code: int | None = None
    ended_at: float | None = None
    waiting: bool = False  # job exists but the user's command has not started (queued by backend)
    detail: str = ""  # backend's own words, e.g. a Slurm state and reason
    # The backend saw the job end in this status without an exit_code file (e.g. a Slurm
    # TIMEOUT killed the launch script); ``detail`` says why.
    final: RunStatus | None = None
    failure: str | None = None  # why the command failed, as the launch script classified it
    # The exit_code file exists but is not an exit status (the job wrote it): why, in words.
    bad_exit_code: str | None = None
    # Processes the command left behind when it ended, in words (the launch script's note).
    leftovers: str | None = None
    # The backend never took the job (a launch a killed server interrupted): not lost, pending.
    unsubmitted: bool = False
    stop_note: str | None = None  # why a stop was asked for, when not by a person (a pruner)


@dataclass(frozen=True)
class Decision:
    status: RunStatus
    reason: str
    exit_code: int | None = None
    started_at: float | None = None
    ended_at: float | None = None
    error: str | None = None


def decision_fields(d: Decision, run_started_at: float | None) -> dict[str, Any]:
    """The run columns a decision sets besides its status (start time only if not yet known)."""
    fields: dict[str, Any] = {}
    if d.exit_code is not None:
        fields["exit_code"] = d.exit_code
    if d.started_at is not None and run_started_at is None:
        fields["started_at"] = d.started_at
    if d.ended_at is not None:
        fields["ended_at"] = d.ended_at
    if d.error is not None:
        fields["error"] = d.error
    return fields


def describe_exit(code: int) -> str:
    if code == 0:
        return "command exited with code 0"
    if code > 128 and code - 128 <= 64:
        import signal

        try:
            name = signal.Signals(code - 128).name
        except ValueError:
            name = f"signal {code - 128}"
        return f"command was killed by {name} (exit code {code})"
    return f"command exited with code {code}"


def decide(
    status: RunStatus,
    obs: Observation,
    *,
    stop_requested: bool,
    launched_at: float | None,
    now: float,
    launch_grace_s: float,
    unsubmitted: bool = False,
) -> Decision | None:
    """Return the transition ``obs`` implies for a run in ``status``, or None to leave it."""
    if status in (RunStatus.FINISHED, RunStatus.FAILED, RunStatus.STOPPED, RunStatus.READY):
        return None
    stopped = obs.stop_note or "stopped on request"
    if obs.final is not None:
        if stop_requested:
            return Decision(RunStatus.STOPPED, f"{stopped}; {obs.detail}", obs.exit_code, obs.started_at)
        return Decision(obs.final, obs.detail, obs.exit_code, obs.started_at, obs.ended_at)
    if obs.exit_code is not None:
        code = obs.exit_code
        left = f"; {obs.leftovers}" if obs.leftovers else ""
        if stop_requested:
            reason = f"{stopped}; {describe_exit(code)}{left}"
            return Decision(RunStatus.STOPPED, reason, code, obs.started_at, obs.ended_at)
        if code == 0:
            reason = describe_exit(code) + left
            return Decision(RunStatus.FINISHED, reason, code, obs.started_at, obs.ended_at)
        reason = describe_exit(code) + (f": {obs.failure}" if obs.failure else "") + left
        return Decision(RunStatus.FAILED, reason, code, obs.started_at, obs.ended_at, obs.failure)
    if status is RunStatus.LOST:
        return None
    if obs.present is False:
        if stop_requested:
            return Decision(RunStatus.STOPPED, f"{stopped} before the command wrote an exit code")
        if obs.bad_exit_code:
            why = (
                f"the job ended but its exit code is unreadable: {obs.bad_exit_code} "
                "(the job may have written its run dir's exit_code itself)"
            )
            return Decision(RunStatus.FAILED, why, started_at=obs.started_at, error=why)
        if launched_at is None:
            return None  # never handed to a backend (e.g. held back by a queue): nothing to lose
        if unsubmitted and obs.started_at is None and status is not RunStatus.RUNNING:
            return None  # a launch a killed server interrupted: recovery submits it (core.storage.recovery)
        never_started = status is not RunStatus.RUNNING and obs.started_at is None
        if never_started and now - launched_at < launch_grace_s:
            return None  # the backend job may not be visible yet
        why = obs.detail or "the job vanished without writing an exit code"
        return Decision(RunStatus.LOST, why)
    if obs.present and obs.started_at is not None and status in (RunStatus.QUEUED, RunStatus.LAUNCHING):
        return Decision(RunStatus.RUNNING, obs.detail or "command started", started_at=obs.started_at)
    if obs.present and obs.waiting and obs.detail and status is RunStatus.LAUNCHING:
        return Decision(RunStatus.QUEUED, obs.detail)
    return None


class RunLike(Protocol):
    """What ``decide_for`` reads of a run: a store row, or the sidecar's lighter copy of it."""

    status: str
    stop_requested_at: float | None
    launched_at: float | None


def decide_for(run: RunLike, obs: Observation, *, now: float, launch_grace_s: float) -> Decision | None:
    """``decide`` for a run row: the one call every looker (reconcile, sidecar) makes."""
    # A command that had already ended when the stop was asked for was not stopped by it.
    asked = run.stop_requested_at
    ended_first = obs.ended_at is not None and asked is not None and obs.ended_at < asked
    return decide(
        RunStatus(run.status),
        obs,
        stop_requested=asked is not None and not ended_first,
        launched_at=run.launched_at,
        now=now,
        launch_grace_s=launch_grace_s,
        unsubmitted=obs.unsubmitted,
    )
