from mcp_server.core.execution.run_status import Observation, RunStatus, can_transition, decide, describe_exit

KW = dict(stop_requested=False, launched_at=100.0, now=200.0, launch_grace_s=30.0)


def test_exit_code_settles_a_running_run() -> None:
    d = decide(RunStatus.RUNNING, Observation(present=False, exit_code=0), **KW)
    assert d is not None and d.status is RunStatus.FINISHED and d.exit_code == 0
    d = decide(RunStatus.RUNNING, Observation(present=True, exit_code=3), **KW)
    assert d is not None and d.status is RunStatus.FAILED and d.exit_code == 3
    assert "code 3" in d.reason


def test_requested_stop_wins_over_exit_code() -> None:
    d = decide(RunStatus.RUNNING, Observation(present=False, exit_code=130), **{**KW, "stop_requested": True})
    assert d is not None and d.status is RunStatus.STOPPED and "SIGINT" in d.reason


def test_vanished_job_is_lost_but_unknown_is_not() -> None:
    d = decide(RunStatus.RUNNING, Observation(present=False), **KW)
    assert d is not None and d.status is RunStatus.LOST
    assert decide(RunStatus.RUNNING, Observation(present=None), **KW) is None


def test_fresh_launch_is_given_grace() -> None:
    fresh = {**KW, "launched_at": 190.0}
    assert decide(RunStatus.LAUNCHING, Observation(present=False), **fresh) is None
    assert decide(RunStatus.LAUNCHING, Observation(present=False), **KW).status is RunStatus.LOST  # type: ignore[union-attr]


def test_never_submitted_queued_run_is_left_alone() -> None:
    assert decide(RunStatus.QUEUED, Observation(present=False), **{**KW, "launched_at": None}) is None


def test_started_marker_moves_to_running() -> None:
    d = decide(RunStatus.LAUNCHING, Observation(present=True, started_at=150.0), **KW)
    assert d is not None and d.status is RunStatus.RUNNING and d.started_at == 150.0


def test_lost_can_still_be_corrected_by_an_exit_code() -> None:
    assert decide(RunStatus.LOST, Observation(present=False), **KW) is None
    d = decide(RunStatus.LOST, Observation(present=False, exit_code=0), **KW)
    assert d is not None and d.status is RunStatus.FINISHED


def test_terminal_statuses_do_not_move() -> None:
    for status in (RunStatus.FINISHED, RunStatus.FAILED, RunStatus.STOPPED):
        assert decide(status, Observation(present=False, exit_code=1), **KW) is None
        assert not can_transition(status, RunStatus.RUNNING)


def test_exit_descriptions_name_signals() -> None:
    assert "SIGKILL" in describe_exit(137)
    assert describe_exit(2) == "command exited with code 2"


def test_a_backend_can_report_an_ending_without_exit_code_file() -> None:
    obs = Observation(present=False, final=RunStatus.FAILED, exit_code=143, detail="Slurm: TIMEOUT")
    d = decide(RunStatus.RUNNING, obs, **KW)
    assert (
        d is not None and d.status is RunStatus.FAILED and d.reason == "Slurm: TIMEOUT" and d.exit_code == 143
    )
    d = decide(RunStatus.RUNNING, obs, **{**KW, "stop_requested": True})
    assert d is not None and d.status is RunStatus.STOPPED


def test_a_classified_failure_is_part_of_the_reason() -> None:
    obs = Observation(present=False, exit_code=1, failure="CUDA out of memory: the run's own allocations")
    d = decide(RunStatus.RUNNING, obs, **KW)
    assert d is not None and d.status is RunStatus.FAILED
    assert d.reason == "command exited with code 1: CUDA out of memory: the run's own allocations"
    assert d.error == obs.failure
    ok = decide(RunStatus.RUNNING, Observation(present=False, exit_code=0, failure="stale"), **KW)
    assert ok is not None and ok.status is RunStatus.FINISHED and ok.error is None
