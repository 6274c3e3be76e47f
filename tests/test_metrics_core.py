"""get_metrics over the store: downsampling that keeps extremes, summaries, hints, bad input."""

from __future__ import annotations

import math
import sqlite3
from pathlib import Path

import pytest

from mcp_server.core.errors import InvalidInput, NotFound
from mcp_server.core.monitoring.metric_buckets import add_points
from mcp_server.core.monitoring.metric_keys import goal, similar_keys
from mcp_server.core.services import Services


def add_series(state_dir: Path, run_id: str, key: str, points: list[tuple[int, float]]) -> None:
    """Write a series the way the sidecar does (plain SQL on the same tables, buckets included)."""
    finite = [(s, v) for s, v in points if math.isfinite(v)]
    nonfinite = [s for s, v in points if not math.isfinite(v)]
    lo = min(finite, key=lambda p: p[1])
    hi = max(finite, key=lambda p: p[1])
    with sqlite3.connect(state_dir / "research.db") as con:
        sid = con.execute(
            "INSERT INTO metric_series (run_id, key, count, nonfinite, first_nonfinite_step, first_step, "
            "last_step, last_value, min_value, min_step, max_value, max_step) "
            "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (run_id, key, len(points), len(nonfinite), nonfinite[0] if nonfinite else None, points[0][0],
             points[-1][0], points[-1][1], lo[1], lo[0], hi[1], hi[0]),
        ).lastrowid  # fmt: skip
        con.executemany(
            "INSERT INTO metric_points (series_id, step, value, ts) VALUES (?, ?, ?, 0)",
            [(sid, s, v) for s, v in points],
        )
        add_points(con, sid, points)


@pytest.fixture
def run_id(services: Services, workdir: Path) -> str:
    return services.runs.create(name="m", command="true", workdir=str(workdir), auto_start=False).id


def test_downsampling_keeps_spikes_nans_and_both_ends(
    services: Services, state_dir: Path, run_id: str
) -> None:
    points = [(s, 1.0 / (1 + s)) for s in range(10_000)]
    points[5123] = (5123, 50.0)
    points[7000] = (7000, math.nan)
    points[8000] = (8000, -3.0)
    add_series(state_dir, run_id, "train/loss", points)
    (run,) = services.metrics.get([run_id], max_points=100).runs
    (series,) = run.series
    assert series.downsampled and len(series.points) <= 100
    steps = [s for s, _ in series.points]
    assert steps == sorted(steps) and steps[0] == 0 and steps[-1] == 9999
    got = dict(series.points)
    assert got[5123] == 50.0 and got[8000] == -3.0 and got[7000] is None
    assert series.count == 10_000 and series.nonfinite == 1 and series.first_nonfinite_step == 7000
    assert (series.min, series.max, series.best, series.best_step) == (-3.0, 50.0, -3.0, 8000)
    assert series.first_step == 0 and series.last_step == 9999 and series.last == pytest.approx(1e-4)


def test_small_series_come_back_whole_and_the_budget_is_shared(
    services: Services, state_dir: Path, run_id: str
) -> None:
    add_series(state_dir, run_id, "loss", [(s, 2.0 - s / 100) for s in range(50)])
    add_series(state_dir, run_id, "accuracy", [(s, s / 100) for s in range(0, 500, 1)])
    answer = services.metrics.get([run_id], max_points=100)
    assert answer.points_per_series == 50
    by_key = {s.key: s for s in answer.runs[0].series}
    assert not by_key["loss"].downsampled and len(by_key["loss"].points) == 50
    assert by_key["accuracy"].downsampled and len(by_key["accuracy"].points) <= 50
    assert by_key["accuracy"].best == 4.99 and by_key["loss"].best == pytest.approx(1.51)  # max vs min


def test_by_default_each_series_is_a_sketch_that_keeps_its_spike_and_nan(
    services: Services, state_dir: Path, run_id: str
) -> None:
    points = [(s, 1.0 / (1 + s)) for s in range(10_000)]
    points[5123] = (5123, 50.0)
    points[7000] = (7000, math.nan)
    add_series(state_dir, run_id, "train/loss", points)
    answer = services.metrics.get([run_id])
    (series,) = answer.runs[0].series
    assert answer.points_per_series == 20 and series.downsampled and len(series.points) <= 20
    got = dict(series.points)
    assert got[5123] == 50.0 and got[7000] is None and 0 in got and 9999 in got


def test_many_series_share_a_small_default_answer(services: Services, state_dir: Path, workdir: Path) -> None:
    run_ids = [
        services.runs.create(name=f"r{i}", command="true", workdir=str(workdir), auto_start=False).id
        for i in range(3)
    ]
    for run_id in run_ids:
        for k in range(8):
            add_series(state_dir, run_id, f"key{k}", [(s, float(s % 97)) for s in range(5000)])
    answer = services.metrics.get(run_ids)
    assert answer.points_per_series == 5
    assert all(len(s.points) <= 5 for r in answer.runs for s in r.series)
    assert all(r.keys is None for r in answer.runs)  # every key is in series: not listed twice


def test_without_keys_a_run_with_many_keys_is_summarised_in_part(
    services: Services, state_dir: Path, run_id: str
) -> None:
    for k in range(30):
        add_series(state_dir, run_id, f"layer{k:02d}/grad_norm", [(0, 1.0), (1, 0.5)])
    (run,) = services.metrics.get([run_id], max_keys=16).runs
    assert len(run.series) == 16 and run.keys is not None and len(run.keys) == 30
    assert "16 of 30 keys shown" in run.note
    (chosen,) = services.metrics.get([run_id], keys=["layer29/grad_norm"], max_keys=16).runs
    assert [s.key for s in chosen.series] == ["layer29/grad_norm"]


def test_a_missing_key_is_explained_never_silently_empty(
    services: Services, state_dir: Path, run_id: str, workdir: Path
) -> None:
    add_series(state_dir, run_id, "train/loss", [(0, 1.0), (1, 0.5)])
    add_series(state_dir, run_id, "eval_loss", [(0, 1.2)])
    (run,) = services.metrics.get([run_id], keys=["loss", "eval_loss", "bleu"]).runs
    assert [s.key for s in run.series] == ["eval_loss"] and run.keys == ["eval_loss", "train/loss"]
    loss, bleu = run.missing
    assert (
        loss.key == "loss"
        and set(loss.similar) == {"train/loss", "eval_loss"}
        and "did you mean" in loss.hint
    )
    assert bleu.similar == [] and "its keys are" in bleu.hint and "'train/loss'" in bleu.hint
    empty = services.runs.create(name="e", command="true", workdir=str(workdir), auto_start=False).id
    (nothing,) = services.metrics.get([empty], keys=["loss"]).runs
    assert nothing.series == [] and "no metrics yet" in nothing.missing[0].hint
    assert "no sidecar has read" in nothing.note


def test_bad_requests_change_nothing_and_say_what_is_valid(services: Services, run_id: str) -> None:
    with pytest.raises(InvalidInput, match="1 to 20 run ids"):
        services.metrics.get([])
    with pytest.raises(InvalidInput, match="max_points=3 is out of range"):
        services.metrics.get([run_id], max_points=3)
    with pytest.raises(InvalidInput, match="not valid"):
        services.metrics.get([run_id], keys=[" "])
    with pytest.raises(NotFound, match="list_runs"):
        services.metrics.get(["run-20260101-000000-00000000"])
    with pytest.raises(InvalidInput, match="not a valid run id"):
        services.metrics.get(["../etc"])


@pytest.mark.parametrize(
    ("key", "expected"),
    [
        ("loss", "min"), ("train/loss", "min"), ("val_loss", "min"), ("evalLoss", "min"), ("ppl", "min"),
        ("wer", "min"), ("accuracy", "max"), ("val/acc", "max"), ("top1", "max"), ("eval_f1", "max"),
        ("learning_rate", None), ("epoch", None), ("loss_scale", None), ("grad_norm", None),
        ("eval_samples_per_second", None), ("loss2", "min"), ("acc@5", "max"),
    ],
)  # fmt: skip
def test_goal_from_the_name(key: str, expected: str | None) -> None:
    assert goal(key) == expected


def test_similar_keys() -> None:
    keys = ["train/loss", "eval_loss", "lr", "train/accuracy"]
    assert similar_keys("loss", keys) == ["train/loss", "eval_loss"]
    assert similar_keys("accuracy", keys) == ["train/accuracy"]
    assert similar_keys("train/los", keys)[0] == "train/loss"
    assert similar_keys("bleu", keys) == []
