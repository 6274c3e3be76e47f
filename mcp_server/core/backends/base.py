"""The interface every execution backend implements (after submitit's executors).

A backend is one module (or subpackage) that owns everything about its engine: its options
(validated when a run is created), whether it applies here and how well (``affinity``, which
``auto`` maximises), what ``detect_cluster`` reports of it (``probe``), how a run's launch
script is handed over (``submit``), how jobs are seen (``observe`` for many at once, a
``Watcher`` for a sidecar's frequent look at one), how they are stopped, and how their output
reaches the run dir (``sync``). Nothing outside the backend package knows an engine by name;
backends are found through the ``research_mcp.backends`` entry-point group
(``core.backends.registry``), so a plugin package adds one without touching this one.

Class-level members (options, affinity, probe, describe) must not import the engine's client:
``auto`` and ``detect_cluster`` ask every registered backend, and a server must stay light.
"""

from __future__ import annotations

import logging
import math
import threading
from abc import ABC, abstractmethod
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, ClassVar, Protocol

from mcp_server.core.errors import InvalidInput
from mcp_server.core.execution.jobfiles import JobFiles
from mcp_server.core.execution.run_status import Observation

if TYPE_CHECKING:
    from pydantic import BaseModel, ValidationError

    from mcp_server.core.paths import StateDir
    from mcp_server.core.settings import Settings
    from mcp_server.core.storage.store import Store

log = logging.getLogger("sidecar")

# Affinity levels (submitit's convention): auto picks the highest; below 1 it never picks.
UNAVAILABLE = -1
ON_REQUEST = 0  # works here, but only when asked for by name
AVAILABLE = 1
CLUSTER = 2  # a scheduler or cluster that answers: preferred over this machine
EXPLICIT = 3  # the user's environment names this engine (e.g. RAY_ADDRESS)


class RunLike(Protocol):
    """What backends read of a run: a store row, or the sidecar's lighter copy of it."""

    id: str
    name: str
    backend: str
    backend_ref: str | None
    workdir: str


@dataclass(frozen=True)
class Facts:
    """What ``auto`` decides on: the machine's cluster type and the last detection's backend facts."""

    cluster_type: str  # local_gpu, cpu_only, or a type a backend's probe claimed (slurm)
    backends: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)


@dataclass
class Probe:
    """What ``detect_cluster`` reports of one backend."""

    facts: dict[str, Any]  # shown under ``backends.<name>`` in the cluster state
    signals: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    # A cluster type this backend makes the machine (Slurm: "slurm"), with a confidence.
    claims_type: str | None = None
    confidence: float = 0.0
    # Why the engine did not answer, when asking again soon would cost the same wait (a
    # controller that is down): detections skip this probe for a while (``core.scheduling.cluster``).
    remember_failure: str | None = None


@dataclass(frozen=True)
class Plan:
    """How a run is admitted before its command starts (decided at create time)."""

    pool: str | None  # an admission pool of the local backend (gpu | cpu), None: no admission
    record: dict[str, Any]  # kept in run.options["gpuwrap"] (what gpuwrap decided, and why)


@dataclass(frozen=True)
class ScriptLines:
    """Trusted bash a backend adds to the run's launch script (see ``launch.render_launch_script``)."""

    pre: list[str] = field(default_factory=list)
    post: list[str] = field(default_factory=list)
    on_finish: list[str] = field(default_factory=list)


class BackendContext:
    """What a backend may use: the state dir, the settings, and the store (opened on first use,
    so a sidecar of a local run never loads SQLAlchemy)."""

    def __init__(self, state: StateDir, settings: Settings, store: Store | None = None) -> None:
        self.state = state
        self.settings = settings
        self._store = store
        self._lock = threading.Lock()

    @property
    def store(self) -> Store:
        with self._lock:
            if self._store is None:
                from mcp_server.core.storage.store import Store

                self._store = Store(self.state.db_path)
            return self._store

    def files(self, run_id: str) -> JobFiles:
        return JobFiles(self.state.run_dir(run_id))


def options_error(backend: str, err: ValidationError) -> InvalidInput:
    first = err.errors()[0]
    where = ".".join(str(p) for p in first.get("loc", ())) or "options"
    return InvalidInput(f"options.{where} for backend {backend!r}: {first.get('msg', 'invalid')}.")


class Backend(ABC):
    name: ClassVar[str]
    # One line for people: where runs go ("tmux windows on this machine").
    summary: ClassVar[str] = ""
    # Whether the launch script also prints the output (a tmux pane, a Ray job's log show it;
    # under Slurm it would only duplicate output.log into the scheduler's file).
    echo_output: ClassVar[bool] = True
    # The job's processes run on this host, so its process group can be checked and signalled
    # from here (and GPU processes told apart by session).
    local_processes: ClassVar[bool] = False
    # Each run gets a sidecar (metrics, alerts, prompt settling). A backend that runs jobs inside
    # the server's own process has nothing a separate watcher could look at.
    monitored: ClassVar[bool] = True
    # Submitting a run that may already have been submitted cannot start it twice (the
    # backend refuses a duplicate handle): recovery may resubmit a launch a killed server left.
    idempotent_submit: ClassVar[bool] = False

    def __init__(self, ctx: BackendContext) -> None:
        self.ctx = ctx

    # ---- class level: cheap, no engine client ------------------------------------------------

    @classmethod
    def affinity(cls, facts: Facts) -> int:
        """How well this backend fits here: UNAVAILABLE, ON_REQUEST, AVAILABLE, CLUSTER or EXPLICIT."""
        return ON_REQUEST

    @classmethod
    def probe(cls, timeout_s: float) -> Probe | None:
        """What detect_cluster reports of this engine (bounded by ``timeout_s``); None: nothing."""
        return None

    @classmethod
    def remembered(cls, why: str) -> Probe:
        """What detection reports while a recent failure of this probe is remembered."""
        return Probe({"answered": False}, warnings=[why])

    @classmethod
    def describe(cls, facts: Mapping[str, Any]) -> list[str]:
        """Markdown lines of this backend's facts for the experiment context and reports."""
        return []

    @classmethod
    def options_model(cls) -> type[BaseModel] | None:
        """The options a run may give this backend, as the tools advertise them (pydantic is
        imported here, not at module import: a sidecar loads backend modules too)."""
        return None

    @classmethod
    def validate_options(cls, raw: Mapping[str, Any] | None) -> dict[str, Any]:
        """Check a run's options for this backend before anything is written; returns what is kept."""
        from pydantic import ValidationError

        model = cls.options_model()
        if model is None:
            if raw:
                raise InvalidInput(f"backend {cls.name!r} takes no options; got {sorted(raw)}.")
            return {}
        try:
            value = model.model_validate(dict(raw or {}))
        except ValidationError as err:
            raise options_error(cls.name, err) from None
        return value.model_dump(exclude_none=True, exclude_defaults=True)

    @classmethod
    def options_of_run(cls, options: Mapping[str, Any]) -> dict[str, Any]:
        """The validated options a stored run was created with (kept under the backend's name)."""
        return dict(options.get(cls.name) or {})

    # ---- launching ---------------------------------------------------------------------------

    def plan(
        self,
        *,
        cluster_type: str,
        gpus: int,
        options: Mapping[str, Any],
        command: str,
        env: Mapping[str, str],
    ) -> Plan:
        """How the run is admitted (local runs: gpuwrap); other engines allocate GPUs themselves."""
        record: dict[str, Any] = {"enabled": False}
        if gpus:
            record["note"] = f"gpuwrap is for local runs; the {self.name} backend allocates GPUs itself"
        return Plan(None, record)

    def script_lines(self, run: Any, files: JobFiles, pool: str | None) -> ScriptLines:
        return ScriptLines()

    # Admission (only the local backend queues runs for GPU leases and run slots; see
    # ``core.backends.local_queue``): a ticket read before the launch transaction, the decision
    # inside it, then what follows the commit and the submit.

    def ticket(self, run: Any, pool: str | None) -> Any | None:
        return None

    def admit(self, session: Any, run: Any, ticket: Any) -> Any:
        raise NotImplementedError(f"the {self.name} backend admits no runs")

    def admitted(self, files: JobFiles, outcome: Any) -> None:
        """The run was admitted (its resources are held): e.g. write what its launch script sources."""
        return None

    def waiting(self, run_id: str) -> None:
        """The run was submitted to wait in the queue: e.g. make sure the dispatcher runs."""
        return None

    def planned_ref(self, run: Any) -> str | None:
        """The handle ``submit`` will return, when known beforehand (recorded with the launch)."""
        return None

    @abstractmethod
    def submit(self, run: Any, files: JobFiles) -> str:
        """Start the job for ``run`` (its launch script already written); return the backend's handle."""

    # ---- watching ----------------------------------------------------------------------------

    @abstractmethod
    def observe(self, runs: Sequence[Any], files: Mapping[str, JobFiles]) -> dict[str, Observation]:
        """Observe many runs with as few engine calls as possible (ideally one)."""

    def sync(self, run: RunLike, files: JobFiles) -> None:
        """Bring what the job wrote (output, metrics, exit code) into the run dir, where it is not
        already there (an engine whose workers do not share this filesystem)."""
        return None

    def watcher(self, files: JobFiles, check_s: float) -> Watcher:
        """A sidecar's frequent, cheap look at one run (see ``Watcher``)."""
        return Watcher(self, files, check_s)

    # ---- stopping ----------------------------------------------------------------------------

    @abstractmethod
    def stop(self, run: Any, files: JobFiles, grace_s: float) -> None:
        """Ask the job to end; escalate after ``grace_s``. Returns once it is gone or signalled."""


def observe_files(files: JobFiles, present: bool | None, detail: str = "") -> Observation:
    """What the run dir says; shared by backends whose jobs write the usual files."""
    code, problem = files.exit_code_or_problem()
    return Observation(
        present=present,
        started_at=files.started_at(),
        exit_code=code,
        ended_at=files.ended_at() if code is not None else None,
        detail=detail,
        # Written before exit_code, so whoever sees the code also sees why.
        failure=files.read_failure() if code else None,
        bad_exit_code=problem,
        leftovers=files.read_leftovers() if code is not None else None,
        stop_note=files.read_stop_note(),
    )


class Watcher:
    """How a sidecar looks at its run every poll: the run dir first, the engine rarely.

    The default suits engines whose jobs run elsewhere: an exit code in the run dir settles the
    run; otherwise the engine is asked at most every ``check_s`` (is the job still queued, did it
    vanish?). Backends refine it (the local one checks the job's process group on every poll).
    """

    def __init__(self, backend: Backend, files: JobFiles, check_s: float) -> None:
        self.backend = backend
        self.files = files
        self.check_s = check_s
        self.asked_at = -math.inf

    def ask(
        self, run: RunLike, t: float, every: float | None = None, fallback: Observation | None = None
    ) -> Observation | None:
        """The engine's word, at most once per ``every`` seconds; ``fallback`` when it cannot answer."""
        if t - self.asked_at < (self.check_s if every is None else every):
            return None
        self.asked_at = t
        try:
            self.backend.sync(run, self.files)
            return self.backend.observe([run], {run.id: self.files}).get(run.id)
        except Exception as err:  # the engine is unreachable: keep watching, decide later
            log.warning("could not ask the %s backend about %s: %s", run.backend, run.id, err)
            return fallback

    def look(self, run: RunLike, t: float) -> Observation | None:
        """What the run's files (and, rarely, its engine) say now; None when nothing new."""
        if self.files.exit_code.exists():
            obs = observe_files(self.files, present=None)  # with the launch script's failure note
            if obs.exit_code is not None:
                return obs
        return self.ask(run, t)

    def command_running(self, run: RunLike) -> bool:
        """Whether silence now counts toward a stall (the command may run where we cannot see)."""
        return True

    def job_session(self) -> int | None:
        """The job's session id on this host (tells its framework log files apart), if known."""
        return None


Factory = Callable[[BackendContext], Backend]
