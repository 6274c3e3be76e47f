"""detect_cluster / get_cluster in the core: probes, the type rule, preferences, persistence."""

from __future__ import annotations

import getpass
import json
import shutil
import subprocess
import threading
import time
from pathlib import Path

import pytest

from mcp_server.core.backends.slurm.probe import parse_sinfo, probe_slurm
from mcp_server.core.errors import InvalidInput
from mcp_server.core.scheduling import nvml, probes
from mcp_server.core.scheduling.cluster import ClusterService
from mcp_server.core.scheduling.probes import ProbeTimeout, bounded, parse_nvidia_smi
from mcp_server.core.services import Services
from tests.fakegpus import FakeGpus
from tests.helpers import wait_for


def _driver_present() -> bool:
    try:
        nvml.query(__import__("pynvml"))
    except nvml.NvmlUnavailable as err:
        return not err.library_missing
    return True


needs_no_driver = pytest.mark.skipif(_driver_present(), reason="an NVIDIA driver is installed here")


@needs_no_driver
def test_without_a_driver_nvml_says_library_missing(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("RESEARCH_MCP_FAKE_NVML", raising=False)
    with pytest.raises(nvml.NvmlUnavailable) as err:
        nvml.query()
    assert err.value.library_missing and "Library Not Found" in str(err.value)


def test_fake_inventory_answers_the_pynvml_calls(fake_gpus: FakeGpus) -> None:
    gpus = nvml.query()
    assert [g.index for g in gpus] == [0, 1, 2, 3]
    assert gpus[1].memory_used_mib == 5000 and gpus[1].utilization_pct == 97
    assert gpus[1].processes == (nvml.NvmlProcess(fake_gpus.foreign.pid, 5000.0, "compute"),)
    assert gpus[0].name == "NVIDIA A100-SXM4-80GB" and gpus[0].memory_total_mib == 81920
    fake_gpus.gpus.pop()
    fake_gpus.write()
    assert len(nvml.query()) == 3  # re-read on every query
    fake_gpus.path.write_text(json.dumps({"error": "NVML_ERROR_DRIVER_NOT_LOADED"}))
    with pytest.raises(nvml.NvmlUnavailable, match="Driver Not Loaded") as err:
        nvml.query()
    assert not err.value.library_missing


def test_nvidia_smi_output_becomes_the_same_records() -> None:
    gpus = parse_nvidia_smi(
        "0, GPU-aaa, NVIDIA H100 80GB HBM3, 81559, 1, 0\n"
        "1, GPU-bbb, NVIDIA H100 80GB HBM3, 81559, 40000, [N/A]\n",
        "GPU-bbb, 4242, 39990\n",
    )
    assert [(g.index, g.uuid, g.memory_used_mib, g.utilization_pct) for g in gpus] == [
        (0, "GPU-aaa", 1.0, 0),
        (1, "GPU-bbb", 40000.0, None),
    ]
    assert gpus[1].processes == (nvml.NvmlProcess(4242, 39990.0, "compute"),)


def test_sinfo_lines_are_grouped_by_partition() -> None:
    parts = parse_sinfo(
        "gpu*|up|3|gpu:a100:4(S:0-1)|64|515000|2-00:00:00|mixed\n"
        "gpu*|up|1|gpu:a100:4(S:0-1)|64|515000|2-00:00:00|idle\n"
        "cpu|up|8|(null)|128|256000|infinite|idle\n"
    )
    assert [(p.name, p.default, p.nodes, p.gres, p.states) for p in parts] == [
        ("gpu", True, 4, ["gpu:a100:4(S:0-1)"], ["mixed", "idle"]),
        ("cpu", False, 8, [], ["idle"]),
    ]


def test_probes_are_bounded_by_their_timeout() -> None:
    started = time.monotonic()
    with pytest.raises(ProbeTimeout, match=r"hung probe did not answer within 0\.2 s"):
        bounded(lambda: time.sleep(5), 0.2, "hung probe")
    assert time.monotonic() - started < 1.0


def test_gpus_and_processes_are_reported_with_owners_and_leases(
    fake_gpus: FakeGpus, no_slurm: str, services: Services, workdir: Path
) -> None:
    run = services.runs.create(name="train", command="sleep 600", workdir=str(workdir), gpus=1)
    assert run.leased_gpus == [0]
    pgid = wait_for(lambda: services.runs.files(run.id).read_pgid(), what="job started")
    fake_gpus.gpus[0]["processes"] = [{"pid": pgid, "used_memory_mib": 30000}]
    fake_gpus.write()

    info = services.cluster.detect()
    assert (info.type, info.detected_type, info.status, info.gpu_count) == ("local_gpu", "local_gpu", "ok", 4)
    assert info.confidence >= 0.9 and info.gpu_source == "fake-nvml"
    g0, g1, g2, _ = info.gpus
    assert g0.leased_by == run.id and not g0.free and g0.processes[0].run_id == run.id
    assert g1.processes[0].pid == fake_gpus.foreign.pid and g1.processes[0].run_id is None
    assert g1.processes[0].user == getpass.getuser()
    assert not g1.free and f"used by pid {fake_gpus.foreign.pid}" in (g1.busy_reason or "")
    assert g2.free and g2.busy_reason is None
    assert any("fake-nvml: 4 GPU(s)" in s for s in info.signals)
    assert any("not on PATH" in s for s in info.signals)
    assert info.host.cpus >= 1 and info.host.memory_total_mib
    services.runs.stop(run.id)
    assert services.cluster.get().gpus[0].leased_by is None  # get() shows leases as they are now


@needs_no_driver
def test_no_driver_and_no_slurm_is_cpu_only(
    no_slurm: str, monkeypatch: pytest.MonkeyPatch, services: Services
) -> None:
    monkeypatch.delenv("RESEARCH_MCP_FAKE_NVML", raising=False)
    info = services.cluster.detect()
    assert (info.type, info.status, info.gpu_count, info.gpus) == ("cpu_only", "ok", 0, [])
    assert "NVML library not found (no NVIDIA driver)" in info.signals
    assert info.confidence >= 0.9 and not info.backends["slurm"]["answered"]
    assert services.cluster.current_type() == "cpu_only"


def test_a_preferred_type_is_kept_across_processes_until_auto(
    fake_gpus: FakeGpus, no_slurm: str, services: Services, state_dir: Path
) -> None:
    info = services.cluster.detect(preferred_type="cpu_only")
    assert (info.type, info.detected_type, info.preferred_type) == ("cpu_only", "local_gpu", "cpu_only")
    assert info.status == "degraded" and any("probes found local_gpu" in w for w in info.warnings)
    other = Services(state_dir)  # another server process reading the same store
    try:
        assert other.cluster.current_type() == "cpu_only"
        assert other.cluster.detect().type == "cpu_only"  # a plain re-detect keeps the preference
        back = other.cluster.detect(preferred_type="auto")
        assert (back.type, back.preferred_type) == ("local_gpu", None)
    finally:
        other.close()
    assert services.cluster.get().type == "local_gpu"


def test_bad_types_are_refused_naming_the_valid_ones(
    services: Services, monkeypatch: pytest.MonkeyPatch
) -> None:
    with pytest.raises(InvalidInput, match="local_gpu, slurm, cpu_only, or 'auto'"):
        services.cluster.detect(preferred_type="gpu")
    monkeypatch.setenv("RESEARCH_MCP_CLUSTER_TYPE", "kubernetes")
    with pytest.raises(InvalidInput, match="valid: local_gpu, slurm, cpu_only"):
        services.cluster.current_type()
    monkeypatch.setenv("RESEARCH_MCP_CLUSTER_TYPE", "slurm")
    assert services.cluster.current_type() == "slurm"


def _slurm_answers() -> str | None:
    """None when a real Slurm is up; otherwise why the Slurm test cannot run."""
    missing = [c for c in ("sinfo", "sbatch", "scontrol") if shutil.which(c) is None]
    if missing:
        return f"Slurm is not installed here ({', '.join(missing)} not on PATH)"
    try:
        ping = subprocess.run(["scontrol", "ping"], capture_output=True, text=True, timeout=10)
    except subprocess.TimeoutExpired:
        return "scontrol ping did not answer within 10 s"
    if " is UP" not in ping.stdout:
        return f"Slurm is installed but its controller is not up: {(ping.stdout or ping.stderr).strip()}"
    return None


@pytest.mark.slurm
def test_a_real_slurm_is_detected_with_its_partitions_and_gres(
    monkeypatch: pytest.MonkeyPatch, services: Services
) -> None:
    if why := _slurm_answers():
        pytest.skip(why)
    monkeypatch.delenv("RESEARCH_MCP_CLUSTER_TYPE")
    info = services.cluster.detect()
    assert (info.type, info.detected_type) == ("slurm", "slurm")
    slurm = info.backends["slurm"]
    assert slurm["answered"] and slurm["can_submit"] and slurm["controller"] == "UP"
    listed = subprocess.run(["sinfo", "-h", "-o", "%P %G"], capture_output=True, text=True, check=True)
    expected = {line.split()[0].rstrip("*"): line.split()[1] for line in listed.stdout.splitlines()}
    got = {p["name"]: p for p in slurm["partitions"]}
    assert set(got) == set(expected)
    for name, gres in expected.items():
        assert got[name]["gres"] == ([] if gres == "(null)" else gres.split(","))
    assert any(s.startswith("scontrol ping: ") and "UP" in s for s in info.signals)
    assert probe_slurm(5.0).can_submit
    assert ClusterService.current_type(services.cluster) == "slurm"


def test_a_wedged_driver_cannot_hang_detection(
    fake_gpus: FakeGpus, no_slurm: str, monkeypatch: pytest.MonkeyPatch, services: Services
) -> None:
    monkeypatch.setenv("RESEARCH_MCP_PROBE_TIMEOUT_S", "0.3")
    fake_gpus.path.write_text(json.dumps({"hang_s": 1.2, "gpus": fake_gpus.gpus}))
    quick = Services(services.state.root)
    try:
        started = time.monotonic()
        info = quick.cluster.detect()
        assert time.monotonic() - started < 1.5
        assert info.status == "degraded" and info.gpu_count == 0 and info.confidence <= 0.5
        assert any("did not answer within 0.3 s" in w for w in info.warnings)
        threads = threading.active_count()
        again = quick.cluster.detect()  # the first query still hangs: no second thread piles up
        assert any("still busy with an earlier query" in w for w in again.warnings)
        assert threading.active_count() == threads
    finally:
        quick.close()
        # Let the wedged query end before other tests probe NVML in this process.
        assert probes._nvml_busy.acquire(timeout=10)
        probes._nvml_busy.release()


SLURM_CONF = Path("/etc/slurm/slurm.conf")
needs_slurm_commands = pytest.mark.skipif(
    shutil.which("scontrol") is None or not SLURM_CONF.exists(),
    reason="needs Slurm's commands and a slurm.conf to point at a controller that is not there",
)


def dead_controller(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A copy of this machine's slurm.conf whose controller port nobody listens on (a controller
    that is down: its host refuses), and scontrol/sinfo counted on their way through."""
    conf = tmp_path / "slurm.conf"
    lines = [ln for ln in SLURM_CONF.read_text().splitlines() if not ln.startswith("SlurmctldPort")]
    conf.write_text("\n".join([*lines, "SlurmctldPort=1"]) + "\n")
    for name in ("gres.conf", "cgroup.conf"):
        if (SLURM_CONF.parent / name).exists():
            (tmp_path / name).write_text((SLURM_CONF.parent / name).read_text())
    monkeypatch.setenv("SLURM_CONF", str(conf))
    calls = tmp_path / "calls"
    shims = tmp_path / "bin"
    shims.mkdir()
    for tool in ("scontrol", "sinfo"):
        (shims / tool).write_text(f'#!/bin/sh\necho {tool} >> "{calls}"\nexec {shutil.which(tool)} "$@"\n')
        (shims / tool).chmod(0o755)
    monkeypatch.setenv("PATH", f"{shims}:{__import__('os').environ['PATH']}")
    return calls


@needs_slurm_commands
def test_a_dead_controller_is_told_at_once_and_remembered_for_a_while(
    services: Services, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    calls = dead_controller(tmp_path, monkeypatch)
    t0 = time.monotonic()
    first = services.cluster.detect()
    took = time.monotonic() - t0
    slurm = first.backends["slurm"]
    assert slurm["controller"] == "DOWN" and not slurm["answered"]
    assert took < 1.5, f"a dead controller held detection for {took:.1f} s (sinfo retries it for ~10 s)"
    assert any("sinfo not waited for" in line for line in first.signals)
    probes_made = calls.read_text().split()
    t0 = time.monotonic()
    again = services.cluster.detect()
    assert time.monotonic() - t0 < 1.0
    assert calls.read_text().split() == probes_made  # not probed again
    assert any("not probed again" in w for w in again.warnings) and again.status == "degraded"
    monkeypatch.setenv("RESEARCH_MCP_SLURM_RETRY_S", "0")  # 0: probe every time
    services.cluster.detect()
    assert len(calls.read_text().split()) > len(probes_made)
