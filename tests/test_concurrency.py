"""Many writers at once: two server processes on one state dir, 100 concurrent calls each."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import anyio
import pytest

from tests.mcp_client import client

pytestmark = pytest.mark.anyio


async def burst(state_dir: Path, workdir: Path, tag: str, n: int, results: dict[str, list[str]]) -> None:
    async with client(state_dir, "legacy") as c:
        ids: list[str] = []
        errors: list[str] = []

        async def one(i: int) -> None:
            res = await c.call_tool(
                "create_run",
                {"name": f"{tag}-{i}", "command": "true", "workdir": str(workdir), "auto_start": False,
                 "params": {"i": i, "tag": tag}},
            )  # fmt: skip
            if res.is_error:
                errors.append(res.content[0].text)  # type: ignore[union-attr]
            else:
                ids.append(res.structured_content["id"])  # type: ignore[index]

        async with anyio.create_task_group() as tg:
            for i in range(n):
                tg.start_soon(one, i)
        results[tag] = ids
        results[f"{tag}-errors"] = errors


async def test_two_servers_times_100_concurrent_creates_lose_nothing(state_dir: Path, workdir: Path) -> None:
    results: dict[str, list[str]] = {}
    with anyio.fail_after(240):
        async with anyio.create_task_group() as tg:
            tg.start_soon(burst, state_dir, workdir, "a", 100, results)
            tg.start_soon(burst, state_dir, workdir, "b", 100, results)
    assert results["a-errors"] == [] and results["b-errors"] == []  # no "database is locked", nothing else
    ids = results["a"] + results["b"]
    assert len(ids) == 200 and len(set(ids)) == 200
    con = sqlite3.connect(state_dir / "research.db")
    rows = con.execute("SELECT id, name FROM runs").fetchall()
    con.close()
    assert {r[0] for r in rows} == set(ids)
    assert sorted(r[1] for r in rows) == sorted(
        [f"a-{i}" for i in range(100)] + [f"b-{i}" for i in range(100)]
    )
    assert len(list((state_dir / "runs").iterdir())) == 200
