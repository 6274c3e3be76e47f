"""The Slurm backend against a real single-node Slurm (`.ci/slurm.sh up` starts one)."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import anyio
import pytest
from sqlmodel import select

from mcp_server.core.errors import BackendError, InvalidInput
from mcp_server.core.models import Run, SlurmJob
from mcp_server.core.services import Services
from mcp_server.core.store import now
from tests.helpers import wait_for

ROOT = Path(__file__).resolve().parents[1]


def slurm_up() -> str | None:
    if shutil.which("sbatch") is None:
        return "sbatch is not installed (no Slurm here; `.ci/slurm.sh up` installs and starts one)"
    if subprocess.run(["scontrol", "ping"], capture_output=True).returncode != 0:
        return "Slurm is installed but slurmctld does not answer `scontrol ping`"
    return None


needs_slurm = pytest.mark.skipif(slurm_up() is not None, reason=slurm_up() or "")


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
            services.runs.create(name="x", command="true", workdir=str(workdir), backend="slurm", slurm=opts)
    with pytest.raises(InvalidInput, match="need backend 'slurm'"):
        services.runs.create(
            name="x", command="true", workdir=str(workdir), backend="local", slurm={"time": "5"}
        )
    assert services.runs.list().total == 0


def test_sbatch_command_line_carries_options_but_no_env_values(services: Services, workdir: Path) -> None:
    run = services.runs.create(
        name="opts", command="true", workdir=str(workdir), backend="slurm", auto_start=False, gpus=2,
        env={"API_KEY": "sekrit"},
        slurm={"partition": "debug", "time": "0:30:00", "cpus_per_task": 4, "mem": "8G",
               "extra_args": ["--exclusive"]},
    )  # fmt: skip
    from mcp_server.core.backends.slurm import SlurmBackend

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
    while time.monotonic() - t0 < 1.5:
        for sv in observers:
            sv.reconciler.reconcile(runs)
            looks += 1
    calls = log.read_text().splitlines() if log.exists() else []
    # a 0.3 s interval over 1.5 s allows ~6 queries, however many observers looked how often
    assert looks > 30 and 1 <= len(calls) <= 7, (looks, calls)
    assert set(calls) == {"squeue"}


@needs_slurm
@pytest.mark.anyio
@pytest.mark.parametrize("mode", ["auto", "legacy"])
async def test_create_run_on_slurm_through_mcp(state_dir: Path, workdir: Path, mode: str) -> None:
    from tests.mcp_client import call, call_error, client

    async with client(state_dir, mode, RESEARCH_MCP_SLURM_POLL_S="0.3") as c:
        run = await call(
            c, "create_run", name="via-mcp", command="echo hi-from-slurm", workdir=str(workdir),
            backend="slurm", slurm={"time": "5", "cpus_per_task": 1},
        )  # fmt: skip
        assert run["backend"] == "slurm" and run["options"]["slurm"] == {"time": "5", "cpus_per_task": 1}
        with anyio.fail_after(60):
            while (got := await call(c, "get_run", run_id=run["id"]))["status"] not in (
                "finished",
                "failed",
                "lost",
            ):
                await anyio.sleep(0.2)
        assert got["status"] == "finished"
        text = await call_error(
            c, "create_run", name="x", command="true", backend="slurm", slurm={"time": "never"}
        )
        assert "not a Slurm time limit" in text


@needs_slurm
def test_auto_backend_follows_a_detected_slurm_cluster(
    state_dir: Path, workdir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("RESEARCH_MCP_CLUSTER_TYPE", raising=False)
    monkeypatch.setenv("RESEARCH_MCP_SLURM_POLL_S", "0.3")
    sv = Services(state_dir)
    run = sv.runs.create(name="auto", command="echo picked", workdir=str(workdir), gpus=1)
    assert run.backend == "slurm"
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
