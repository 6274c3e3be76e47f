"""Guardrails: a spent budget launches nothing more (and says so); a preview launches nothing."""

from __future__ import annotations

import statistics
from pathlib import Path

import pytest

from mcp_server.core.errors import InvalidInput
from mcp_server.core.services import Services
from tests.fakegpus import FakeGpus
from tests.helpers import wait_for
from tests.test_sweeps import settle_until_done


def waiting_reasons(services: Services, sweep_id: str) -> list[str]:
    return [r.status_reason for r in services.sweeps.runs_of(sweep_id) if r.status == "queued"]


def test_a_gpu_hour_budget_on_logical_gpus_stops_launching_when_spent(
    services: Services, workdir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    gpus = FakeGpus(tmp_path / "eight-gpus.json", count=8)  # GPU 1 busy: 7 free
    monkeypatch.setenv("RESEARCH_MCP_FAKE_NVML", str(gpus.path))
    monkeypatch.setenv("RESEARCH_MCP_CLUSTER_TYPE", "local_gpu")
    try:
        sweep = services.sweeps.create(
            name="gpu-budget", goal="spend at most 0.01 GPU-hours", base_command="sleep 5.3; echo {i}",
            parameters={"i": [1, 2, 3]}, gpus_per_run=7, parallel=1, budget={"gpu_hours": 0.01},
            workdir=str(workdir),
        )  # fmt: skip
        assert sweep.budget is not None and sweep.budget["gpu_hours"] == 0.01
        assert sweep.budget["gpu_hours_spent"] < 0.001
        first = sweep.runs[0].id
        wait_for(lambda: services.settler.tick() >= 0 and services.runs.load(first).status == "finished", 30)
        paused = wait_for(lambda: (d := services.sweeps.get(sweep.id)).status == "paused" and d, 15)
        # 7 GPUs × ~5.3 s ≈ 0.0103 GPU-hours: spent, so the other two are never launched
        assert paused.budget is not None and paused.budget["gpu_hours_spent"] >= 0.01
        assert paused.progress.waiting == 2 and paused.progress.finished == 1
        assert "GPU budget spent" in paused.note and "extend_sweep adds budget" in paused.note
        # The held-back runs say why once the ended run's sweep was filled again (by its sidecar
        # as it exits, or by the next settle).
        reasons = wait_for(
            lambda: (rs := waiting_reasons(services, sweep.id))
            and all(r.startswith("waiting: sweep gpu-budget: GPU budget spent (") for r in rs)
            and rs,
            15,
            what="the waiting runs to name the spent budget",
        )
        assert len(reasons) == 2
        assert all(services.runs.load(r.id).launched_at is None for r in paused.runs[1:])
        services.settler.tick()
        assert services.sweeps.get(sweep.id).progress.waiting == 2  # still nothing launched

        more = services.sweeps.extend(sweep.id, budget={"gpu_hours": 0.05})
        assert more.status == "running" and more.progress.active == 1 and more.progress.waiting == 1
        stopped = services.sweeps.stop(sweep.id)
        assert stopped.progress.finished == 1 and stopped.progress.stopped == 2
    finally:
        gpus.close()


def test_a_wall_clock_budget_stops_launching_after_its_hours(services: Services, workdir: Path) -> None:
    # 0.001 h = 3.6 s: ample for the first launch on a loaded machine (a 1.1 s budget ran out
    # before it under the parallel suite), spent before the first run's 4.5 s end.
    sweep = services.sweeps.create(
        name="clock", goal="g", base_command="sleep 4.5; echo {i}", parameters={"i": [1, 2, 3]},
        parallel=1, budget={"hours": 0.001}, workdir=str(workdir),
    )  # fmt: skip
    paused = wait_for(
        lambda: (
            services.settler.tick() >= 0 and (d := services.sweeps.get(sweep.id)).status == "paused" and d
        ),
        30,
    )
    assert paused.progress.finished == 1 and paused.progress.waiting == 2
    assert "wall-clock budget spent" in paused.note
    with pytest.raises(InvalidInput, match="must be a number above 0"):
        services.sweeps.extend(sweep.id, budget={"hours": -1})
    services.sweeps.stop(sweep.id)


def test_a_preview_launches_nothing_and_estimates_a_repeated_sweep_within_2x(
    services: Services, workdir: Path
) -> None:
    args = dict(
        name="sleepy", goal="how long", base_command="sleep {t}", parameters={"t": [0.6, 1.2, 0.9]},
        parallel=2, workdir=str(workdir),
    )  # fmt: skip
    first = services.sweeps.create(**args)  # type: ignore[arg-type]
    settle_until_done(services, first.id)

    before = (
        services.runs.list().total,
        len(services.sweeps.list()),
        sorted(p.name for p in (services.state.root / "runs").iterdir()),
        sorted(p.name for p in (services.state.root / "sweeps").iterdir()),
    )
    preview = services.sweeps.create(preview=True, **args)  # type: ignore[arg-type]
    after = (
        services.runs.list().total,
        len(services.sweeps.list()),
        sorted(p.name for p in (services.state.root / "runs").iterdir()),
        sorted(p.name for p in (services.state.root / "sweeps").iterdir()),
    )
    assert before == after  # nothing created, nothing launched
    assert preview.status == "preview" and preview.id == "" and preview.progress.total == 3
    assert [r.params for r in preview.runs] == [{"t": 0.6}, {"t": 1.2}, {"t": 0.9}]
    est = preview.estimate
    assert est is not None and est.runs == 3 and est.gpu_hours == 0
    assert est.based_on.startswith("3 finished runs of earlier sweeps with the same base command")

    again = services.sweeps.create(**args)  # type: ignore[arg-type]
    settle_until_done(services, again.id)
    runs = services.sweeps.runs_of(again.id)
    real = [r.ended_at - r.started_at for r in runs if r.started_at and r.ended_at]
    wall = max(r.ended_at or 0 for r in runs) - min(r.started_at or 0 for r in runs)
    assert est.per_run_s is not None and est.wall_s is not None
    assert statistics.median(real) / 2 <= est.per_run_s <= statistics.median(real) * 2
    assert wall / 2 <= est.wall_s <= wall * 2


def test_a_preview_without_history_says_so_and_a_tpe_preview_shows_its_first_asks(
    services: Services, workdir: Path
) -> None:
    preview = services.sweeps.create(
        name="tpe", goal="g", base_command="python t.py --lr {lr}",
        parameters={"lr": {"min": 1e-4, "max": 1e-1, "log": True}},
        method="tpe", max_runs=10, parallel=2, metric="loss", seed=3, preview=True, workdir=str(workdir),
    )  # fmt: skip
    assert (
        preview.estimate is not None
        and preview.estimate.based_on == "no similar finished run yet: no estimate"
    )
    assert len(preview.runs) == 2 and all(1e-4 <= r.params["lr"] <= 1e-1 for r in preview.runs)
    assert "TPE asks for the other 8 configurations" in preview.note
    assert services.sweeps.list() == []
