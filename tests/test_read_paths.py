"""The hot read paths in plain SQL: the same answers the ORM gave, at the cost of what is live.

list_runs, list_alerts, get_sweep and experiment://context read the store with plain
sqlite3 (core.execution.run_list, core.monitoring.alert_list, core.search.sweep_list,
core.search.sweep_detail); these tests pin that their rows are the ones the ORM models
give, that filters use indexes, and that a long history of ended runs adds no per-row work
to the liveness check.
"""

from __future__ import annotations

import contextlib
import json
import sqlite3
from pathlib import Path

import pytest

from mcp_server.core.execution.runs import to_row
from mcp_server.core.execution.watched import CAN_CHANGE
from mcp_server.core.services import Services
from mcp_server.core.storage.models import Alert, Run


def bulk_runs(state_dir: Path, n: int, sweep_id: str | None = None, status: str = "finished") -> None:
    t = 1_767_225_600.999_9  # fractional seconds: timestamps are truncated the way views.iso does
    with contextlib.closing(sqlite3.connect(state_dir / "research.db")) as con, con:
        con.executemany(
            "INSERT INTO runs (id, name, command, workdir, status, status_reason, exit_code, backend, "
            "sweep_id, gpus, params, env_keys, options, created_at, updated_at, launched_at, started_at, "
            "ended_at) VALUES (?, ?, 'true', '/tmp', ?, 'command exited', ?, 'local', ?, ?, ?, '[]', '{}', "
            "?, ?, ?, ?, ?)",
            [
                (f"run-20260101-000000-{i:08x}", f"name_{i % 3}%", status, i % 2, sweep_id, i % 3,
                 json.dumps({"lr": i}), t + i * 0.37, t + i, t + i, t + i + 0.5, t + i + 61.123_456)
                for i in range(n)
            ],
        )  # fmt: skip


def test_a_page_of_runs_is_what_the_orm_rows_give(services: Services, state_dir: Path) -> None:
    bulk_runs(state_dir, 60)
    for kwargs in ({}, {"status": ["finished"]}, {"name_contains": "_1%"}, {"limit": 7, "offset": 5}):
        page = services.runs.list(**kwargs)  # type: ignore[arg-type]
        with services.store.read() as s:
            from sqlmodel import col, select

            rows = s.exec(select(Run).order_by(col(Run.pk).desc())).all()
        if kwargs.get("name_contains"):
            rows = [r for r in rows if "_1%" in r.name]  # LIKE with % and _ taken literally
        expected = [to_row(r).model_dump(exclude={"duration_s"}) for r in rows]
        offset, limit = int(kwargs.get("offset", 0)), int(kwargs.get("limit", 50))
        got = [r.model_dump(exclude={"duration_s"}) for r in page.runs]
        assert got == expected[offset : offset + limit] and page.total == len(expected)
        assert all(r.duration_s == round(61.123_456 - 0.5, 3) for r in page.runs)


def test_a_page_of_alerts_is_what_the_orm_rows_give(services: Services, state_dir: Path) -> None:
    run = services.runs.create(name="a", command="true", auto_start=False)
    with contextlib.closing(sqlite3.connect(state_dir / "research.db")) as con, con:
        con.executemany(
            "INSERT INTO alerts (id, run_id, kind, severity, message, choices, signature, status, "
            "resolution, data, created_at, resolved_at) VALUES (?, ?, 'spike', ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            [
                (f"alert-20260101-000000-{i:08x}", run.id, ("info", "warning", "critical")[i % 3],
                 f"loss é spiked ×{i} \"quoted\"", json.dumps(["Stop run", "Ignore"]), f"s{i}",
                 "open" if i % 4 else "resolved", None if i % 4 else "Ignore",
                 json.dumps({"step": i, "value": 1.5e-05, "lines": ["a\nb"]}), 1_767_225_600.5 + i,
                 None if i % 4 else 1_767_225_700.9)
                for i in range(40)
            ],
        )  # fmt: skip
    page = services.alerts.list(status="all", severity=["warning", "critical"], limit=200)
    with services.store.read() as s:
        from sqlmodel import col, select

        from mcp_server.core.monitoring.alerts import to_view

        rows = s.exec(select(Alert).order_by(col(Alert.pk).desc())).all()
    expected = [to_view(a) for a in rows if a.severity in ("warning", "critical")]
    assert page.alerts == expected and page.total == len(expected)
    assert services.alerts.list(run_id=run.id).total == 30


def test_list_filters_and_counts_use_indexes(services: Services, state_dir: Path) -> None:
    plans = {}
    with contextlib.closing(sqlite3.connect(state_dir / "research.db")) as con:
        for name, sql in {
            "open alerts": "SELECT COUNT(*) FROM alerts WHERE status = 'open'",
            "a sweep's progress": "SELECT status, launched_at IS NULL, COUNT(*) FROM runs "
            "WHERE sweep_id = 'x' GROUP BY status, launched_at IS NULL",
        }.items():
            plans[name] = " ".join(r[3] for r in con.execute("EXPLAIN QUERY PLAN " + sql))
    assert "COVERING INDEX ix_alerts_status_pk" in plans["open alerts"]
    assert "COVERING INDEX ix_runs_sweep_status" in plans["a sweep's progress"]


def test_ended_and_lost_local_runs_cost_the_liveness_check_nothing(
    services: Services, state_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    bulk_runs(state_dir, 500, status="lost")
    observed: list[int] = []
    local = services.backends.get("local")
    real = local.observe
    monkeypatch.setattr(local, "observe", lambda runs, files: observed.append(len(runs)) or real(runs, files))
    services.runs.list()
    services.sweeps.list()
    assert observed == []  # nothing live: not one run observed, no tmux asked
    with services.store.sql.snapshot() as conn:
        sql = f"EXPLAIN QUERY PLAN SELECT 1 FROM runs INDEXED BY ix_runs_can_change WHERE {CAN_CHANGE}"
        plan = " ".join(r[3] for r in conn.execute(sql))
    assert "ix_runs_can_change" in plan  # the partial index holds only the live runs


def test_a_sweep_in_detail_counts_its_runs_and_ranks_the_best_in_sql(
    services: Services, state_dir: Path
) -> None:
    sweep = services.sweeps.create(name="s", goal="find the best lr")
    bulk_runs(state_dir, 30, sweep_id=sweep.id)
    with contextlib.closing(sqlite3.connect(state_dir / "research.db")) as con, con:
        ids = [r[0] for r in con.execute("SELECT id FROM runs WHERE sweep_id = ? ORDER BY pk", (sweep.id,))]
        for i, run_id in enumerate(ids[:10]):
            con.execute(
                "INSERT INTO metric_series (run_id, key, count, min_value, min_step, max_value, max_step, "
                "last_value) VALUES (?, 'val_loss', 5, ?, ?, ?, 1, ?)",
                (run_id, 1.0 + abs(i - 6) / 10, 40 + i, 3.0, 1.1 + i),
            )
    detail = services.sweeps.get(sweep.id, metric="val_loss", limit=5)
    assert detail.progress.total == 30 and detail.progress.finished == 30 and detail.status == "completed"
    assert detail.best is not None and detail.best.run_id == ids[6] and detail.best.value == 1.0
    assert (detail.best.step, detail.best.last, detail.best.params) == (46, 7.1, {"lr": 6})
    assert [r.id for r in detail.runs] == ids[:5] and detail.next_offset == 5
    assert [r.metric_value for r in detail.runs] == [1.6, 1.5, 1.4, 1.3, 1.2]
    assert detail.metric_keys == ["val_loss"]
