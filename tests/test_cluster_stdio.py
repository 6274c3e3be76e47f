"""detect_cluster, get_cluster, cluster://state and create_run's gpuwrap over real stdio MCP."""

from __future__ import annotations

import json
from pathlib import Path

import anyio
import pytest

from tests.fakegpus import FakeGpus
from tests.mcp_client import MODES, call, call_error, client

pytestmark = pytest.mark.anyio


@pytest.mark.parametrize("mode", MODES)
async def test_detect_and_get_cluster_and_the_state_resource(
    fake_gpus: FakeGpus, no_slurm: str, state_dir: Path, mode: str
) -> None:
    async with client(state_dir, mode) as c:
        tools = {t.name: t for t in (await c.list_tools()).tools}
        assert tools["get_cluster"].annotations.read_only_hint is True  # type: ignore[union-attr]

        info = await call(c, "detect_cluster")
        assert (info["type"], info["gpu_count"], info["status"]) == ("local_gpu", 4, "ok")
        busy = info["gpus"][1]
        assert not busy["free"] and busy["processes"][0]["pid"] == fake_gpus.foreign.pid
        assert "run_id" not in busy["processes"][0] and busy["processes"][0]["user"]  # null: left out
        assert [g["free"] for g in info["gpus"]] == [True, False, True, True]
        assert info["signals"] and 0 < info["confidence"] <= 1

        kept = await call(c, "detect_cluster", preferred_type="cpu_only")
        assert (kept["type"], kept["detected_type"]) == ("cpu_only", "local_gpu")
        got = await call(c, "get_cluster")
        assert (got["type"], got["preferred_type"]) == ("cpu_only", "cpu_only")

        resource = await c.read_resource("cluster://state")
        content = resource.contents[0]
        assert content.mime_type == "application/json"
        state = json.loads(content.text)  # type: ignore[union-attr]
        assert state["type"] == "cpu_only" and state["gpu_count"] == 4

        error = await call_error(c, "detect_cluster", preferred_type="kubernetes")
        for valid in ("local_gpu", "slurm", "cpu_only", "auto"):
            assert valid in error
        back = await call(c, "detect_cluster", preferred_type="auto")
        assert back["type"] == "local_gpu"


@pytest.mark.parametrize("mode", MODES)
async def test_create_run_leases_gpus_and_rejects_bad_gpuwrap(
    fake_gpus: FakeGpus, state_dir: Path, workdir: Path, mode: str
) -> None:
    async with client(state_dir, mode) as c:
        run = await call(
            c,
            "create_run",
            name="gpu",
            command='echo "cvd=$CUDA_VISIBLE_DEVICES"',
            workdir=str(workdir),
            gpus=2,
            options={"gpuwrap": {"retries": 3, "retry_delay_seconds": 1}},
        )
        assert run["leased_gpus"] == [0, 2]
        assert (await call(c, "get_run", run_id=run["id"]))["options"]["gpuwrap"] == {
            "enabled": True,
            "requested": None,
            "retries": 3,
            "retry_delay_seconds": 1.0,
        }
        with anyio.fail_after(20):
            while (await call(c, "get_run", run_id=run["id"]))["status"] != "finished":
                await anyio.sleep(0.1)
        assert (await call(c, "get_logs", run_id=run["id"]))["text"] == "cvd=0,2\n"

        assert "retries" in await call_error(
            c,
            "create_run",
            name="x",
            command="true",
            workdir=str(workdir),
            gpus=1,
            options={"gpuwrap": {"retries": -1}},
        )
        assert (
            "extra"
            in (
                await call_error(
                    c,
                    "create_run",
                    name="x",
                    command="true",
                    workdir=str(workdir),
                    gpus=1,
                    options={"gpuwrap": {"retry": 1}},
                )
            ).lower()
        )
        assert "this machine has 4 GPU(s)" in await call_error(
            c, "create_run", name="x", command="true", workdir=str(workdir), gpus=8
        )
        page = await call(c, "list_runs")
    assert page["total"] == 1
