"""gpuwrap end to end: real tmux, real SQLite, real processes; only the GPU inventory is fake.

Inventory (tests/fakegpus.py): 4 GPUs, GPU 1 used by a foreign process, so GPUs 0, 2 and 3
are free. Jobs record their CUDA_VISIBLE_DEVICES, CUDA_DEVICE_ORDER and when they ran.
"""

from __future__ import annotations

import dataclasses
import itertools
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from sqlmodel import col, select

from mcp_server.core.errors import InvalidInput
from mcp_server.core.services import Services
from mcp_server.core.settings import Settings
from mcp_server.core.storage.models import Alert, Event, GpuLease, QueueEntry, Run
from tests.fakegpus import FakeGpus
from tests.helpers import wait_for

ENDED = {"finished", "failed", "stopped", "lost"}
# Appends "<run id> <CUDA_VISIBLE_DEVICES> <start> <end> <CUDA_DEVICE_ORDER>" once the job is done.
RECORD = (
    "t0=$(date +%s.%N); {body}; t1=$(date +%s.%N); "
    'echo "$RESEARCH_RUN_ID ${{CUDA_VISIBLE_DEVICES:-none}} $t0 $t1 ${{CUDA_DEVICE_ORDER:-none}}" >> jobs.log'
)
PCI = "PCI_BUS_ID"  # leased GPUs are NVML indices, so CUDA must number GPUs the same way


def job(body: str) -> str:
    return RECORD.format(body=body)


def wait_status(services: Services, run_id: str, statuses: set[str], timeout: float = 30):  # type: ignore[no-untyped-def]
    return wait_for(
        lambda: (r := services.runs.get(run_id)).status in statuses and r,
        timeout,
        interval=0.1,
        what=f"{run_id} in {statuses}",
    )


def records(workdir: Path) -> dict[str, tuple[str, float, float, str]]:
    out = {}
    for line in (workdir / "jobs.log").read_text().splitlines():
        run_id, cvd, t0, t1, order = line.split()
        out[run_id] = (cvd, float(t0), float(t1), order)
    return out


def statuses_of(services: Services, run_id: str) -> list[str]:
    with services.store.read() as s:
        events = s.exec(select(Event).where(Event.run_id == run_id, Event.kind == "run_status")).all()
    return [e.data["status"] for e in sorted(events, key=lambda e: e.id or 0)]


def leases(services: Services) -> dict[str, list[int]]:
    with services.store.read() as s:
        return services.admission.leased_gpus(s)


CREATOR = """
import os, sys, time
from mcp_server.core.services import Services
from mcp_server.core.settings import Settings
state, workdir, go, tag, command = sys.argv[1:6]
services = Services(state)
open(go + f".ready-{tag}", "w").close()
while not os.path.exists(go):
    time.sleep(0.002)
for i in range(2):
    print(services.runs.create(name=f"p{tag}-{i}", command=command, workdir=workdir, gpus=1).id, flush=True)
"""


def test_eight_runs_from_four_processes_never_share_a_gpu_and_start_in_fifo_order(
    fake_gpus: FakeGpus, services: Services, state_dir: Path, workdir: Path
) -> None:
    go = workdir / "go"
    # Jobs hold their GPU until every run exists, so the queue is really exercised.
    hold = "while [ ! -f release ]; do sleep 0.05; done; sleep 0.3"
    creators = [
        subprocess.Popen(
            [sys.executable, "-c", CREATOR, str(state_dir), str(workdir), str(go), str(n), job(hold)],
            stdout=subprocess.PIPE,
            text=True,
        )
        for n in range(4)
    ]
    # Release the creators together, once each has imported everything and opened the store.
    wait_for(lambda: len(list(workdir.glob("go.ready-*"))) == 4, 60, what="creators ready")
    go.touch()
    created = []
    for proc in creators:
        out, _ = proc.communicate(timeout=60)
        assert proc.returncode == 0
        created += out.split()
    assert len(created) == 8
    (workdir / "release").touch()

    for run_id in created:
        assert wait_status(services, run_id, ENDED, timeout=60).status == "finished"
    ran = records(workdir)
    assert set(ran) == set(created)

    # Never the foreign GPU, always exactly one GPU, and never two jobs on one GPU at once.
    by_gpu: dict[str, list[tuple[float, float]]] = {}
    for cvd, t0, t1, order in ran.values():
        assert cvd in {"0", "2", "3"} and order == PCI
        by_gpu.setdefault(cvd, []).append((t0, t1))
    for spans in by_gpu.values():
        spans.sort()
        for (_, end), (start, _) in itertools.pairwise(spans):
            assert end <= start
    assert len(by_gpu) == 3  # all free GPUs were used

    # Admission (the lease, recorded with the 'launching' event in one transaction) follows creation.
    with services.store.read() as s:
        order = [r.id for r in s.exec(select(Run).order_by(col(Run.pk))).all()]
        launches = s.exec(select(Event).where(Event.kind == "run_status").order_by(col(Event.id))).all()
    admitted = [e.run_id for e in launches if e.data["status"] == "launching"]
    assert admitted == order
    # Each job started only after it was admitted; at least 5 had to wait in the queue.
    queued = [rid for rid in order if "queued" in statuses_of(services, rid)]
    assert len(queued) >= 5
    assert leases(services) == {}


def test_two_gpu_run_waits_while_only_one_gpu_is_free_and_blocks_later_runs(
    fake_gpus: FakeGpus, services: Services, workdir: Path
) -> None:
    gate = "while [ ! -f {0} ]; do sleep 0.05; done"
    a = services.runs.create(name="a", command=job(gate.format("gate_a")), workdir=str(workdir), gpus=1)
    b = services.runs.create(name="b", command=job(gate.format("gate_b")), workdir=str(workdir), gpus=1)
    assert (a.leased_gpus, b.leased_gpus) == ([0], [2])
    c = services.runs.create(name="c", command=job("true"), workdir=str(workdir), gpus=2)
    assert c.status == "queued"
    assert "waiting for 2 GPU(s), 1 free" in c.status_reason
    assert f"GPU 0 leased by {a.id}" in c.status_reason
    assert f"GPU 1 used by pid {fake_gpus.foreign.pid}" in c.status_reason
    d = services.runs.create(name="d", command=job("true"), workdir=str(workdir), gpus=1)
    assert d.status == "queued"  # GPU 3 is free, but c came first: no overtaking
    assert f"waiting behind 1 earlier queued run(s) (next: {c.id})" in d.status_reason

    time.sleep(1.0)  # the waiters poll every 0.1 s: c must still be waiting with one GPU free
    assert services.runs.get(c.id).status == "queued" and services.runs.get(d.id).status == "queued"
    assert "GPU 0 leased by" in services.runs.get(c.id).status_reason

    (workdir / "gate_a").touch()
    assert wait_status(services, c.id, ENDED).status == "finished"
    assert wait_status(services, d.id, ENDED).status == "finished"
    (workdir / "gate_b").touch()
    wait_status(services, b.id, ENDED)
    ran = records(workdir)
    assert ran[c.id][0] == "0,3" and ran[c.id][3] == PCI
    assert ran[c.id][1] >= ran[a.id][2]  # c started after a released GPU 0
    assert ran[d.id][1] >= ran[c.id][1] and ran[d.id][0] in {"0", "3"} and ran[d.id][3] == PCI


def test_lease_of_a_killed_run_is_reclaimed_only_when_its_job_is_gone(
    fake_gpus: FakeGpus, services: Services, workdir: Path
) -> None:
    hog = services.runs.create(name="hog", command="sleep 600", workdir=str(workdir), gpus=3)
    assert hog.leased_gpus == [0, 2, 3]
    wait_status(services, hog.id, {"running"})
    waiter = services.runs.create(name="next", command=job("true"), workdir=str(workdir), gpus=1)
    assert waiter.status == "queued" and f"leased by {hog.id}" in waiter.status_reason
    files = services.runs.files(hog.id)
    launcher, pgid = files.read_launcher_pid(), files.read_pgid()
    assert launcher and pgid

    os.kill(launcher, signal.SIGKILL)  # the launch script dies; the job runs on, holding its GPUs
    time.sleep(1.0)
    assert services.runs.get(waiter.id).status == "queued"
    with services.store.read() as s:
        assert services.admission.leased_gpus(s, [hog.id]) == {hog.id: [0, 2, 3]}

    os.killpg(pgid, signal.SIGKILL)  # now nothing of the run is left
    done = wait_status(services, waiter.id, ENDED)
    assert done.status == "finished"
    assert records(workdir)[waiter.id][0] in {"0", "2", "3"} and records(workdir)[waiter.id][3] == PCI
    log = (services.state.root / "queue" / "dispatcher.log").read_text()  # one dispatcher admits all
    assert f"reclaimed queue entries and leases of {hog.id}" in log
    assert services.runs.get(hog.id).status == "lost"
    assert leases(services) == {}


def test_cuda_oom_fails_once_with_that_reason(fake_gpus: FakeGpus, services: Services, workdir: Path) -> None:
    command = (
        "echo attempt >> attempts; echo 'torch.OutOfMemoryError: CUDA out of memory. "
        "Tried to allocate 20.00 GiB (GPU 0; 79.15 GiB total capacity)'; exit 1"
    )
    run = services.runs.create(
        name="oom",
        command=command,
        workdir=str(workdir),
        gpus=1,
        options={"gpuwrap": {"retries": 5, "retry_delay_seconds": 0.1}},
    )
    done = wait_status(services, run.id, ENDED)
    assert done.status == "failed" and done.exit_code == 1
    assert "CUDA out of memory" in done.status_reason and "CUDA out of memory" in (done.error or "")
    time.sleep(0.5)  # a wrongly requeued run would try again within this
    assert (workdir / "attempts").read_text().splitlines() == ["attempt"]
    assert "queued" not in statuses_of(services, run.id)
    with services.store.read() as s:
        alerts = s.exec(select(Alert).where(Alert.run_id == run.id)).all()
    # Not contention (no requeue alert): the run's own failure, classified as such by the sidecar.
    assert [(a.kind, a.data["cause"]) for a in alerts] == [("failure", "cuda_oom")]
    assert leases(services) == {}
    again = services.runs.rerun(run.id, auto_start=False)  # a rerun keeps the run's gpuwrap settings
    assert again.options["queue"] == "gpu" and again.options["gpuwrap"]["retries"] == 5


CONTENTION = (
    "echo attempt >> attempts; if [ ! -f seen ]; then touch seen; "
    "echo 'RuntimeError: CUDA error: all CUDA-capable devices are busy or unavailable'; exit 1; fi; "
    "echo ok"
)


def test_contention_requeues_with_an_alert_then_succeeds(
    fake_gpus: FakeGpus, services: Services, workdir: Path
) -> None:
    run = services.runs.create(
        name="busy",
        command=job(CONTENTION),
        workdir=str(workdir),
        gpus=1,
        options={"gpuwrap": {"retries": 2, "retry_delay_seconds": 0.2}},
    )
    done = wait_status(services, run.id, ENDED)
    assert done.status == "finished" and done.exit_code == 0
    assert (workdir / "attempts").read_text().splitlines() == ["attempt", "attempt"]
    history = statuses_of(services, run.id)
    assert history[history.index("queued") - 1] in {"launching", "running"}  # requeued after an attempt
    assert history[-1] == "finished"
    with services.store.read() as s:
        alerts = s.exec(select(Alert).where(Alert.run_id == run.id)).all()
    assert [a.kind for a in alerts] == ["contention"]
    assert "requeued after GPU contention" in alerts[0].message and "retry 1 of 2" in alerts[0].message
    assert records(workdir)[run.id][0] in {"0", "2", "3"} and records(workdir)[run.id][3] == PCI
    with services.store.read() as s:
        started_at = s.exec(select(Run.started_at).where(Run.id == run.id)).one()
    assert started_at is not None and started_at >= alerts[0].created_at  # the retry's start, not the first
    assert leases(services) == {}


def test_contention_without_retries_left_fails_with_the_reason(
    fake_gpus: FakeGpus, services: Services, workdir: Path
) -> None:
    run = services.runs.create(
        name="busy", command=CONTENTION, workdir=str(workdir), gpus=1, options={"gpuwrap": {"retries": 0}}
    )
    done = wait_status(services, run.id, ENDED)
    assert done.status == "failed" and done.exit_code == 1
    assert "GPU was busy" in done.status_reason and "no gpuwrap retries left" in done.status_reason
    assert (workdir / "attempts").read_text().splitlines() == ["attempt"]


def test_bounded_wait_gives_up_with_a_clear_reason_and_queued_runs_can_be_stopped(
    fake_gpus: FakeGpus, services: Services, workdir: Path
) -> None:
    hog = services.runs.create(name="hog", command="sleep 600", workdir=str(workdir), gpus=3)
    impatient = services.runs.create(
        name="impatient",
        command="true",
        workdir=str(workdir),
        gpus=1,
        options={"gpuwrap": {"retries": 2, "retry_delay_seconds": 0.2}},
    )
    patient = services.runs.create(name="patient", command="true", workdir=str(workdir), gpus=1)
    failed = wait_status(services, impatient.id, ENDED, timeout=15)
    assert failed.status == "failed" and failed.exit_code is None
    assert "gave up after waiting" in failed.status_reason and f"leased by {hog.id}" in failed.status_reason
    assert "retries=2" in failed.status_reason
    # With the impatient run gone, the patient one is next in line: it still waits (no limit).
    wait_for(lambda: "0 free" in services.runs.get(patient.id).status_reason, 10, what="patient at the head")
    # The stop's own answer says stopped: it returns once the waiting launch script has gone.
    assert services.runs.stop(patient.id).status == "stopped"
    with services.store.read() as s:
        assert [e.run_id for e in s.exec(select(QueueEntry)).all()] == [hog.id]
    services.runs.stop(hog.id)
    assert leases(services) == {}


def test_a_command_that_picks_its_own_gpus_turns_gpuwrap_off_and_says_so(
    fake_gpus: FakeGpus, services: Services, workdir: Path
) -> None:
    own = services.runs.create(
        name="own", command=job("export CUDA_VISIBLE_DEVICES=1; true"), workdir=str(workdir), gpus=1
    )
    by_env = services.runs.create(
        name="env", command=job("true"), workdir=str(workdir), gpus=1, env={"CUDA_VISIBLE_DEVICES": "3"}
    )
    for run, why in ((own, "the command sets"), (by_env, "the run's env sets")):
        assert run.options["gpuwrap"]["enabled"] is False
        assert why in run.options["gpuwrap"]["note"] and why in run.status_reason
        assert run.leased_gpus is None
        assert wait_status(services, run.id, ENDED).status == "finished"
    ran = records(workdir)
    assert ran[own.id][0] == "1" and ran[by_env.id][0] == "3"
    with services.store.read() as s:
        assert s.exec(select(GpuLease)).all() == [] and s.exec(select(QueueEntry)).all() == []


def test_a_run_on_a_gpu_it_did_not_lease_keeps_that_gpu_busy(
    fake_gpus: FakeGpus, services: Services, workdir: Path
) -> None:
    """A run that picked GPU 0 itself holds no lease there: the queue must not hand GPU 0 out."""
    own = services.runs.create(
        name="own",
        command="export CUDA_VISIBLE_DEVICES=0; while [ ! -f gate ]; do sleep 0.05; done",
        workdir=str(workdir),
        gpus=1,
    )
    assert own.leased_gpus is None
    pgid = wait_for(lambda: services.runs.files(own.id).read_pgid(), what="job started")
    fake_gpus.gpus[0]["processes"] = [{"pid": pgid, "used_memory_mib": 3000, "kind": "compute"}]
    fake_gpus.write()

    after = services.runs.create(name="after", command="sleep 600", workdir=str(workdir), gpus=1)
    assert after.leased_gpus == [2]
    big = services.runs.create(name="big", command="true", workdir=str(workdir), gpus=2)
    assert big.status == "queued"
    assert f"GPU 0 used by run {own.id} without a lease (pid {pgid})" in big.status_reason
    g0 = services.cluster.detect().gpus[0]
    assert not g0.free and f"used by run {own.id} without a lease" in (g0.busy_reason or "")
    assert not services.cluster.get().gpus[0].free  # and still busy as leases are refreshed

    # A leased run's own process excuses only its leased GPU.
    after_pgid = wait_for(lambda: services.runs.files(after.id).read_pgid(), what="after started")
    fake_gpus.gpus[2]["processes"] = [{"pid": after_pgid, "kind": "compute"}]
    fake_gpus.write()
    g2 = services.cluster.detect().gpus[2]
    assert g2.leased_by == after.id and g2.processes[0].run_id == after.id
    assert g2.busy_reason == f"GPU 2 leased by {after.id}"
    for run in (big, after):
        services.runs.stop(run.id)
    (workdir / "gate").touch()
    assert wait_status(services, own.id, ENDED).status == "finished"


def test_more_gpus_than_the_machine_has_is_refused_before_anything_is_created(
    fake_gpus: FakeGpus, services: Services, workdir: Path
) -> None:
    with pytest.raises(InvalidInput, match=r"gpus=5 but this machine has 4 GPU\(s\)"):
        services.runs.create(name="big", command="true", workdir=str(workdir), gpus=5)
    with pytest.raises(InvalidInput, match="unknown key"):
        services.runs.create(
            name="x", command="true", workdir=str(workdir), gpus=1, options={"gpuwrap": {"retry": 1}}
        )
    assert services.runs.list().total == 0
    assert list(services.state.runs_dir.iterdir()) == []


def test_cpu_only_machines_run_at_most_the_limit_at_once(
    monkeypatch: pytest.MonkeyPatch, state_dir: Path, workdir: Path
) -> None:
    monkeypatch.setenv("RESEARCH_MCP_CLUSTER_TYPE", "cpu_only")
    monkeypatch.setenv("RESEARCH_MCP_CPU_RUN_LIMIT", "1")
    services = Services(state_dir)
    try:
        first = services.runs.create(
            name="first", command=job("while [ ! -f gate ]; do sleep 0.05; done"), workdir=str(workdir)
        )
        second = services.runs.create(name="second", command=job("true"), workdir=str(workdir), gpus=1)
        assert first.status in ("launching", "running")  # admitted (its job may already have started)
        assert second.status == "queued"
        assert f"waiting for a CPU run slot: 1 of 1 in use ({first.id})" in second.status_reason
        assert second.options["gpuwrap"]["note"] == "gpuwrap off by default on a cpu_only machine"
        time.sleep(0.8)
        assert services.runs.get(second.id).status == "queued"
        (workdir / "gate").touch()
        for run in (first, second):
            assert wait_status(services, run.id, ENDED).status == "finished"
        ran = records(workdir)
        assert ran[second.id][1] >= ran[first.id][2]
        assert ran[second.id][0] == "none"  # no GPUs on a cpu_only machine
    finally:
        services.close()


def test_a_queue_entry_whose_creator_died_before_launching_stops_blocking_after_the_grace(
    fake_gpus: FakeGpus, state_dir: Path, workdir: Path
) -> None:
    services = Services(state_dir, dataclasses.replace(Settings.from_env(), launch_grace_s=1.0))
    try:
        # What a create_run leaves behind when its process is killed between writing the run
        # (queued in the same transaction) and launching it.
        orphan = services.runs._insert(
            {"name": "orphan", "command": "true", "workdir": str(workdir), "gpus": 1,
             "options": {"queue": "gpu"}},
            lambda files: None,
            enqueue="gpu",
        )  # fmt: skip
        later = services.runs.create(name="later", command="true", workdir=str(workdir), gpus=1)
        assert later.status == "queued" and f"(next: {orphan.id})" in later.status_reason
        assert wait_status(services, later.id, ENDED, timeout=15).status == "finished"
        assert services.runs.get(orphan.id).status == "ready"  # untouched: start_run can still start it
    finally:
        services.close()


def test_two_writers_of_one_runs_admission_env_never_collide(tmp_path: Path) -> None:
    """The dispatcher and a repair after a killed dispatcher (rewrite_admission) may write the
    same run's admission.env at once; sharing one temp name, one of them failed."""
    import threading

    from mcp_server.core.execution.jobfiles import JobFiles
    from mcp_server.core.scheduling.gpuwrap import write_admission_env

    files = JobFiles(tmp_path)
    errors: list[OSError] = []

    def write() -> None:
        try:
            for _ in range(300):
                write_admission_env(files, [1])
        except OSError as err:
            errors.append(err)

    writers = [threading.Thread(target=write) for _ in range(2)]
    for w in writers:
        w.start()
    for w in writers:
        w.join()
    assert errors == []
    assert files.admission_env.read_text().endswith("export CUDA_VISIBLE_DEVICES=1\n")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["admission.env"]
