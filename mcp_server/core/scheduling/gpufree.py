"""What makes a GPU free: no lease, no foreign process, memory use under a threshold.

A process is ours when it runs in the session of one of our active runs: every job is
its own session leader (``setsid`` in the launch script) and records that id in its
``pgid`` file, so ``getsid(pid)`` names the run. Ours excuses a process only on a GPU
its run has leased: a run that picked its GPUs itself (gpuwrap off) holds no lease, and
excusing it would lease its GPU to the next run. Anything else on a GPU is foreign — a
colleague's job, a notebook, a process from another container whose pid we cannot
even see, or one of our runs off its lease — and makes the GPU busy. Admission
(``core.scheduling.admission``) and the cluster view (``core.scheduling.cluster``) both use ``assess`` so what
the user is shown is what the queue does.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from sqlmodel import Session, col, select

from mcp_server.core.backends import registry
from mcp_server.core.execution.jobfiles import JobFiles
from mcp_server.core.execution.run_status import ACTIVE
from mcp_server.core.paths import StateDir
from mcp_server.core.scheduling.nvml import NvmlGpu
from mcp_server.core.scheduling.procs import session_of, user_of
from mcp_server.core.storage.models import Run


@dataclass(frozen=True)
class ProcessFact:
    pid: int
    user: str | None
    used_memory_mib: float | None
    kind: str
    run_id: str | None  # the run that holds this GPU's lease and owns the process; None = foreign
    owner: str | None = None  # the run of ours it belongs to, leased here or not


@dataclass(frozen=True)
class GpuState:
    gpu: NvmlGpu
    processes: tuple[ProcessFact, ...]
    leased_by: str | None
    memory_threshold_mib: float

    @property
    def foreign(self) -> list[ProcessFact]:
        return [p for p in self.processes if p.run_id is None]

    @property
    def over_memory(self) -> bool:
        return self.gpu.memory_used_mib > self.memory_threshold_mib

    @property
    def free(self) -> bool:
        return self.leased_by is None and not self.foreign and not self.over_memory

    def busy_reason(self) -> str | None:
        """Why the GPU cannot be leased, naming who holds it; None when it is free."""
        g = self.gpu
        if self.leased_by is not None:
            return f"GPU {g.index} leased by {self.leased_by}"
        if foreign := self.foreign:
            who = ", ".join(_who(p) for p in foreign[:3])
            more = f" and {len(foreign) - 3} more" if len(foreign) > 3 else ""
            return f"GPU {g.index} used by {who}{more}"
        if self.over_memory:
            return (
                f"GPU {g.index} has {g.memory_used_mib:.0f} of {g.memory_total_mib:.0f} MiB in use "
                f"(free means under {self.memory_threshold_mib:.0f} MiB)"
            )
        return None


def _who(p: ProcessFact) -> str:
    if p.owner is not None:
        return f"run {p.owner} without a lease (pid {p.pid})"
    return f"pid {p.pid} ({p.user or 'unknown user'})"


def own_sessions(session: Session, state: StateDir) -> dict[int, str]:
    """Session id → run id for every active local run whose command has started."""
    ids = session.exec(
        select(Run.id).where(
            col(Run.status).in_([s.value for s in ACTIVE]),
            col(Run.backend).in_(registry.names_where("local_processes")),
        )
    ).all()
    out: dict[int, str] = {}
    for run_id in ids:
        pgid = JobFiles(state.run_dir(run_id)).read_pgid()
        if pgid is not None:
            out[pgid] = run_id
    return out


def assess(
    gpus: Iterable[NvmlGpu],
    leases: Mapping[str, str],
    sessions: Mapping[int, str],
    memory_threshold_mib: float,
) -> list[GpuState]:
    """``leases`` maps GPU uuid → run id; ``sessions`` maps session id → run id (ours)."""
    states = []
    for gpu in gpus:
        holder = leases.get(gpu.uuid)
        facts = []
        for p in gpu.processes:
            sid = session_of(p.pid)
            owner = sessions.get(sid) if sid else None
            excused = owner if owner is not None and owner == holder else None
            facts.append(ProcessFact(p.pid, user_of(p.pid), p.used_memory_mib, p.kind, excused, owner))
        states.append(GpuState(gpu, tuple(facts), holder, memory_threshold_mib))
    return states
