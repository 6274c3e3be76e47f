"""The Ray backend against a real Ray head on 127.0.0.1 (one per module, 2 CPUs, 2 logical GPUs).

``bench/ray_head.py`` starts it with its own temp dir and ports and ends only its own
processes. Every test that needs it is marked ``ray`` and skips, saying why, where Ray is not
installed or the head does not start. Runs use both ways a job's files reach the run dir: the
worker sees the state dir (one node: it does), or ``ship_files`` sends them back through the
job's log, as on a worker without the shared filesystem.
"""

from __future__ import annotations

import json
import os
import shlex
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, TypeVar

import pytest

from bench import ray_head
from mcp_server.core.backends import registry
from mcp_server.core.backends.base import EXPLICIT, UNAVAILABLE, Facts
from mcp_server.core.backends.ray_jobs import RayBackend, api, parse_ref
from mcp_server.core.errors import InvalidInput
from mcp_server.core.execution.run_status import decide_for
from mcp_server.core.services import Services
from tests.helpers import wait_for
from tests.procs import pids_with

F = TypeVar("F", bound=Callable[..., Any])
ENDED = {"finished", "failed", "stopped", "lost"}
RAY_ENDED = {"SUCCEEDED", "FAILED", "STOPPED"}
WHY_NOT = ray_head.missing()


def needs_ray(test: F) -> F:
    """Marked ``ray`` (``-m "not ray"`` leaves Ray out) and skipped where Ray is not installed."""
    return pytest.mark.ray(pytest.mark.skipif(WHY_NOT is not None, reason=WHY_NOT or "")(test))


@pytest.fixture(scope="module")
def ray_cluster() -> Iterator[ray_head.RayHead]:
    reuse = os.environ.get("RESEARCH_MCP_TEST_RAY_HEAD")  # a head already up (2 CPUs, 2 GPUs), kept
    if reuse:
        yield ray_head.RayHead(reuse, Path(), None, Path())  # type: ignore[arg-type]
        return
    try:
        head = ray_head.start(num_cpus=2, num_gpus=2)
    except RuntimeError as err:
        pytest.skip(f"a Ray head cannot start here: {err}")
    yield head
    head.stop()


@pytest.fixture
def ray_services(
    state_dir: Path, ray_cluster: ray_head.RayHead, monkeypatch: pytest.MonkeyPatch
) -> Iterator[Services]:
    monkeypatch.setenv("RAY_ADDRESS", ray_cluster.address)
    monkeypatch.setenv("RESEARCH_MCP_SIDECAR_BACKEND_CHECK_S", "0.5")
    sv = Services(state_dir)
    yield sv
    stop_jobs(sv)
    sv.close()


def stop_jobs(sv: Services) -> None:
    """Stop every job this test's runs still have on the shared head (the next test needs its GPUs)."""
    for run in sv.runs.list(limit=100).runs:
        ref = parse_ref(sv.runs.load(run.id).backend_ref)
        if ref is not None:
            api.stop(ref[1], ref[0])
    for run in sv.runs.list(limit=100).runs:
        ref = parse_ref(sv.runs.load(run.id).backend_ref)
        if ref is not None:
            wait_for(lambda r=ref: job_ended(*r), 30, 0.2, f"Ray job {ref[0]} to end")


def job_ended(submission_id: str, address: str) -> bool:
    info = api.job_info(address, submission_id)
    return info is None or info.status in RAY_ENDED


def wait_status(sv: Services, run_id: str, statuses: set[str], timeout: float = 90):  # type: ignore[no-untyped-def]
    def reached():  # type: ignore[no-untyped-def]
        sv.settler.tick()
        run = sv.runs.get(run_id)
        return run.status in statuses and run

    return wait_for(reached, timeout, 0.2, f"{run_id} in {statuses}")


def job_of(sv: Services, run_id: str) -> tuple[str, str]:
    ref = parse_ref(sv.runs.load(run_id).backend_ref)
    assert ref is not None
    return ref


# ---- without a cluster -----------------------------------------------------------------------


def test_options_are_checked_before_anything_is_created(services: Services, workdir: Path) -> None:
    bad = [
        ({"memory": "lots"}, "is not a size"),
        ({"num_cpus": -1}, "num_cpus"),
        ({"partition": "gpu"}, "partition is for backend 'slurm'"),
        ({"nodes": 2}, "nodes"),
    ]
    for opts, message in bad:
        with pytest.raises(InvalidInput, match=message):
            services.runs.create(name="x", command="true", workdir=str(workdir), backend="ray", options=opts)
    assert services.runs.list().total == 0


def test_ray_address_decides_affinity(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RAY_ADDRESS", "head.example:8265")
    assert api.address_from_env() == "http://head.example:8265"
    assert RayBackend.affinity(Facts("cpu_only")) == EXPLICIT
    monkeypatch.setenv("RAY_ADDRESS", "ray://head:10001")  # Ray Client's address: not a job server
    assert RayBackend.affinity(Facts("cpu_only")) == UNAVAILABLE
    monkeypatch.delenv("RAY_ADDRESS")
    assert RayBackend.affinity(Facts("cpu_only")) == UNAVAILABLE
    assert RayBackend.affinity(Facts("cpu_only", {"ray": {"answered": True}})) > UNAVAILABLE


def test_the_server_does_not_load_ray_until_a_ray_run() -> None:
    code = (
        "import sys, mcp_server.server, mcp_server.core.services\n"
        "from mcp_server.core.backends import registry\n"
        "registry.classes()\n"  # auto and detect_cluster load every backend's class
        "print(sorted(m for m in sys.modules if m == 'ray' or m.startswith('ray.')))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"
    assert "ray" in registry.names()


# ---- against the real head -------------------------------------------------------------------


@needs_ray
def test_detect_cluster_reports_the_ray_cluster(ray_services: Services) -> None:
    info = ray_services.cluster.detect()
    ray = info.backends["ray"]
    assert ray["answered"] is True and ray["nodes"] == 1 and ray["cpus"] == 2 and ray["gpus"] == 2
    assert any("Ray" in s and "2 GPU(s)" in s for s in info.signals)


@needs_ray
@pytest.mark.parametrize("ship", [False, True], ids=["shared-fs", "shipped"])
def test_lifecycle_finished_failed_stopped(ray_services: Services, workdir: Path, ship: bool) -> None:
    script = workdir / "train.py"
    script.write_text(
        "import json, os\n"
        "print('token', os.environ['API_TOKEN'][:2], flush=True)\n"
        "with open(os.environ['RESEARCH_METRICS_FILE'], 'a') as f:\n"
        "    for step in range(20):\n"
        "        f.write(json.dumps({'step': step, 'loss': 1.0 / (step + 1)}) + '\\n')\n"
    )
    opts = {"ship_files": True} if ship else {}
    common: dict[str, Any] = {"workdir": str(workdir), "backend": "ray", "options": opts}
    ok = ray_services.runs.create(
        name="ok", command=f"{sys.executable} train.py", env={"API_TOKEN": "s3cret-value"}, **common
    )
    bad = ray_services.runs.create(name="bad", command="echo failing; exit 3", **common)
    long = ray_services.runs.create(name="long", command="echo up; sleep 300", **common)
    assert ok.backend == "ray" and ok.status in {"launching", "queued", "running", "finished"}

    done = wait_status(ray_services, ok.id, ENDED)
    assert (done.status, done.exit_code) == ("finished", 0)
    assert ray_services.runs.logs(ok.id).text == "token s3\n"
    loss = next(m for m in done.metrics if m.key == "loss")
    assert loss.count == 20 and loss.last == pytest.approx(0.05)
    # The env value travels in the run's env.sh: not in the job's entrypoint, runtime_env or metadata.
    sid, address = job_of(ray_services, ok.id)
    record = api._get(f"{address}/api/jobs/{sid}")
    assert record is not None and b"s3cret" not in record
    assert json.loads(record)["entrypoint"] == "bash rmcp_start.sh"

    failed = wait_status(ray_services, bad.id, ENDED)
    assert (failed.status, failed.exit_code) == ("failed", 3)
    assert ray_services.runs.logs(bad.id).text == "failing\n"

    wait_for(lambda: "up" in ray_services.runs.logs(long.id).text, 60, 0.2, "the long run's output")
    stopped = ray_services.runs.stop(long.id)
    assert stopped.status == "stopped", stopped
    sid, address = job_of(ray_services, long.id)
    info = api.job_info(address, sid)
    assert info is not None and info.status == "STOPPED"


@needs_ray
def test_two_one_gpu_runs_share_the_cluster_and_a_third_waits(ray_services: Services, workdir: Path) -> None:
    gate = workdir / "gate"
    wait_gate = f"until [ -e {shlex.quote(str(gate))} ]; do sleep 0.1; done"
    cmd = f'echo "cvd=$CUDA_VISIBLE_DEVICES"; touch "started-$RESEARCH_RUN_ID"; {wait_gate}'
    runs = [
        ray_services.runs.create(name=f"g{i}", command=cmd, workdir=str(workdir), backend="ray", gpus=1)
        for i in range(3)
    ]
    started = lambda: [r for r in runs if (workdir / f"started-{r.id}").exists()]  # noqa: E731
    wait_for(lambda: len(started()) == 2, 60, 0.2, "two runs to start")
    waiting = next(r for r in runs if r not in started())
    queued = wait_status(ray_services, waiting.id, {"queued"}, 30)
    assert "PENDING" in queued.status_reason
    time.sleep(1)
    assert len(started()) == 2  # still only two: the cluster has 2 GPUs
    gate.touch()
    for run in runs:
        assert wait_status(ray_services, run.id, ENDED).status == "finished"
    seen = [ray_services.runs.logs(r.id).text.strip() for r in runs]
    assert set(seen) == {"cvd=0", "cvd=1"}  # Ray gave each job its own GPU
    assert all(
        r.options["gpuwrap"]["enabled"] is False for r in map(ray_services.runs.get, [r.id for r in runs])
    )


@needs_ray
def test_a_sweep_keeps_its_parallel_cap(ray_services: Services, workdir: Path) -> None:
    sweep = ray_services.sweeps.create(
        name="grid", goal="cap on ray", base_command="echo lr={lr}; sleep 1", parameters={"lr": [1, 2, 3]},
        parallel=2, workdir=str(workdir), backend="ray",
    )  # fmt: skip
    assert sweep.progress.total == 3 and sweep.progress.waiting == 1
    peak = 0

    def done():  # type: ignore[no-untyped-def]
        nonlocal peak
        ray_services.settler.tick()
        now = ray_services.sweeps.get(sweep.id)
        peak = max(peak, now.progress.active)
        return now.status not in ("running", "pending") and now

    final = wait_for(done, 120, 0.2, "the sweep to end")
    assert final.status == "completed" and final.progress.finished == 3
    assert peak <= 2
    launched = sorted((ray_services.runs.load(r.id) for r in final.runs), key=lambda r: r.launched_at or 0)
    third = launched[-1]
    # The third was submitted only after one of the first two ended.
    assert third.launched_at is not None
    assert min(r.ended_at or 1e20 for r in launched[:2]) <= third.launched_at + 0.5
    assert [ray_services.runs.logs(r.id).text for r in launched] == ["lr=1\n", "lr=2\n", "lr=3\n"]


# ---- a run that outlives its server ----------------------------------------------------------


def serve(state_dir: Path) -> subprocess.Popen[bytes]:
    """A real ``research-mcp serve`` on stdio, initialized; ``proc.call(name, args)`` calls a tool."""
    proc = subprocess.Popen(
        [sys.executable, "-m", "mcp_server", "serve", "--state-dir", str(state_dir)],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, env=dict(os.environ),
    )  # fmt: skip
    assert proc.stdin is not None and proc.stdout is not None
    ids = iter(range(1, 1000))

    def send(method: str, params: dict[str, Any], reply: bool = True) -> dict[str, Any]:
        msg: dict[str, Any] = {"jsonrpc": "2.0", "method": method, "params": params}
        if reply:
            msg["id"] = next(ids)
        proc.stdin.write((json.dumps(msg) + "\n").encode())  # type: ignore[union-attr]
        proc.stdin.flush()  # type: ignore[union-attr]
        return json.loads(proc.stdout.readline()) if reply else {}  # type: ignore[union-attr]

    hello = {"protocolVersion": "2025-11-25", "capabilities": {}, "clientInfo": {"name": "t", "version": "0"}}
    send("initialize", hello)
    send("notifications/initialized", {}, reply=False)

    def call(name: str, arguments: dict[str, Any]) -> dict[str, Any]:
        answer = send("tools/call", {"name": name, "arguments": arguments})
        result = answer["result"]
        assert not result.get("isError"), result
        return dict(result["structuredContent"])

    proc.call = call  # type: ignore[attr-defined]
    return proc


@needs_ray
@pytest.mark.parametrize("ship", [False, True], ids=["shared-fs", "shipped"])
def test_kill_9_of_the_server_mid_run_then_the_next_server_settles_it(
    state_dir: Path, workdir: Path, ray_cluster: ray_head.RayHead, monkeypatch: pytest.MonkeyPatch, ship: bool
) -> None:
    monkeypatch.setenv("RAY_ADDRESS", ray_cluster.address)
    server = serve(state_dir)
    gate = workdir / "gate"
    command = f"echo working; until [ -e {shlex.quote(str(gate))} ]; do sleep 0.1; done; echo bye; exit 7"
    try:
        run = server.call(  # type: ignore[attr-defined]
            "create_run",
            {"name": "outlives", "workdir": str(workdir), "backend": "ray", "command": command,
             "options": {"ship_files": True} if ship else {}},
        )  # fmt: skip
        wait_for(lambda: server.call("get_run", {"run_id": run["id"]})["status"] == "running", 60, 0.2)  # type: ignore[attr-defined]
    finally:
        # The server and its run's sidecar die; the job goes on in Ray.
        for pid in [server.pid, *pids_with("sidecar", str(state_dir))]:
            os.kill(pid, signal.SIGKILL)
        server.wait()
    gate.touch()
    sv = Services(state_dir)
    try:
        sid, address = job_of(sv, run["id"])
        wait_for(lambda: job_ended(sid, address), 60, 0.2, "the job to end without a server")
        sv.recover()
        done = wait_status(sv, run["id"], ENDED)
        assert (done.status, done.exit_code) == ("failed", 7), done
        assert sv.runs.logs(run["id"]).text == "working\nbye\n"
    finally:
        stop_jobs(sv)
        sv.close()


# ---- Ray's word, mapped (no cluster needed) --------------------------------------------------


def test_each_ray_status_maps_to_a_run_status(services: Services) -> None:
    run = services.runs.create(name="mapped", command="true", workdir="/tmp", backend="ray", auto_start=False)
    backend = services.backends.get("ray")
    assert isinstance(backend, RayBackend)
    files = services.runs.files(run.id)
    (files.run_dir / "backend_ref").write_text("ray:x@http://h:8265\n")
    row = services.runs.load(run.id)
    long_ago = time.time() - 60

    def verdict(status: str, code: int | None = None, message: str = "", ended: float | None = long_ago):  # type: ignore[no-untyped-def]
        info = api.JobInfo(status, message, code, long_ago - 5, ended)
        obs = backend._observation("sid", files, info, time.time())
        d = decide_for(row, obs, now=time.time(), launch_grace_s=30)
        return None if d is None else (d.status.value, d.exit_code)

    row.status = "launching"
    assert verdict("PENDING", message="waiting for resources") == ("queued", None)
    row.status = "running"
    assert verdict("SUCCEEDED", 0) == ("finished", 0)
    assert verdict("FAILED", 3) == ("failed", 3)  # the driver's own exit code, not Ray's word
    assert verdict("STOPPED") == ("stopped", None)
    assert verdict("FAILED", message="Job supervisor actor failed to start within 900.0 seconds") == (
        "failed", None,
    )  # fmt: skip
    # Ended just now with a code the run dir does not show yet: wait for a lagging shared FS.
    assert verdict("SUCCEEDED", 0, ended=time.time()) is None
    # The run dir's exit code wins over Ray's (the launch script knows the command's own).
    files.exit_code.write_text("7\n")
    assert verdict("FAILED", 1) == ("failed", 7)
    # A job the cluster forgot, whose run dir has no exit code: lost.
    files.exit_code.unlink()
    obs = backend._observation("sid", files, None, time.time())
    assert obs.present is False and "no longer knows" in obs.detail
