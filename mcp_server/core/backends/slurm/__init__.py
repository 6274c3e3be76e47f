"""Slurm backend: the run's launch script becomes an sbatch job.

This module is what the registry loads (``auto``, ``detect_cluster`` and the tools' schema
ask every backend), so it stays light: the scheduler's machinery (``scheduler``: sbatch, the
shared squeue poll, sacct, scancel; it needs the store) loads with the first run that uses it.
pyslurm does not build against the Slurm this targets, so the CLI is the API.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

from mcp_server.core.backends.base import (
    CLUSTER,
    UNAVAILABLE,
    Backend,
    BackendContext,
    Facts,
    Probe,
    Watcher,
    observe_files,
)
from mcp_server.core.backends.slurm import probe as slurm_probe
from mcp_server.core.backends.slurm.options import options_model, validate_slurm_options
from mcp_server.core.execution.jobfiles import JobFiles
from mcp_server.core.execution.run_status import Observation

if TYPE_CHECKING:
    from pydantic import BaseModel

    from mcp_server.core.backends.slurm.scheduler import SlurmScheduler

__all__ = ["SlurmBackend", "validate_slurm_options"]

# How often a sidecar asks the scheduler why a command was killed by a signal.
SIGNAL_EXIT_CHECK_S = 1.0


class SlurmWatcher(Watcher):
    """A command killed by a signal may have been killed by the scheduler (a TIMEOUT, an
    OUT_OF_MEMORY): only Slurm can tell, and the run's reason then names it."""

    def look(self, run: Any, t: float) -> Observation | None:
        if self.files.exit_code.exists():
            obs = observe_files(self.files, present=None)
            if obs.exit_code is not None:
                if obs.exit_code > 128:
                    return self.ask(run, t, every=SIGNAL_EXIT_CHECK_S, fallback=obs)
                return obs
        return self.ask(run, t)


class SlurmBackend(Backend):
    name = "slurm"
    summary = "an sbatch job per run on the Slurm cluster"
    echo_output = False

    def __init__(self, ctx: BackendContext) -> None:
        super().__init__(ctx)
        self._scheduler: SlurmScheduler | None = None

    @property
    def scheduler(self) -> SlurmScheduler:
        if self._scheduler is None:
            from mcp_server.core.backends.slurm.scheduler import SlurmScheduler, SlurmSettings

            self._scheduler = SlurmScheduler(self.ctx.store, SlurmSettings.from_env())
        return self._scheduler

    # ---- class level -------------------------------------------------------------------------

    @classmethod
    def affinity(cls, facts: Facts) -> int:
        return CLUSTER if facts.cluster_type == "slurm" else UNAVAILABLE

    @classmethod
    def probe(cls, timeout_s: float) -> Probe:
        found = slurm_probe.probe_slurm(timeout_s)
        confidence = 0.95 if found.controller == "UP" and found.partitions else 0.8
        # A controller that is down holds every probe for its timeout: remembered (see
        # ``core.scheduling.cluster``), unless Slurm's commands are simply not here.
        no_commands = any(line.startswith("Slurm commands") for line in found.signals)
        down = "the controller is DOWN" if found.controller == "DOWN" else "no partition listed"
        return Probe(
            facts=slurm_probe.facts_of(found),
            signals=found.signals,
            warnings=[found.error] if found.error else [],
            claims_type="slurm" if found.can_submit else None,
            confidence=confidence if found.can_submit else 0.0,
            remember_failure=None if found.answered or no_commands else (found.error or down),
        )

    @classmethod
    def remembered(cls, why: str) -> Probe:
        return Probe(
            facts=slurm_probe.facts_of(slurm_probe.SlurmProbe(env=slurm_probe.slurm_env())), warnings=[why]
        )

    @classmethod
    def describe(cls, facts: Mapping[str, Any]) -> list[str]:
        return slurm_probe.describe(facts)

    @classmethod
    def options_model(cls) -> type[BaseModel]:
        return options_model()

    @classmethod
    def validate_options(cls, raw: Mapping[str, Any] | None) -> dict[str, Any]:
        return validate_slurm_options(raw)

    # ---- runs --------------------------------------------------------------------------------

    def sbatch_argv(self, run: Any, files: JobFiles) -> list[str]:
        return self.scheduler.sbatch_argv(run, files)

    def submit(self, run: Any, files: JobFiles) -> str:
        return self.scheduler.submit(run, files)

    def observe(self, runs: Sequence[Any], files: Mapping[str, JobFiles]) -> dict[str, Observation]:
        return self.scheduler.observe(runs, files)

    def watcher(self, files: JobFiles, check_s: float) -> Watcher:
        return SlurmWatcher(self, files, check_s)

    def stop(self, run: Any, files: JobFiles, grace_s: float) -> None:
        self.scheduler.stop(run, files, grace_s)
