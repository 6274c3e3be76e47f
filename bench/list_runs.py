"""Listing paths with a long history: list_runs, list_alerts, get_sweep, experiment://context vs raw SQL.

The state dir holds --runs runs (default 10,000, in 20 sweeps, all ended), --alerts open
alerts (default 1,000, and as many resolved), memory rules, plans and a detected cluster,
bulk-inserted into the store (creating 10,000 real runs would measure tmux, not the
reads), plus 3 real runs sleeping in tmux, each with its sidecar: the liveness check has
runs that can still change, as in a real session.

Each read goes through the MCP client (in-process, default arguments, as an agent calls
it), interleaved with, round after round:

- a tool that does nothing: the MCP round trip every answer pays (framing, argument
  validation, a worker thread), which is not the read's cost;
- the read's raw SQL on a plain sqlite3 connection, in one snapshot: the same columns
  of the same rows and the same counts the answer is made of, fetched into Python.

Figure: (tool − no-op) / raw SQL, the median of --rounds each. Target ≤ 5.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import sqlite3
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import anyio
from mcp import Client

from bench.common import ainterleaved, figure, server_with_noop, temp_state_dir

ENDED = ("finished", "failed", "stopped", "lost")
SWEEPS = 20
ACTIVE = 3


def seed(db: Path, runs: int, alerts: int, sweep_ids: list[str]) -> None:
    """Bulk rows in the store's own tables (ids in the formats the services mint)."""
    t = time.time() - runs
    with contextlib.closing(sqlite3.connect(db)) as con, con:
        con.executemany(
            "INSERT INTO runs (id, name, command, workdir, status, status_reason, exit_code, backend, "
            "sweep_id, gpus, params, env_keys, options, created_at, updated_at, launched_at, started_at, "
            "ended_at) VALUES (?, ?, 'python train.py', '/tmp', ?, 'command exited', ?, 'local', ?, 0, ?, "
            "'[]', '{}', ?, ?, ?, ?, ?)",
            [
                (f"run-20260101-000000-{i:08x}", f"lr-{i % 37}", ENDED[i % 4], (0, 1, None, None)[i % 4],
                 sweep_ids[i % len(sweep_ids)], json.dumps({"lr": 0.001 * (i % 10)}), t + i, t + i,
                 t + i + 0.5, t + i + 1.25, t + i + 61.75)
                for i in range(runs)
            ],
        )  # fmt: skip
        rows = [
            (f"alert-20260101-000000-{i:08x}", f"run-20260101-000000-{(i * 7) % runs:08x}", "spike",
             ("warning", "critical", "info")[i % 3], f"loss spiked to {i}× the median at step {i * 10}",
             json.dumps(["Stop run", "Ignore"]), f"spike:loss:{i}", "open" if i < alerts else "resolved",
             None if i < alerts else "Ignore", json.dumps({"key": "loss", "step": i * 10}), t + i,
             None if i < alerts else t + i + 5)
            for i in range(2 * alerts)
        ]  # fmt: skip
        con.executemany(
            "INSERT INTO alerts (id, run_id, kind, severity, message, choices, signature, status, "
            "resolution, data, created_at, resolved_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            rows,
        )


# The raw SQL of each read: what its answer holds (same columns, same rows, same counts).
RUN_COLUMNS = (
    "id, name, status, status_reason, exit_code, backend, gpus, sweep_id, created_at, started_at, ended_at"
)
ALERT_COLUMNS = (
    "id, run_id, kind, severity, message, choices, status, resolution, created_at, resolved_at, data"
)


def runs_sql(c: sqlite3.Connection, where: str = "", params: tuple[Any, ...] = (), limit: int = 20) -> None:
    c.execute(f"SELECT {RUN_COLUMNS} FROM runs {where} ORDER BY pk DESC LIMIT ?", (*params, limit)).fetchall()
    c.execute(f"SELECT COUNT(*) FROM runs {where}", params).fetchone()


def alerts_sql(c: sqlite3.Connection, limit: int = 20) -> None:
    c.execute(
        f"SELECT {ALERT_COLUMNS} FROM alerts WHERE status = 'open' ORDER BY pk DESC LIMIT ?", (limit,)
    ).fetchall()
    c.execute("SELECT COUNT(*) FROM alerts WHERE status = 'open'").fetchone()


def sweeps_sql(c: sqlite3.Connection, ids: list[str]) -> None:
    marks = ", ".join("?" * len(ids))
    c.execute(
        f"SELECT sweep_id, status, launched_at IS NULL, COUNT(*) FROM runs WHERE sweep_id IN ({marks}) "
        "GROUP BY sweep_id, status, launched_at IS NULL",
        ids,
    ).fetchall()


def sweep_sql(c: sqlite3.Connection, sweep_id: str) -> None:
    c.execute("SELECT * FROM sweeps WHERE id = ?", (sweep_id,)).fetchone()
    sweeps_sql(c, [sweep_id])
    c.execute(
        "SELECT DISTINCT key FROM metric_series WHERE run_id IN (SELECT id FROM runs WHERE sweep_id = ?)",
        (sweep_id,),
    ).fetchall()
    c.execute(
        "SELECT id, name, status, status_reason, exit_code, params FROM runs WHERE sweep_id = ? "
        "ORDER BY pk LIMIT 20",
        (sweep_id,),
    ).fetchall()


def context_sql(c: sqlite3.Connection) -> None:
    runs_sql(c, "WHERE status IN ('queued', 'launching', 'running', 'ready')", limit=15)
    runs_sql(c, "WHERE status IN ('finished', 'failed', 'stopped', 'lost')", limit=10)
    ids = [r[0] for r in c.execute("SELECT id FROM sweeps ORDER BY pk DESC LIMIT 8")]
    sweeps_sql(c, ids)
    alerts_sql(c, 10)
    c.execute("SELECT * FROM memories WHERE active = 1 ORDER BY pk DESC LIMIT 20").fetchall()
    c.execute("SELECT COUNT(*) FROM memories WHERE active = 1").fetchone()
    c.execute(
        "SELECT * FROM plans WHERE status IN ('draft', 'approved', 'executing') ORDER BY pk DESC LIMIT 8"
    ).fetchall()
    c.execute("SELECT COUNT(*) FROM plans WHERE status IN ('draft', 'approved', 'executing')").fetchone()
    c.execute("SELECT data FROM cluster_state").fetchone()


def snapshot(c: sqlite3.Connection, read: Callable[[sqlite3.Connection], None]) -> Callable[[], None]:
    def run() -> None:
        c.execute("BEGIN")
        read(c)
        c.execute("COMMIT")

    return run


def ms(values: list[float]) -> float:
    return statistics.median(values) * 1000


async def main(n_runs: int, n_alerts: int, rounds: int) -> int:
    os.environ.setdefault("RESEARCH_MCP_CLUSTER_TYPE", "cpu_only")
    os.environ.setdefault("RESEARCH_MCP_CPU_RUN_LIMIT", str(ACTIVE + 2))
    from mcp_server.core.services import Services
    from mcp_server.core.workflow.plans import REQUIRED_SECTIONS

    ok = True
    with temp_state_dir() as state, tempfile.TemporaryDirectory() as work:
        sv = Services(state)
        try:
            sv.cluster.detect()
            live = [
                sv.runs.create(name=f"live-{i}", command="sleep 600", workdir=work).id for i in range(ACTIVE)
            ]
            sweep_ids = [sv.sweeps.create(name=f"sweep-{i}", goal="bench").id for i in range(SWEEPS)]
            for i in range(30):
                sv.memory.add(title=f"rule {i}", content="lr above 1e-3 diverges for this model " * 3)
            plan = "".join(f"## {section}\n{section} of the lr study.\n\n" for section in REQUIRED_SECTIONS)
            for i in range(10):
                sv.plans.save(title=f"plan {i}", goal="find the best lr", raw_markdown=plan)
            t0 = time.perf_counter()
            seed(state / "research.db", n_runs, n_alerts, sweep_ids)
            print(f"seeded {n_runs:,} runs and {2 * n_alerts:,} alerts in {time.perf_counter() - t0:.1f} s")
            raw = sqlite3.connect(state / "research.db", isolation_level=None)
            sweep = sweep_ids[len(sweep_ids) // 2]
            server = server_with_noop(state)
            async with Client(server, mode="legacy", cache=None) as c:

                def tool(name: str, args: dict[str, Any]) -> Callable[[], Any]:
                    async def call() -> None:
                        res = await c.call_tool(name, args)
                        assert not res.is_error, res.content

                    return call

                async def context() -> None:
                    await c.read_resource("experiment://context")

                reads: dict[str, tuple[Callable[[], Any], Callable[[], None]]] = {
                    "list_runs": (tool("list_runs", {}), snapshot(raw, runs_sql)),
                    "list_alerts": (tool("list_alerts", {}), snapshot(raw, alerts_sql)),
                    "get_sweep": (
                        tool("get_sweep", {"sweep_id": sweep}),
                        snapshot(raw, lambda r: sweep_sql(r, sweep)),
                    ),
                    "experiment://context": (context, snapshot(raw, context_sql)),
                }

                async def noop() -> None:
                    await c.call_tool("noop")

                for fn, _ in reads.values():  # warm: the first call opens the store's connections
                    await fn()
                subjects: dict[str, Callable[[], Any]] = {"noop": noop}
                for name, (fn, base) in reads.items():
                    subjects[name] = fn

                    async def baseline(base: Callable[[], None] = base) -> None:
                        base()

                    subjects[f"raw {name}"] = baseline
                t = await ainterleaved(subjects, rounds)
            noop_ms = ms(t["noop"])
            for name in reads:
                ours, base = ms(t[name]), ms(t[f"raw {name}"])
                ratio = (ours - noop_ms) / base
                ok &= figure(
                    "list_runs", f"{name} ({n_runs // 1000}k runs) − MCP no-op, / its raw SQL", ratio, "≤ 5",
                    ratio <= 5, f"{ours:.2f} ms − {noop_ms:.2f} ms no-op vs {base:.3f} ms SQL",
                )  # fmt: skip
            raw.close()
            for run_id in live:
                sv.runs.stop(run_id)
        finally:
            sv.close()
    return 0 if ok else 1


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=10_000)
    parser.add_argument("--alerts", type=int, default=1000, help="open alerts (as many resolved ones too)")
    parser.add_argument("--rounds", type=int, default=100)
    a = parser.parse_args()
    raise SystemExit(anyio.run(main, a.runs, a.alerts, a.rounds))
