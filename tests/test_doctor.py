"""research-mcp doctor: checks a state dir; --repair rebuilds a deleted or corrupt store."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from mcp_server.core.services import Services
from tests.helpers import wait_for

ENDED = {"finished", "failed", "stopped", "lost"}
METRICS = 'for i in 1 2 3; do echo "{\\"step\\": $i, \\"loss\\": $i.5}" >> "$RESEARCH_METRICS_FILE"; done'


def doctor(state_dir: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "mcp_server", "doctor", "--state-dir", str(state_dir), *args],
        capture_output=True, text=True, timeout=300,
    )  # fmt: skip


def _history(state_dir: Path, workdir: Path) -> dict[str, tuple[str, int | None, float | None]]:
    """A state dir with finished, failed, stopped and ready runs (and a sweep); what each looks like."""
    services = Services(state_dir)
    try:
        ok = services.runs.create(name="ok", command=METRICS, workdir=str(workdir))
        bad = services.runs.create(name="bad", command=f"{METRICS}; exit 3", workdir=str(workdir))
        long = services.runs.create(name="long", command="sleep 60", workdir=str(workdir))
        services.sweeps.create(
            name="sw", goal="restore me", base_command=f"{METRICS}; echo {{x}}",
            parameters={"x": [1, 2]}, workdir=str(workdir),
        )  # fmt: skip
        services.runs.create(name="later", command="true", workdir=str(workdir), auto_start=False)
        wait_for(lambda: services.runs.get(long.id).status == "running", 30, what="long to run")
        services.runs.stop(long.id)

        def all_done() -> bool:
            services.settler.tick()
            return all(r.status in ENDED | {"ready"} for r in services.runs.list().runs)

        wait_for(all_done, 60, 0.2, what="runs to end")
        out = {}
        for row in services.runs.list().runs:
            metrics = services.metrics.get([row.id], keys=["loss"]) if row.status != "ready" else None
            last = None
            if metrics is not None and metrics.runs and metrics.runs[0].series:
                last = metrics.runs[0].series[0].last
            out[row.name] = (row.status, row.exit_code, last)
        assert out["ok"] == ("finished", 0, 3.5) and out["bad"] == ("failed", 3, 3.5)
        assert out["long"][0] == "stopped" and out["later"] == ("ready", None, None)
        assert {bad.id, ok.id} <= {r.id for r in services.runs.list().runs}
        return out
    finally:
        services.close()


def _after_repair(state_dir: Path) -> dict[str, tuple[str, int | None, float | None]]:
    services = Services(state_dir)
    try:
        out = {}
        for row in services.runs.list().runs:
            metrics = services.metrics.get([row.id], keys=["loss"]) if row.status != "ready" else None
            last = None
            if metrics is not None and metrics.runs and metrics.runs[0].series:
                last = metrics.runs[0].series[0].last
            out[row.name] = (row.status, row.exit_code, last)
        sweeps = services.sweeps.list()
        assert [(sw.name, sw.goal, sw.progress.total) for sw in sweeps] == [("sw", "restore me", 2)]
        return out
    finally:
        services.close()


@pytest.mark.parametrize("damage", ["deleted", "corrupted"])
def test_repair_restores_every_run_of_a_state_dir_whose_store_was_lost(
    state_dir: Path, workdir: Path, damage: str
) -> None:
    before = _history(state_dir, workdir)
    db = state_dir / "research.db"
    for suffix in ("", "-wal", "-shm"):
        Path(f"{db}{suffix}").unlink(missing_ok=True)
    if damage == "corrupted":
        db.write_bytes(b"\x00garbage" * 4096)
    checked = doctor(state_dir)
    assert checked.returncode == 1 and "doctor --repair" in checked.stdout, checked.stdout
    repaired = doctor(state_dir, "--repair")
    assert repaired.returncode == 0, repaired.stdout + repaired.stderr
    assert "rebuilt 6 run row(s)" in repaired.stdout
    if damage == "corrupted":  # moved aside, never deleted
        assert [p.name for p in state_dir.glob("research.db.bad-*")], repaired.stdout
        assert "moved the not a SQLite database store aside" in repaired.stdout
    assert _after_repair(state_dir) == before


def test_doctor_reports_a_healthy_state_dir_and_orphans(state_dir: Path, workdir: Path) -> None:
    services = Services(state_dir)
    services.runs.create(name="x", command="true", workdir=str(workdir), auto_start=False)
    services.close()
    healthy = doctor(state_dir)
    assert healthy.returncode == 0, healthy.stdout
    assert "integrity ok" in healthy.stdout and "MB free" in healthy.stdout
    (state_dir / "runs" / "run-20260101-000000-deadbeef").mkdir()
    (state_dir / "runs" / "run-20260101-000000-deadbeef" / "command.sh").write_text("true\n")
    orphan = doctor(state_dir)
    assert orphan.returncode == 1 and "1 run dir(s) without a row" in orphan.stdout
