"""``research-mcp doctor``: check a state dir, and with ``--repair`` put it right.

Checks: the store (a SQLite file, its integrity, its schema version), run dirs without a
row and rows without a dir, staging dirs of interrupted creates, sidecars recorded as
watching that are dead, queue entries and GPU leases whose holders are gone, file
permissions, and free disk.

``--repair`` never deletes: a missing, empty or corrupt store is moved aside
(``research.db.bad-<time>``) and rebuilt from the run dirs. Each run dir keeps its
``spec.json`` (what its row was made from) and the files its launch script wrote, so a
run comes back with its status (finished / failed / stopped from ``exit_code`` and the
``stop_requested`` marker, running while its job lives, lost otherwise), its exit code
and times; its metrics are re-read from ``metrics.jsonl`` / ``output.log`` by the same
monitor that read them the first time. Sweeps come back from ``sweeps/<id>.json``.
"""

from __future__ import annotations

import json
import os
import shutil
import sqlite3
import stat
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from mcp_server.core.execution.jobfiles import JobFiles
from mcp_server.core.execution.staging import SPEC_FIELDS, leftovers, read_spec
from mcp_server.core.paths import StateDir
from mcp_server.core.scheduling.procs import job_lives
from mcp_server.core.storage.sqlite_open import connect_readonly
from mcp_server.core.storage.store_health import not_a_database, run_dirs

SWEEPS_DIR = "sweeps"
LOW_DISK_MB = 1024.0


@dataclass(frozen=True)
class Finding:
    ok: bool
    what: str
    fix: str = ""

    def line(self) -> str:
        mark = "ok  " if self.ok else "FAIL"
        return f"{mark}  {self.what}" + (f"\n      → {self.fix}" if self.fix else "")


def _store_problem(db: Path) -> str | None:
    """Why the store cannot be used as it is, or None."""
    if not db.exists() or db.stat().st_size == 0:
        return "missing" if not db.exists() else "empty"
    if problem := not_a_database(db):
        return "not a SQLite database" if problem.startswith("not a SQLite database") else problem
    try:
        con = connect_readonly(db)
        try:
            result = con.execute("PRAGMA quick_check").fetchone()[0]
        finally:
            con.close()
    except sqlite3.DatabaseError as err:
        return f"unreadable ({err})"
    return None if result == "ok" else f"damaged ({result})"


def check(state: StateDir) -> list[Finding]:
    from mcp_server.core.storage.store import SCHEMA_VERSION

    out: list[Finding] = []
    db = state.db_path
    found = run_dirs(state.runs_dir)
    problem = _store_problem(db)
    if problem:
        out.append(
            Finding(
                False,
                f"store {db} is {problem}; {len(found)} run dir(s) on disk",
                "research-mcp doctor --repair moves it aside and rebuilds it from the run dirs",
            )
        )
        return out + _files(state) + _disk(state)
    con = connect_readonly(db)
    try:
        version = int((con.execute("SELECT value FROM meta WHERE key='schema_version'").fetchone() or [0])[0])
        rows = {r[0]: r[1] for r in con.execute("SELECT id, status FROM runs")}
        sidecars = con.execute(
            "SELECT run_id, pid FROM sidecars WHERE exited_at IS NULL AND pid IS NOT NULL"
        ).fetchall()
    finally:
        con.close()
    out.append(
        Finding(
            version == SCHEMA_VERSION,
            f"store {db}: integrity ok, schema version {version}",
            ""
            if version == SCHEMA_VERSION
            else (
                "upgrade research-mcp" if version > SCHEMA_VERSION else "any research-mcp start migrates it"
            ),
        )
    )
    on_disk = {p.name for p in found}
    orphans = sorted(on_disk - set(rows))
    missing = sorted(set(rows) - on_disk)
    out.append(
        Finding(
            not orphans,
            f"{len(orphans)} run dir(s) without a row" + _some(orphans),
            "research-mcp doctor --repair adds their rows from spec.json" if orphans else "",
        )
    )
    out.append(Finding(not missing, f"{len(missing)} run row(s) without a run dir" + _some(missing)))
    staged = leftovers(state)
    out.append(
        Finding(
            not staged,
            f"{len(staged)} staging dir(s) of interrupted creates",
            "a server start (or --repair) completes or removes them" if staged else "",
        )
    )
    from mcp_server.core.execution.sidecar_proc import is_sidecar

    dead = [run_id for run_id, pid in sidecars if not is_sidecar(pid, run_id)]
    out.append(
        Finding(
            not dead,
            f"{len(dead)} sidecar(s) recorded as watching but dead" + _some(dead),
            "a server start (or --repair) restarts them" if dead else "",
        )
    )
    stale = _stale_admissions(state)
    out.append(
        Finding(
            not stale,
            f"{len(stale)} queue entry(ies)/GPU lease(s) whose holder is gone" + _some(stale),
            "--repair reclaims them (any admission does too)" if stale else "",
        )
    )
    return out + _files(state) + _disk(state)


def _some(items: list[str]) -> str:
    return f": {', '.join(items[:5])}{' …' if len(items) > 5 else ''}" if items else ""


def _stale_admissions(state: StateDir) -> list[str]:
    from mcp_server.core.scheduling.admission import Admission
    from mcp_server.core.settings import Settings
    from mcp_server.core.storage.models import GpuLease, QueueEntry
    from mcp_server.core.storage.store import Store

    store = Store(state.db_path)
    try:
        with store.read() as s:
            admission = Admission(state, Settings.from_env())
            live, _leases = admission.live_state(s, reclaim=False)
            from sqlmodel import select

            entries = s.exec(select(QueueEntry)).all()
            all_leases = s.exec(select(GpuLease)).all()
        live_ids = {e.run_id for e in live}
        return sorted(
            {e.run_id for e in entries if e.run_id not in live_ids}
            | {g.run_id for g in all_leases if g.run_id not in live_ids}
        )
    finally:
        store.close()


def _files(state: StateDir) -> list[Finding]:
    loose = []
    for path in [*state.root.glob("research.db*"), state.root / "token"]:
        if path.is_file() and stat.S_IMODE(path.stat().st_mode) & 0o077:
            loose.append(path.name)
    runs_mode = stat.S_IMODE(state.runs_dir.stat().st_mode) if state.runs_dir.exists() else 0o700
    if runs_mode & 0o077:
        loose.append("runs/")
    return [
        Finding(
            not loose,
            f"{len(loose)} private file(s) readable by others" + _some(loose),
            "--repair makes them 0600 (dirs 0700)" if loose else "",
        )
    ]


def _disk(state: StateDir) -> list[Finding]:
    free = shutil.disk_usage(state.root).free / 2**20
    return [
        Finding(
            free >= LOW_DISK_MB,
            f"{free:.0f} MB free on the state dir's disk",
            "" if free >= LOW_DISK_MB else "free space: a full disk delays run endings and metrics",
        )
    ]


# ---- repair --------------------------------------------------------------------------------------


def repair(state: StateDir) -> list[str]:
    """Put right what ``check`` finds; returns what was done, in words."""
    done: list[str] = []
    problem = _store_problem(state.db_path)
    if problem:
        done += _move_store_aside(state, problem)
    from mcp_server.core.storage.store import Store

    Store(state.db_path, create=True).close()
    done += _tighten(state)
    restored = _restore_rows(state)
    if restored:
        done.append(f"rebuilt {len(restored)} run row(s) from their run dirs")
        done += _reingest(state, restored)
    from mcp_server.core.services import Services

    services = Services(state.root)
    try:
        touched = services.recover()
        if touched:
            done.append(f"completed {len(touched)} interrupted create(s)/launch(es)")
        with services.store.write() as s:
            services.admission.live_state(s, reclaim=True)
        services.reconciler.reconcile()  # restarts dead sidecars, settles what ended
    finally:
        services.close()
    return done


def _move_store_aside(state: StateDir, problem: str) -> list[str]:
    stamp = time.strftime("%Y%m%d-%H%M%S")
    moved = []
    for suffix in ("", "-wal", "-shm"):
        path = Path(f"{state.db_path}{suffix}")
        if path.exists():
            target = Path(f"{state.db_path}.bad-{stamp}{suffix}")
            os.rename(path, target)
            moved.append(target.name)
    return [f"moved the {problem} store aside: {', '.join(moved)}"] if moved else []


def _tighten(state: StateDir) -> list[str]:
    fixed = []
    for path in [*state.root.glob("research.db*"), state.root / "token"]:
        if path.is_file() and stat.S_IMODE(path.stat().st_mode) & 0o077:
            os.chmod(path, 0o600)
            fixed.append(path.name)
    if state.runs_dir.exists() and stat.S_IMODE(state.runs_dir.stat().st_mode) & 0o077:
        os.chmod(state.runs_dir, 0o700)
        fixed.append("runs/")
    return [f"made private: {', '.join(fixed)}"] if fixed else []


def _restore_rows(state: StateDir) -> list[str]:
    """Rows for run dirs (and sweeps) the store lacks."""
    from sqlmodel import select

    from mcp_server.core.storage.models import Run, Sweep
    from mcp_server.core.storage.store import Store

    store = Store(state.db_path)
    try:
        with store.read() as s:
            have = set(s.exec(select(Run.id)).all())
            sweeps = set(s.exec(select(Sweep.id)).all())
        runs = []
        for run_dir in sorted(run_dirs(state.runs_dir), key=lambda p: p.name):
            spec = read_spec(run_dir)
            if spec is None or spec["id"] in have or spec["id"] != run_dir.name:
                continue
            runs.append(_run_from(state, spec, JobFiles(run_dir)))
        new_sweeps = _sweeps_for(state, {r.sweep_id for r in runs if r.sweep_id} - sweeps)
        with store.write() as s:
            for sweep in new_sweeps:
                s.add(sweep)
            for run in sorted(runs, key=lambda r: r.created_at):
                s.add(run)
        return [r.id for r in runs]
    finally:
        store.close()


def _run_from(state: StateDir, spec: dict[str, Any], files: JobFiles) -> Any:
    from mcp_server.core.execution.run_status import describe_exit
    from mcp_server.core.storage.models import Run

    fields: dict[str, Any] = {k: spec.get(k) for k in SPEC_FIELDS}
    fields["params"] = fields["params"] or {}
    fields["env_keys"] = fields["env_keys"] or []
    fields["options"] = fields["options"] or {}
    code = files.read_exit_code()
    started, ended = files.started_at(), files.ended_at()
    launched = files.launch.exists()
    stop_marker = files.run_dir / "stop_requested"
    stopped_at = stop_marker.stat().st_mtime if stop_marker.exists() else None
    ref = _backend_ref(files)
    note = " (rebuilt by research-mcp doctor)"
    if code is not None:
        if stopped_at is not None and (ended is None or stopped_at <= ended):
            status, reason = "stopped", f"stopped on request; {describe_exit(code)}"
        elif code == 0:
            status, reason = "finished", describe_exit(code)
        else:
            failure = files.read_failure()
            status, reason = "failed", describe_exit(code) + (f": {failure}" if failure else "")
    elif launched and job_lives(files):
        status, reason = ("running", "command started") if started else ("launching", "submitted")
    elif launched:
        status, reason = "lost", "no exit code and no live job when the store was rebuilt"
    else:
        status, reason = "ready", "created"
    t = time.time()
    return Run(
        **fields,
        status=status,
        status_reason=reason + note,
        exit_code=code,
        backend_ref=ref,
        updated_at=t,
        launched_at=(fields["created_at"] if launched else None),
        started_at=started,
        ended_at=ended if code is not None else (t if status == "lost" else None),
        stop_requested_at=stopped_at,
    )


def _backend_ref(files: JobFiles) -> str | None:
    try:
        return (files.run_dir / "backend_ref").read_text().strip()[:512] or None
    except OSError:
        return None


def _sweeps_for(state: StateDir, sweep_ids: set[str]) -> list[Any]:
    from mcp_server.core.storage.models import Sweep

    out = []
    t = time.time()
    for sweep_id in sorted(sweep_ids):
        try:
            spec = json.loads((state.root / SWEEPS_DIR / f"{sweep_id}.json").read_text())
            out.append(Sweep(**spec))
        except (OSError, ValueError, TypeError):
            out.append(
                Sweep(
                    id=sweep_id,
                    name=sweep_id,
                    goal="(rebuilt by research-mcp doctor: the goal was lost)",
                    created_at=t,
                    updated_at=t,
                )
            )
    return out


def _reingest(state: StateDir, run_ids: list[str]) -> list[str]:
    """Read the metrics of rebuilt, ended runs again (live runs get a sidecar from reconcile)."""
    from sqlmodel import select

    from mcp_server.core.execution.run_status import TERMINAL
    from mcp_server.core.monitoring.monitor_settings import MonitorSettings
    from mcp_server.core.settings import Settings
    from mcp_server.core.storage.models import Run
    from mcp_server.core.storage.store import Store
    from sidecar.monitor import Monitor

    store = Store(state.db_path)
    try:
        with store.read() as s:
            ended = [
                r.id
                for r in s.exec(select(Run).where(Run.id.in_(run_ids))).all()  # type: ignore[attr-defined]
                if r.status in {x.value for x in TERMINAL}
            ]
    finally:
        store.close()
    settings, grace = MonitorSettings.from_env(), Settings.from_env().launch_grace_s
    for run_id in ended:
        monitor = Monitor(state, run_id, settings, grace)
        try:
            monitor.run_forever()
        finally:
            monitor.db.close()
    return [f"re-read the metrics of {len(ended)} ended run(s)"] if ended else []
