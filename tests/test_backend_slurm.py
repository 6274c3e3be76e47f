"""The Slurm backend against a real single-node Slurm (`.ci/slurm.sh up` starts one)."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import anyio
import pytest
from sqlmodel import select

from mcp_server.core.backends.slurm import SlurmBackend, validate_slurm_options
from mcp_server.core.backends.slurm.jobs import SlurmJob
from mcp_server.core.backends.slurm.scheduler import EXIT_FILE_GRACE_S
from mcp_server.core.errors import BackendError, InvalidInput
from mcp_server.core.execution.jobfiles import JobFiles
from mcp_server.core.execution.run_status import decide_for
from mcp_server.core.services import Services
from mcp_server.core.storage.models import Run
from mcp_server.core.storage.store import now
from tests.helpers import wait_for

F = TypeVar("F", bound=Callable[..., Any])

ROOT = Path(__file__).resolve().parents[1]


def slurm_up() -> str | None:
    if shutil.which("sbatch") is None:
        return "sbatch is not installed (no Slurm here; `.ci/slurm.sh up` installs and starts one)"
    if subprocess.run(["scontrol", "ping"], capture_output=True).returncode != 0:
        return "Slurm is installed but slurmctld does not answer `scontrol ping`"
    return None


_skip_without_slurm = pytest.mark.skipif(slurm_up() is not None, reason=slurm_up() or "")


def needs_slurm(test: F) -> F:
    """Marked ``slurm`` (so ``-m "not slurm"`` leaves the shared scheduler alone) and skipped without it."""
    return pytest.mark.slurm(_skip_without_slurm(test))


@pytest.fixture
def slurm_services(state_dir: Path, monkeypatch: pytest.MonkeyPatch):  # type: ignore[no-untyped-def]
    monkeypatch.setenv("RESEARCH_MCP_SLURM_POLL_S", "0.3")
    monkeypatch.setenv("RESEARCH_MCP_SLURM_MISSING_GRACE_S", "1")
    sv = Services(state_dir)
    yield sv
    with sv.store.read() as s:
        jobs = [row.job_id for row in s.exec(select(SlurmJob)).all()]
    if jobs and shutil.which("scancel"):
        subprocess.run(["scancel", *jobs], capture_output=True)
    sv.close()


def wait_status(sv: Services, run_id: str, statuses: set[str], timeout: float = 60):  # type: ignore[no-untyped-def]
    return wait_for(
        lambda: (r := sv.runs.get(run_id)).status in statuses and r, timeout, 0.2, f"{run_id} in {statuses}"
    )


def test_options_are_validated_before_anything_is_created(services: Services, workdir: Path) -> None:
    bad = [
        ({"partition": "gpu;rm"}, "not a valid name"),
        ({"time": "soon"}, "not a Slurm time limit"),
        ({"mem": "lots"}, "not a memory size"),
        ({"cpus_per_task": 0}, "from 1 to 4096"),
        ({"extra_args": ["--output=/etc/passwd"]}, "may not set --output"),
        ({"extra_args": ["--constraint=a100 && rm -rf"]}, "not allowed"),
        ({"nodes": 2}, "unknown slurm option"),
    ]
    for opts, message in bad:
        with pytest.raises(InvalidInput, match=message):
            services.runs.create(
                name="x", command="true", workdir=str(workdir), backend="slurm", options=opts
            )
    with pytest.raises(InvalidInput, match="time is for backend 'slurm'"):
        services.runs.create(
            name="x", command="true", workdir=str(workdir), backend="local", options={"time": "5"}
        )
    assert services.runs.list().total == 0


def test_abbreviated_reserved_flags_are_refused_too() -> None:
    # sbatch takes any unambiguous prefix of a long option (`sbatch --test-only --outp=/x` is
    # --output), so a prefix would slip the output, workdir or array past research-mcp.
    for flag, means in [("--outp=/x", "--output"), ("--chdi=/tmp", "--chdir"), ("--arr=0-1", "--array")]:
        with pytest.raises(
            InvalidInput, match=f"may not set {flag.split('=')[0]} \\(sbatch reads it as {means}\\)"
        ):
            validate_slurm_options({"extra_args": [flag]})
    with pytest.raises(InvalidInput, match="research-mcp sets --array, --chdir, --comment, "):
        validate_slurm_options({"extra_args": ["--o=/x"]})  # --output or --open-mode
    allowed = ["--exclusive", "--constraint=a100", "--mem-per-cpu=2G", "--gpus-per-task=1", "--nice=10"]
    assert validate_slurm_options({"extra_args": allowed}) == {"extra_args": allowed}


def test_sbatch_command_line_carries_options_but_no_env_values(services: Services, workdir: Path) -> None:
    run = services.runs.create(
        name="opts", command="true", workdir=str(workdir), backend="slurm", auto_start=False, gpus=2,
        env={"API_KEY": "sekrit"},
        options={"partition": "debug", "time": "0:30:00", "cpus_per_task": 4, "mem": "8G",
               "extra_args": ["--exclusive"]},
    )  # fmt: skip
    backend = services.backends.get("slurm")
    assert isinstance(backend, SlurmBackend)
    argv = backend.sbatch_argv(services.runs.load(run.id), services.runs.files(run.id))
    assert "--gres=gpu:2" in argv and "--partition=debug" in argv and "--time=0:30:00" in argv
    assert "--cpus-per-task=4" in argv and "--mem=8G" in argv and "--exclusive" in argv
    assert f"--output={services.runs.files(run.id).run_dir / 'slurm.out'}" in argv
    assert not any("sekrit" in a for a in argv)


@needs_slurm
def test_exit_codes_and_output(slurm_services: Services, workdir: Path) -> None:
    ok = slurm_services.runs.create(
        name="ok", command="echo on-slurm; exit 0", workdir=str(workdir), backend="slurm"
    )
    bad = slurm_services.runs.create(name="bad", command="exit 3", workdir=str(workdir), backend="slurm")
    assert ok.backend == "slurm" and ok.backend_ref and ok.backend_ref.startswith("slurm:")
    done = wait_status(slurm_services, ok.id, {"finished", "failed", "lost"})
    assert done.status == "finished" and done.exit_code == 0
    assert slurm_services.runs.logs(ok.id).text == "on-slurm\n"
    failed = wait_status(slurm_services, bad.id, {"finished", "failed", "lost"})
    assert failed.status == "failed" and failed.exit_code == 3


@needs_slurm
def test_stop_cancels_the_job(slurm_services: Services, workdir: Path) -> None:
    run = slurm_services.runs.create(
        name="long", command="echo up; sleep 300", workdir=str(workdir), backend="slurm"
    )
    wait_for(lambda: "up" in slurm_services.runs.logs(run.id).text, 60, what="job start")
    stopped = slurm_services.runs.stop(run.id)
    assert stopped.status == "stopped", stopped
    job_id = run.backend_ref.split(":")[1]  # type: ignore[union-attr]
    state = subprocess.run(
        ["squeue", "-h", "--states=all", "-j", job_id, "-o", "%T"], capture_output=True, text=True
    )
    assert state.stdout.strip() == "CANCELLED"


@needs_slurm
def test_gpus_come_from_slurm_and_two_jobs_get_different_ones(
    slurm_services: Services, workdir: Path
) -> None:
    cmd = 'echo "cvd=$CUDA_VISIBLE_DEVICES"; touch "started-$RESEARCH_RUN_ID"; sleep 3'
    # Both GPUs free first: an earlier test's cancelled job may still be completing on one
    # (both runs then got the other, one after the other, in a clean-clone CI run).
    wait_for(lambda: not subprocess.run(["squeue", "-h"], capture_output=True, text=True).stdout.strip(), 60)
    a = slurm_services.runs.create(name="g1", command=cmd, workdir=str(workdir), backend="slurm", gpus=1)
    b = slurm_services.runs.create(name="g2", command=cmd, workdir=str(workdir), backend="slurm", gpus=1)
    # both run at the same time (the node has 2 GPUs)
    wait_for(lambda: (workdir / f"started-{a.id}").exists() and (workdir / f"started-{b.id}").exists(), 60)
    for run in (a, b):
        assert wait_status(slurm_services, run.id, {"finished", "failed"}).status == "finished"
    seen = {slurm_services.runs.logs(r.id).text.strip() for r in (a, b)}
    assert seen == {"cvd=0", "cvd=1"}
    assert slurm_services.runs.get(a.id).options["gpuwrap"]["enabled"] is False  # the scheduler allocates


@needs_slurm
def test_impossible_request_fails_at_submit_and_leaves_nothing(
    slurm_services: Services, workdir: Path
) -> None:
    before = sorted(os.listdir(slurm_services.state.runs_dir))
    with pytest.raises(BackendError, match="sbatch refused the job"):
        slurm_services.runs.create(
            name="greedy", command="true", workdir=str(workdir), backend="slurm", gpus=3
        )
    assert slurm_services.runs.list().total == 0
    assert sorted(os.listdir(slurm_services.state.runs_dir)) == before


@needs_slurm
def test_controller_restart_mid_job_is_survived(slurm_services: Services, workdir: Path) -> None:
    run = slurm_services.runs.create(
        name="survivor", command="echo up; sleep 4; exit 0", workdir=str(workdir), backend="slurm"
    )
    wait_status(slurm_services, run.id, {"running"})
    subprocess.run(
        ["bash", str(ROOT / ".ci" / "slurm.sh"), "restart-controller"], check=True, capture_output=True
    )
    done = wait_status(slurm_services, run.id, {"finished", "failed", "lost"}, timeout=90)
    assert done.status == "finished" and done.exit_code == 0


@needs_slurm
def test_a_job_the_scheduler_forgot_is_lost_only_after_repeated_absence(slurm_services: Services) -> None:
    t = now()
    run_id = "run-20260101-000000-0000abcd"
    (slurm_services.state.runs_dir / run_id).mkdir()
    with slurm_services.store.write() as s:
        ghost = Run(
            id=run_id,
            name="ghost",
            command="true",
            workdir="/tmp",
            status="running",
            backend="slurm",
            backend_ref="slurm:999999",
            created_at=t,
            updated_at=t,
            launched_at=t - 100,
            started_at=t - 90,
        )
        s.add(ghost)  # a job id Slurm never had (or long forgot)
    slurm_services.reconciler.reconcile([run_id])
    assert slurm_services.runs.load(run_id).status == "running"  # one missing answer is not an ending
    time.sleep(1.2)
    wait_for(
        lambda: (
            slurm_services.reconciler.reconcile([run_id]) or slurm_services.runs.load(run_id).status == "lost"
        ),
        10,
    )
    assert "no longer knows" in slurm_services.runs.load(run_id).status_reason


def shim_scheduler(bin_dir: Path, log: Path) -> None:
    """Wrap squeue/sacct/scontrol so every invocation is counted, then run the real one."""
    bin_dir.mkdir()
    for tool in ("squeue", "sacct", "scontrol"):
        real = shutil.which(tool)
        if real:
            (bin_dir / tool).write_text(f'#!/bin/sh\necho {tool} >> "{log}"\nexec {real} "$@"\n')
            (bin_dir / tool).chmod(0o755)


@needs_slurm
def test_many_observers_share_one_scheduler_query_per_interval(
    slurm_services: Services, workdir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    runs = [
        slurm_services.runs.create(name=f"w{i}", command="sleep 5", workdir=str(workdir), backend="slurm").id
        for i in range(3)
    ]
    log = tmp_path / "calls.log"
    shim_scheduler(tmp_path / "bin", log)
    monkeypatch.setenv("PATH", f"{tmp_path / 'bin'}:{os.environ['PATH']}")
    observers = [slurm_services, Services(slurm_services.state.root), Services(slurm_services.state.root)]
    t0 = time.monotonic()
    looks = 0
    while time.monotonic() - t0 < 1.5 or looks <= 30:  # on a loaded machine a look takes longer
        for sv in observers:
            sv.reconciler.reconcile(runs)
            looks += 1
    elapsed = time.monotonic() - t0
    calls = log.read_text().splitlines() if log.exists() else []
    # one query per 0.3 s interval (~6 over 1.5 s), however many observers looked how often
    assert 1 <= len(calls) <= elapsed / 0.3 + 2, (looks, elapsed, calls)
    assert set(calls) == {"squeue"}


@needs_slurm
@pytest.mark.anyio
@pytest.mark.parametrize("mode", ["auto", "legacy"])
async def test_create_run_on_slurm_through_mcp(state_dir: Path, workdir: Path, mode: str) -> None:
    from tests.mcp_client import call, call_error, client

    async with client(state_dir, mode, RESEARCH_MCP_SLURM_POLL_S="0.3") as c:
        run = await call(
            c, "create_run", name="via-mcp", command="echo hi-from-slurm", workdir=str(workdir),
            backend="slurm", options={"time": "5", "cpus_per_task": 1},
        )  # fmt: skip
        record = await call(c, "get_run", run_id=run["id"])  # create_run answers briefly
        assert record["backend"] == "slurm"
        assert record["options"]["slurm"] == {"time": "5", "cpus_per_task": 1}
        with anyio.fail_after(60):
            while (got := await call(c, "get_run", run_id=run["id"]))["status"] not in (
                "finished",
                "failed",
                "lost",
            ):
                await anyio.sleep(0.2)
        assert got["status"] == "finished"
        text = await call_error(
            c, "create_run", name="x", command="true", backend="slurm", options={"time": "never"}
        )
        assert "not a Slurm time limit" in text


@needs_slurm
def test_auto_backend_follows_a_detected_slurm_cluster(
    state_dir: Path, workdir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("RESEARCH_MCP_CLUSTER_TYPE", raising=False)
    monkeypatch.setenv("RESEARCH_MCP_SLURM_POLL_S", "0.3")
    # The controller up first: an earlier test restarts it (in a clean-clone CI run it had not
    # answered yet, so detection found no Slurm and the run went local).
    ping = ["scontrol", "ping"]
    wait_for(lambda: " is UP" in subprocess.run(ping, capture_output=True, text=True).stdout, 60)
    sv = Services(state_dir)
    run = sv.runs.create(name="auto", command="echo picked", workdir=str(workdir), gpus=1)
    assert run.backend == "slurm", sv.cluster.get().signals
    assert "gpuwrap is for local runs" in (run.options.get("gpuwrap") or {}).get("note", "")
    done = wait_status(sv, run.id, {"finished", "failed", "lost"})
    assert done.status == "finished"
    monkeypatch.setenv("RESEARCH_MCP_CLUSTER_TYPE", "cpu_only")
    assert (
        Services(state_dir).runs.create(name="pinned", command="true", workdir=str(workdir)).backend
        == "local"
    )


@needs_slurm
def test_a_nan_in_a_slurm_run_raises_the_same_alert_as_locally(
    slurm_services: Services, workdir: Path
) -> None:
    script = workdir / "train.py"
    script.write_text(
        "import json, os\n"
        "f = open(os.environ['RESEARCH_METRICS_FILE'], 'a', buffering=1)\n"
        "for step in range(100):\n"
        "    loss = float('nan') if step >= 50 else 2.0 / (1 + 0.1 * step)\n"
        "    f.write(json.dumps({'step': step, 'loss': loss}) + '\\n')\n"
    )
    run = slurm_services.runs.create(
        name="nan-on-slurm", command=f"{sys.executable} train.py", workdir=str(workdir), backend="slurm"
    )
    done = wait_status(slurm_services, run.id, {"finished", "failed", "lost"})
    assert done.status == "finished"
    alerts = slurm_services.alerts.list(run_id=run.id, status="all").alerts
    assert [(a.kind, a.severity) for a in alerts] == [("nonfinite", "critical")]
    assert alerts[0].data["step"] == 50 and alerts[0].choices == ["Ignore", "Stop run"]
    loss = next(m for m in done.metrics if m.key == "loss")
    assert loss.count == 100 and loss.first_nonfinite_step == 50


# ---- the scheduler's word, as cached rows (no Slurm needed) --------------------------------


def slurm_run(sv: Services, job_id: str, status: str = "running", started: bool = True) -> Run:
    """A run row whose Slurm job was submitted a while ago (its run dir holds no files yet)."""
    t = now()
    run_id = f"run-20260101-000000-{int(job_id):08x}"
    (sv.state.runs_dir / run_id).mkdir()
    run = Run(
        id=run_id, name=f"job{job_id}", command="true", workdir="/tmp", status=status, backend="slurm",
        backend_ref=f"slurm:{job_id}", created_at=t - 300, updated_at=t - 300, launched_at=t - 300,
        started_at=t - 290 if started else None,
    )  # fmt: skip
    with sv.store.write() as s:
        s.add(run)
    return sv.runs.load(run_id)


def verdict(sv: Services, run: Run, job: SlurmJob, files: JobFiles | None = None) -> tuple[str, str] | None:
    """What the backend makes of a cached scheduler row, as the run's next (status, reason)."""
    backend = sv.backends.get("slurm")
    assert isinstance(backend, SlurmBackend)
    t = now()
    obs = backend.scheduler._observation(run, files or sv.runs.files(run.id), job, t)
    d = decide_for(run, obs, now=t, launch_grace_s=sv.settings.launch_grace_s)
    return None if d is None else (d.status.value, d.reason)


def test_each_slurm_state_maps_to_a_run_status_and_reason(services: Services) -> None:
    long_ago = now() - 60  # an ending seen this long ago had its chance to leave an exit_code
    at = " [Slurm job 7]"  # every ending's reason names the job
    table = [  # Slurm's state and reason, the run's status before, its next (status, reason)
        ("PENDING", "Priority", "launching", ("queued", "Slurm job 7: PENDING (Priority)")),
        ("RUNNING", "None", "launching", None),  # the command has not written its pgid yet
        ("COMPLETED", "None", "running", ("finished", "Slurm: COMPLETED" + at)),
        ("FAILED", "NonZeroExitCode", "running",
         ("failed", "Slurm: FAILED (the batch script ended with an error)" + at)),
        ("CANCELLED", "None", "running", ("stopped", "Slurm: CANCELLED (scancel or an administrator)" + at)),
        ("TIMEOUT", "TimeLimit", "running",
         ("failed", "Slurm: TIMEOUT — the job reached its time limit (raise slurm.time)" + at)),
        ("OUT_OF_MEMORY", "None", "running",
         ("failed", "Slurm: OUT_OF_MEMORY — the job exceeded its memory (raise slurm.mem)" + at)),
        ("NODE_FAIL", "None", "running", ("failed", "Slurm: NODE_FAIL — the job's node failed" + at)),
        ("PREEMPTED", "None", "running", ("failed", "Slurm: PREEMPTED by a higher-priority job" + at)),
    ]  # fmt: skip
    run = slurm_run(services, "7")
    for state, reason, status, expected in table:
        run.status = status
        job = SlurmJob(job_id="7", run_id=run.id, state=state, reason=reason, seen_at=long_ago,
                       ended_seen_at=long_ago, updated_at=long_ago)  # fmt: skip
        assert verdict(services, run, job) == expected, state
    # Once the command started, RUNNING moves a queued run on.
    files = services.runs.files(run.id)
    files.pgid.write_text("4242\n")
    run.status = "queued"
    job = SlurmJob(job_id="7", run_id=run.id, state="RUNNING", reason="None", updated_at=now())
    assert verdict(services, run, job, files) == ("running", "Slurm job 7: RUNNING")
    # COMPLETED or FAILED just now: wait a moment for the exit_code file a shared FS may lag.
    run.status = "running"
    job = SlurmJob(job_id="7", run_id=run.id, state="COMPLETED", ended_seen_at=now(), updated_at=now())
    assert verdict(services, run, job, files) is None


def test_a_scheduler_kill_is_named_next_to_the_exit_code(services: Services) -> None:
    run = slurm_run(services, "8")
    files = services.runs.files(run.id)
    t = now()
    files.exit_code.write_text("143\n")  # the launch script outlived Slurm's SIGTERM
    timeout = SlurmJob(job_id="8", run_id=run.id, state="TIMEOUT", ended_seen_at=t, updated_at=t)
    assert verdict(services, run, timeout, files) == (
        "failed",
        "Slurm: TIMEOUT — the job reached its time limit (raise slurm.time); "
        "command was killed by SIGTERM (exit code 143) [Slurm job 8]",
    )
    files.exit_code.write_text("137\n")  # the kernel's OOM killer took the command
    oom = SlurmJob(job_id="8", run_id=run.id, state="OUT_OF_MEMORY", ended_seen_at=t, updated_at=t)
    status, reason = verdict(services, run, oom, files)  # type: ignore[misc]
    assert (
        status == "failed"
        and reason.startswith("Slurm: OUT_OF_MEMORY")
        and "SIGKILL (exit code 137)" in reason
    )
    # Slurm calls the job ended only after the launch script exits: a signal exit waits for
    # the next poll while the cache still says RUNNING, then settles from the code alone.
    running = SlurmJob(job_id="8", run_id=run.id, state="RUNNING", seen_at=t - 1, updated_at=t - 1)
    assert verdict(services, run, running, files) is None
    os.utime(files.exit_code, (t - EXIT_FILE_GRACE_S - 1, t - EXIT_FILE_GRACE_S - 1))
    assert verdict(services, run, running, files) == (
        "failed",
        "command was killed by SIGKILL (exit code 137)",
    )
    # An ordinary exit code settles at once, whatever the cache says.
    files.exit_code.write_text("3\n")
    assert verdict(services, run, running, files) == ("failed", "command exited with code 3")


def fake_forgetful_scheduler(bin_dir: Path, log: Path) -> None:
    """squeue and sacct as on a cluster whose controller forgot jobs 990001-990003.

    squeue answers as real squeue does for forgotten ids; sacct prints what real
    ``sacct -n -P -X -o JobID,State,Reason`` prints for those jobs.
    """
    bin_dir.mkdir()
    scripts = {
        "squeue": 'echo "slurm_load_jobs error: Invalid job id specified" >&2; exit 1',
        "sacct": "printf '990001|COMPLETED|None\\n990002|FAILED|None\\n990003|CANCELLED by 0|None\\n'",
    }
    for tool, body in scripts.items():
        (bin_dir / tool).write_text(f'#!/bin/sh\necho {tool} >> "{log}"\n{body}\n')
        (bin_dir / tool).chmod(0o755)


@pytest.fixture
def forgetful(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, state_dir: Path):  # type: ignore[no-untyped-def]
    """Services polling a fake scheduler that forgot every job (so no real Slurm is needed)."""
    log = tmp_path / "calls.log"
    fake_forgetful_scheduler(tmp_path / "fake-slurm", log)
    monkeypatch.setenv("PATH", f"{tmp_path / 'fake-slurm'}:{os.environ['PATH']}")
    monkeypatch.setenv("RESEARCH_MCP_SLURM_POLL_S", "0")
    sv = Services(state_dir)
    yield sv, log
    sv.close()


def test_jobs_the_controller_forgot_settle_from_sacct_or_their_exit_code(forgetful) -> None:  # type: ignore[no-untyped-def]
    sv, log = forgetful
    done, failed, cancelled = (slurm_run(sv, job) for job in ("990001", "990002", "990003"))
    wrote = slurm_run(sv, "990004")  # accounting never heard of it, but its exit_code is there
    sv.runs.files(wrote.id).exit_code.write_text("0\n")
    ids = [done.id, failed.id, cancelled.id, wrote.id]
    sv.reconciler.reconcile(ids)
    got = {r.id: (r.status, r.status_reason) for r in (sv.runs.load(i) for i in ids)}
    assert got == {
        done.id: ("finished", "Slurm: COMPLETED [Slurm job 990001]"),
        failed.id: ("failed", "Slurm: FAILED (the batch script ended with an error) [Slurm job 990002]"),
        cancelled.id: ("stopped", "Slurm: CANCELLED (scancel or an administrator) [Slurm job 990003]"),
        wrote.id: ("finished", "command exited with code 0"),
    }
    assert sorted(set(log.read_text().split())) == ["sacct", "squeue"]


@needs_slurm
def test_a_lost_job_stops_costing_scheduler_calls(
    slurm_services: Services, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    log = tmp_path / "calls.log"
    shim_scheduler(tmp_path / "bin", log)
    monkeypatch.setenv("PATH", f"{tmp_path / 'bin'}:{os.environ['PATH']}")
    ghost = slurm_run(slurm_services, "999998")  # a job id Slurm never had (or long forgot)
    wait_for(
        lambda: (
            slurm_services.reconciler.reconcile([ghost.id])
            or slurm_services.runs.load(ghost.id).status == "lost"
        ),
        10,
        what="the ghost run declared lost",
    )
    calls = log.read_text().splitlines()
    assert calls.count("sacct") <= 2, calls  # asked when it went missing and before giving up
    # A lost run stays watched (its exit_code file may still come), but not at Slurm's expense:
    # 2 s of looking at a 0.3 s poll interval used to cost ~7 squeue and ~7 sacct calls.
    t0 = time.monotonic()
    while time.monotonic() - t0 < 2:
        slurm_services.reconciler.reconcile()
        time.sleep(0.05)
    assert log.read_text().splitlines() == calls
    slurm_services.runs.files(ghost.id).exit_code.write_text("0\n")
    slurm_services.reconciler.reconcile()
    assert slurm_services.runs.load(ghost.id).status == "finished"
