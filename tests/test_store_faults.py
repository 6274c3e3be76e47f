"""A corrupt, missing, too-new, busy or full store: a clear error naming the next step, no hang."""

from __future__ import annotations

import os
import sqlite3
import stat
import subprocess
import sys
import threading
import time
from pathlib import Path

import anyio
import pytest

from mcp_server.core.errors import StoreError
from mcp_server.core.services import Services
from tests.mcp_client import client

pytestmark = pytest.mark.anyio


async def _tool_error_of_a_fresh_server(state_dir: Path) -> str:
    with anyio.fail_after(60):  # the client must not hang before initialize
        async with client(state_dir, "legacy") as c:
            assert len((await c.list_tools()).tools) > 10
            result = await c.call_tool("list_runs", {})
    assert result.is_error
    return result.content[0].text  # type: ignore[union-attr]


async def test_garbage_in_the_store_is_a_clear_error_not_a_silent_exit(state_dir: Path) -> None:
    state_dir.mkdir(parents=True)
    (state_dir / "research.db").write_bytes(b"this is not a database\n" * 100)
    text = await _tool_error_of_a_fresh_server(state_dir)
    assert "is not a SQLite database" in text and "research-mcp doctor --repair" in text
    # The CLI says the same and exits 2.
    proc = subprocess.run(
        [sys.executable, "-m", "mcp_server", "status", "--state-dir", str(state_dir)],
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert proc.returncode == 2 and "doctor --repair" in proc.stderr


async def test_a_deleted_store_beside_run_dirs_is_not_silently_replaced(
    state_dir: Path, workdir: Path
) -> None:
    services = Services(state_dir)
    run = services.runs.create(name="kept", command="true", workdir=str(workdir), auto_start=False)
    services.close()
    for suffix in ("", "-wal", "-shm"):
        Path(f"{state_dir / 'research.db'}{suffix}").unlink(missing_ok=True)
    text = await _tool_error_of_a_fresh_server(state_dir)
    assert "is missing" in text and "holds 1 run dir(s)" in text and "doctor --repair" in text
    assert not (state_dir / "research.db").exists()
    assert (state_dir / "runs" / run.id).is_dir()


async def test_a_store_from_a_newer_version_is_refused_and_left_alone(state_dir: Path) -> None:
    Services(state_dir).close()
    with sqlite3.connect(state_dir / "research.db") as con:
        con.execute("UPDATE meta SET value = '999' WHERE key = 'schema_version'")
    text = await _tool_error_of_a_fresh_server(state_dir)
    assert "schema version 999" in text and "upgrade research-mcp" in text


def test_a_write_waits_out_a_lock_then_succeeds_or_says_it_was_locked(
    state_dir: Path, workdir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("RESEARCH_MCP_STORE_PATIENCE_S", "3")
    services = Services(state_dir)
    try:
        holder = sqlite3.connect(state_dir / "research.db", isolation_level=None, check_same_thread=False)
        holder.execute("BEGIN IMMEDIATE")
        threading.Timer(1.0, lambda: holder.execute("ROLLBACK")).start()
        run = services.runs.create(name="patient", command="true", workdir=str(workdir), auto_start=False)
        assert run.status == "ready"  # retried until the lock was released
        holder.execute("BEGIN IMMEDIATE")
        began = time.monotonic()
        with pytest.raises(StoreError, match=r"stayed locked for .* Nothing was changed; try the call again"):
            services.runs.create(name="refused", command="true", workdir=str(workdir), auto_start=False)
        assert time.monotonic() - began < 15
        holder.execute("ROLLBACK")
        holder.close()
        assert [r.name for r in services.runs.list().runs] == ["patient"]
    finally:
        services.close()


def test_store_files_are_private_whatever_the_umask_and_the_dirs_mode(tmp_path: Path, workdir: Path) -> None:
    root = tmp_path / "shared"
    root.mkdir(mode=0o755)
    os.chmod(root, 0o755)
    old = os.umask(0o022)
    try:
        services = Services(root)
        services.runs.create(name="x", command="true", workdir=str(workdir), auto_start=False)
        with services.store.read():
            pass
        files = {p.name: stat.S_IMODE(p.stat().st_mode) for p in root.iterdir() if p.is_file()}
        services.close()
    finally:
        os.umask(old)
    assert {"research.db", "research.db-wal", "research.db-shm"} <= set(files)
    assert {name: mode for name, mode in files.items() if mode & 0o077} == {}
