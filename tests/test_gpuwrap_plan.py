"""How a run is admitted (pure decisions): gpuwrap options, CUDA_VISIBLE_DEVICES, pools."""

from __future__ import annotations

import pytest

from mcp_server.core.errors import InvalidInput
from mcp_server.core.scheduling.gpuwrap import (
    GpuwrapOptions,
    give_up_at,
    parse_options,
    plan_admission,
    sets_cuda_visible_devices,
)


def plan(cluster_type: str, gpus: int = 1, command: str = "python train.py", **options: object):  # type: ignore[no-untyped-def]
    return plan_admission(
        cluster_type=cluster_type,
        gpus=gpus,
        options=parse_options(options or None),
        command=command,
        env={},
    )


def test_gpuwrap_is_on_by_default_only_for_gpu_runs_on_local_gpu_machines() -> None:
    assert plan("local_gpu").pool == "gpu" and plan("local_gpu").record["enabled"] is True
    assert plan("local_gpu", gpus=0).pool is None
    assert plan("cpu_only").pool == "cpu"  # no GPUs to lease, but the run limit applies
    assert plan("slurm").pool is None
    assert plan("cpu_only", enabled=True).pool == "gpu"  # asked for explicitly
    assert plan("local_gpu", enabled=False).pool is None


def test_engines_that_allocate_gpus_themselves_admit_nothing(tmp_path) -> None:  # type: ignore[no-untyped-def]
    from mcp_server.core.backends.base import BackendContext
    from mcp_server.core.backends.slurm import SlurmBackend
    from mcp_server.core.paths import StateDir
    from mcp_server.core.settings import Settings

    slurm = SlurmBackend(BackendContext(StateDir.open(tmp_path / "state"), Settings()))
    planned = slurm.plan(cluster_type="slurm", gpus=2, options={}, command="x", env={})
    assert planned.pool is None and "allocates GPUs itself" in planned.record["note"]


@pytest.mark.parametrize(
    "command",
    [
        "CUDA_VISIBLE_DEVICES=1 python train.py",
        "export CUDA_VISIBLE_DEVICES=0,1; torchrun train.py",
        "env CUDA_VISIBLE_DEVICES=2 python train.py",
        "python -c \"import os; os.environ['CUDA_VISIBLE_DEVICES'] = '3'\"",
    ],
)
def test_commands_that_pick_their_gpus_turn_gpuwrap_off(command: str) -> None:
    p = plan("local_gpu", command=command)
    assert p.pool is None and p.record["enabled"] is False
    assert p.record["note"] == "gpuwrap off: the command sets CUDA_VISIBLE_DEVICES itself"


@pytest.mark.parametrize(
    "command",
    [
        'echo "$CUDA_VISIBLE_DEVICES"',
        'test "$CUDA_VISIBLE_DEVICES" == 0',
        "print(os.environ['CUDA_VISIBLE_DEVICES'])",
    ],
)
def test_reading_cuda_visible_devices_is_not_setting_it(command: str) -> None:
    assert sets_cuda_visible_devices(command, {}) is None


def test_bad_gpuwrap_options_name_what_is_valid() -> None:
    with pytest.raises(InvalidInput, match="valid: enabled, retries, retry_delay_seconds"):
        parse_options({"retry": 3})
    with pytest.raises(InvalidInput, match="from 0 to"):
        parse_options({"retries": -1})
    with pytest.raises(InvalidInput, match="above 0"):
        parse_options({"retry_delay_seconds": 0})
    with pytest.raises(InvalidInput, match="true, false or null"):
        parse_options({"enabled": "yes"})
    assert parse_options({"retries": 2, "retry_delay_seconds": 5}) == GpuwrapOptions(None, 2, 5.0)


def test_waiting_is_unlimited_by_default_and_retries_bound_it() -> None:
    assert give_up_at(GpuwrapOptions(), 100.0, 0) is None
    assert give_up_at(GpuwrapOptions(None, 3, 10.0), 100.0, 0) == 130.0
    assert give_up_at(GpuwrapOptions(None, 3, 10.0), 100.0, 2) == 110.0  # contentions used two retries
    assert give_up_at(GpuwrapOptions(None, 0, 10.0), 100.0, 0) == 100.0  # one try only
