"""What kind of machine runs go to: ``slurm``, ``local_gpu`` or ``cpu_only``; what engines answer.

The rule: a type an engine's probe claims (Slurm: a controller answers and sbatch is on
PATH); else local_gpu when GPUs are found; else cpu_only. Every registered backend's probe
runs (at once, each bounded) and its facts are reported under ``backends`` (Slurm's
partitions, a Ray cluster's nodes and resources). A user's ``preferred_type`` is kept (in the store)
and wins over detection; ``RESEARCH_MCP_CLUSTER_TYPE`` wins over both for one process
environment. Other services ask ``current_type()``, which reads the persisted result and
detects only when there is none, so asking costs one store read.
"""

from __future__ import annotations

import json
import os
import threading
from types import SimpleNamespace
from typing import Any

from mcp_server.core.backends import registry
from mcp_server.core.backends.base import Facts, Probe
from mcp_server.core.errors import InvalidInput
from mcp_server.core.paths import StateDir
from mcp_server.core.run_views import (
    ClusterInfo,
    GpuProcessView,
    GpuView,
    HostView,
    iso,
)
from mcp_server.core.scheduling.admission import Admission
from mcp_server.core.scheduling.gpufree import GpuState
from mcp_server.core.scheduling.probes import GpuProbe, probe_gpus, probe_host
from mcp_server.core.settings import Settings
from mcp_server.core.storage.models import ClusterState
from mcp_server.core.storage.store import Store, now

CLUSTER_TYPES: tuple[str, ...] = ("local_gpu", "slurm", "cpu_only")
PREFERRED_CHOICES: tuple[str, ...] = (*CLUSTER_TYPES, "auto")
TYPE_ENV = "RESEARCH_MCP_CLUSTER_TYPE"
ROW_KEY = "local"


def failed_key(backend: str) -> str:
    """The meta row remembering when a backend's probe last failed, and why."""
    return f"{backend}_probe_failed"


def retry_env(backend: str) -> str:
    return f"RESEARCH_MCP_{backend.upper()}_RETRY_S"


def retry_s(backend: str) -> float:
    """How long a backend's failed probe is remembered (seconds; 0: probe every time). Default 60."""
    raw = os.environ.get(retry_env(backend), "").strip()
    try:
        return max(0.0, float(raw)) if raw else 60.0
    except ValueError:
        return 60.0


def env_pin() -> str | None:
    raw = os.environ.get(TYPE_ENV, "").strip()
    if not raw:
        return None
    if raw not in CLUSTER_TYPES:
        raise InvalidInput(
            f"{TYPE_ENV}={raw!r} is not a cluster type; valid: {', '.join(CLUSTER_TYPES)}; "
            "unset it to detect."
        )
    return raw


def _gpu_view(state: GpuState) -> GpuView:
    g = state.gpu
    return GpuView(
        index=g.index,
        uuid=g.uuid,
        name=g.name,
        memory_total_mib=g.memory_total_mib,
        memory_used_mib=g.memory_used_mib,
        utilization_pct=g.utilization_pct,
        processes=[
            GpuProcessView(
                pid=p.pid, user=p.user, used_memory_mib=p.used_memory_mib, kind=p.kind, run_id=p.run_id
            )
            for p in state.processes
        ],
        leased_by=state.leased_by,
        free=state.free,
        busy_reason=state.busy_reason(),
    )


def _classify(gpu: GpuProbe, engines: dict[str, Probe]) -> tuple[str, float]:
    """The detected type and how sure the probes are of it."""
    for probe in engines.values():
        if probe.claims_type:
            return probe.claims_type, probe.confidence
    if gpu.gpus:
        return "local_gpu", 0.85 if gpu.source == "nvidia-smi" else 0.95
    confidence = 0.9
    if gpu.error:
        confidence = 0.5  # GPUs may exist behind a driver that did not answer
    if any(p.warnings for p in engines.values()):
        confidence = min(confidence, 0.6)
    return "cpu_only", confidence


def probe_engines(timeout_s: float, skip: set[str] | frozenset[str] = frozenset()) -> dict[str, Probe]:
    """Every registered backend's probe, all at once (detection costs the slowest, not the sum)."""
    boxes: dict[str, dict[str, Probe]] = {}
    threads = []
    for name, cls in registry.classes().items():
        if name in skip:
            continue
        box: dict[str, Probe] = {}
        boxes[name] = box

        def run(cls: type = cls, box: dict[str, Probe] = box) -> None:
            try:
                found = cls.probe(timeout_s)  # type: ignore[attr-defined]
            except Exception as err:  # a plugin's probe must not break detection
                found = Probe({}, warnings=[f"{cls.name} probe failed: {err}"])  # type: ignore[attr-defined]
            if found is not None:
                box["probe"] = found

        thread = threading.Thread(target=run, name=f"probe-{name}", daemon=True)
        thread.start()
        threads.append((name, thread))
    out: dict[str, Probe] = {}
    for name, thread in threads:
        thread.join(2 * timeout_s + 1)
        if thread.is_alive():
            late = f"the {name} probe did not finish within {2 * timeout_s + 1:g} s"
            out[name] = Probe({}, warnings=[late])
        elif "probe" in boxes[name]:
            out[name] = boxes[name]["probe"]
    return out


class ClusterService:
    def __init__(self, state: StateDir, store: Store, settings: Settings, admission: Admission) -> None:
        self.state = state
        self.store = store
        self.settings = settings
        self.admission = admission

    def detect(self, preferred_type: str | None = None) -> ClusterInfo:
        if preferred_type is not None and preferred_type not in PREFERRED_CHOICES:
            raise InvalidInput(
                f"preferred_type {preferred_type!r} is not valid; choose one of {', '.join(CLUSTER_TYPES)}, "
                "or 'auto' to drop a kept preference and use what is detected."
            )
        pin = env_pin()
        timeout = self.settings.probe_timeout_s
        # GPUs and Slurm are probed at once: detection costs the slower probe, not the sum.
        gpu_box: dict[str, GpuProbe] = {}
        gpu_thread = threading.Thread(
            target=lambda: gpu_box.setdefault("probe", probe_gpus(timeout)), name="probe-gpus", daemon=True
        )
        gpu_thread.start()
        engines = self._probe_engines(timeout)
        host = probe_host()
        gpu_thread.join(2 * timeout + 1)  # NVML, then maybe nvidia-smi: each bounded by timeout
        gpu = gpu_box.get("probe") or GpuProbe(error=f"GPU probe did not finish within {2 * timeout + 1:g} s")
        detected, confidence = _classify(gpu, engines)
        signals = [s for p in engines.values() for s in p.signals] + gpu.signals
        signals.append(
            f"host {host.hostname}: {host.cpus} CPU(s), {host.cpus_usable} usable"
            + (f", {host.memory_total_mib / 1024:.1f} GiB memory" if host.memory_total_mib else "")
        )
        warnings = [w for w in (gpu.error, *(w for p in engines.values() for w in p.warnings)) if w]
        with self.store.write() as s:
            for name, probe in engines.items():
                if probe.remember_failure is not None:
                    failed = json.dumps({"at": now(), "why": probe.remember_failure})
                    s.connection().exec_driver_sql(
                        "INSERT OR REPLACE INTO meta (key, value) VALUES (?, ?)", (failed_key(name), failed)
                    )
                elif probe.facts.get("answered"):
                    s.connection().exec_driver_sql("DELETE FROM meta WHERE key = ?", (failed_key(name),))
            row = s.get(ClusterState, ROW_KEY)
            kept = row.preferred_type if row else None
            preferred = None if preferred_type == "auto" else (preferred_type or kept)
            if preferred_type == "auto" and kept:
                signals.append(f"preferred type {kept} dropped: using detection")
            chosen = pin or preferred or detected
            if pin:
                signals.append(f"{TYPE_ENV}={pin} fixes the type (detected {detected})")
            elif preferred:
                signals.append(f"preferred type {preferred} kept (detected {detected})")
            if chosen != detected:
                warnings.append(f"type {chosen} is in use but the probes found {detected}")
            live, leases = self.admission.live_state(s)
            states = self.admission.assess(s, gpu, leases) if gpu.gpus else []
            info = ClusterInfo(
                type=chosen,  # type: ignore[arg-type]
                detected_type=detected,  # type: ignore[arg-type]
                preferred_type=preferred,  # type: ignore[arg-type]
                pinned_by_env=pin is not None,
                status="degraded" if warnings else "ok",
                confidence=confidence,
                gpu_count=len(gpu.gpus),
                gpu_source=gpu.source,
                gpus=[_gpu_view(st) for st in states],
                backends={name: p.facts for name, p in engines.items()},
                host=HostView(**vars(host)),
                cpu_run_limit=self.settings.cpu_run_limit,
                queued_runs=[e.run_id for e in live if e.admitted_at is None],
                signals=signals,
                warnings=warnings,
                detected_at=iso(now()) or "",
            )
            data = info.model_dump(mode="json")
            if row is None:
                row = ClusterState(key=ROW_KEY, type=chosen, detected_type=detected, status=info.status,
                                   detected_at=now(), data=data)  # fmt: skip
            row.type, row.detected_type, row.preferred_type = chosen, detected, preferred
            row.status, row.detected_at, row.data = info.status, now(), data
            s.add(row)
        return info

    def _probe_engines(self, timeout: float) -> dict[str, Probe]:
        """Every backend's probe, except one whose failure is remembered: that one says so instead.

        An engine that is down can hold every probe for the full timeout (a Slurm controller:
        sinfo retries it), and every process that detects would pay it again: the failure is
        kept in the store (what failed, when; ``Probe.remember_failure``) and each detection
        within ``RESEARCH_MCP_<BACKEND>_RETRY_S`` answers at once."""
        skipped: dict[str, Probe] = {}
        with self.store.sql.snapshot() as conn:
            rows = conn.execute("SELECT key, value FROM meta WHERE key GLOB '*_probe_failed'").fetchall()
        for key, value in rows:
            name = key[: -len("_probe_failed")]
            retry = retry_s(name)
            failed = json.loads(value)
            if retry > 0 and 0 <= (age := now() - float(failed["at"])) < retry:
                why = (
                    f"{name} did not answer {age:.0f} s ago ({failed['why']}); not probed again for another "
                    f"{retry - age:.0f} s ({retry_env(name)})"
                )
                try:
                    skipped[name] = registry.backend_class(name).remembered(why)
                except Exception:  # a backend that is gone: nothing to skip
                    continue
                skipped[name].signals.append(why)
        return {**probe_engines(timeout, skip=set(skipped)), **skipped}

    def get(self) -> ClusterInfo:
        """The last detection with leases and the queue as they are now; detects if never done."""
        return self.last() or self.detect()

    def last(self) -> ClusterInfo | None:
        """The last detection with leases and the queue as they are now, or None (never probes).

        Read in plain SQL; the queue and the leases are only looked into (through the
        admission rules, which check their holders) when there are any."""
        with self.store.sql.snapshot() as conn:
            row = conn.execute("SELECT data FROM cluster_state WHERE key = ?", (ROW_KEY,)).fetchone()
            if row is None:
                return None
            (queued,) = conn.execute(
                "SELECT EXISTS (SELECT 1 FROM run_queue) OR EXISTS (SELECT 1 FROM gpu_leases)"
            ).fetchone()
        if not queued:
            return self._refresh(json.loads(row[0]), [], [])
        return self._refresh(json.loads(row[0]), *self._live())

    def _live(self) -> tuple[list[Any], list[Any]]:
        """Queue entries and leases whose holders live (``Admission.live_state`` without
        reclaiming), read in plain SQL: the rows as they are, the holders judged by the
        admission's own rule."""
        with self.store.sql.snapshot() as conn:
            entries = [
                SimpleNamespace(run_id=r[0], admitted_at=r[1], enqueued_at=r[2])
                for r in conn.execute("SELECT run_id, admitted_at, enqueued_at FROM run_queue ORDER BY seq")
            ]
            leases = [
                SimpleNamespace(gpu_uuid=r[0], gpu_index=r[1], run_id=r[2])
                for r in conn.execute("SELECT gpu_uuid, gpu_index, run_id FROM gpu_leases")
            ]
            ids = [e.run_id for e in entries]
            runs = {
                r[0]: SimpleNamespace(id=r[0], status=r[1], launched_at=r[2])
                for r in conn.execute(
                    f"SELECT id, status, launched_at FROM runs WHERE id IN ({', '.join('?' * len(ids))})", ids
                )
            }
        t = now()
        live = [e for e in entries if self.admission.holder_alive(e, runs.get(e.run_id), t)]  # type: ignore[arg-type]
        held = {e.run_id for e in live}
        return live, [lease for lease in leases if lease.run_id in held]

    def _refresh(self, data: dict[str, Any], live: list[Any], live_leases: list[Any]) -> ClusterInfo:
        info = ClusterInfo.model_validate(data)
        leases = {lease.gpu_uuid: lease.run_id for lease in live_leases}
        threshold = self.settings.gpu_free_memory_mib
        for g in info.gpus:
            g.leased_by = leases.get(g.uuid)
            foreign = [p for p in g.processes if p.run_id is None]
            g.free = g.leased_by is None and not foreign and g.memory_used_mib <= threshold
            if g.leased_by:
                g.busy_reason = f"GPU {g.index} leased by {g.leased_by}"
            elif g.free:
                g.busy_reason = None
        info.queued_runs = [e.run_id for e in live if e.admitted_at is None]
        if (pin := env_pin()) and pin != info.type:
            info.type, info.pinned_by_env = pin, True  # type: ignore[assignment]
        return info

    def current_type(self) -> str:
        """The type runs should use now: the env pin, else the persisted result, else detect once."""
        if pin := env_pin():
            return pin
        with self.store.read() as s:
            row = s.get(ClusterState, ROW_KEY)
        return row.type if row is not None else self.detect().type

    def facts(self) -> Facts:
        """What ``auto`` decides on: the type in use and the last detection's engine facts."""
        with self.store.read() as s:
            row = s.get(ClusterState, ROW_KEY)
        if row is None and env_pin() is None:
            info = self.detect()
            return Facts(info.type, info.backends)
        data = row.data if row is not None else {}
        kind = env_pin() or (row.type if row is not None else "cpu_only")
        return Facts(kind, data.get("backends") or {})
