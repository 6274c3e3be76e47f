"""create_sweep: validate everything, then write the sweep and its runs (or, for a preview,
nothing at all).

Grid and random sweeps are expanded into one run per configuration up front; a TPE sweep
only records its space and asks for its first ``parallel`` configurations through the same
``fill`` that later asks whenever a slot frees (``core.search.adaptive``). The sweep's env values
are kept in ``sweeps/<id>/env.sh`` (mode 0600) for runs created after the call.
"""

from __future__ import annotations

import secrets
import shutil
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from mcp_server.core.errors import InvalidInput, ResearchError
from mcp_server.core.execution.jobfiles import JobFiles
from mcp_server.core.execution.launch import write_env
from mcp_server.core.execution.runs import (
    MAX_GPUS,
    _validate_command,
    _validate_env,
    _validate_workdir,
)
from mcp_server.core.ids import new_id, validate_name
from mcp_server.core.search.sweep_search import validate_search
from mcp_server.core.search.sweep_space import MAX_SWEEP_RUNS, expand, render_command, validate_space
from mcp_server.core.storage.models import Run, Sweep
from mcp_server.core.storage.store import now
from mcp_server.core.workflow.workflow_views import SweepDetail

if TYPE_CHECKING:
    from mcp_server.core.search.sweeps import SweepService

MAX_GOAL_CHARS = 4000
MAX_PARALLEL = 256


@dataclass
class SweepSpec:
    """A create_sweep call, validated: what create writes and preview describes."""

    name: str
    goal: str
    base_command: str | None
    space: dict[str, Any]
    method: str
    max_runs: int | None
    seed: int | None
    parallel: int | None
    gpus_per_run: int
    backend: str
    chosen_backend: str
    workdir: str
    env: dict[str, str]
    options: dict[str, Any]  # for chosen_backend, validated
    search: dict[str, Any]
    configs: list[dict[str, Any]] = field(default_factory=list)
    commands: list[str] = field(default_factory=list)

    def run_names(self) -> list[str]:
        width = max(2, len(str(len(self.configs))))
        return [f"{self.name[: 63 - width]}-{i:0{width}d}" for i in range(1, len(self.configs) + 1)]


def validate(
    service: SweepService,
    *,
    name: str,
    goal: str,
    base_command: str | None = None,
    parameters: Mapping[str, Any] | None = None,
    method: str = "grid",
    max_runs: int | None = None,
    seed: int | None = None,
    parallel: int | None = None,
    gpus_per_run: int = 0,
    backend: str = "auto",
    workdir: str | None = None,
    env: Mapping[str, str] | None = None,
    auto_start: bool = True,
    options: Mapping[str, Any] | None = None,
    metric: str | None = None,
    direction: str = "min",
    pruner: str = "none",
    budget: Mapping[str, Any] | None = None,
) -> SweepSpec:
    validate_name(name, "sweep name")
    if not isinstance(goal, str) or not goal.strip() or len(goal) > MAX_GOAL_CHARS:
        raise InvalidInput(
            f"goal must say in 1-{MAX_GOAL_CHARS} characters what the sweep should find out, "
            "e.g. 'which lr converges fastest for the small model'."
        )
    space = validate_space(parameters, method)
    if max_runs is not None and not 1 <= max_runs <= MAX_SWEEP_RUNS:
        raise InvalidInput(f"max_runs={max_runs} is out of range; give 1 to {MAX_SWEEP_RUNS}.")
    if parallel is not None and not 1 <= parallel <= MAX_PARALLEL:
        raise InvalidInput(
            f"parallel={parallel} is out of range; give 1 to {MAX_PARALLEL}, or leave it out for no cap."
        )
    if not 0 <= gpus_per_run <= MAX_GPUS:
        raise InvalidInput(f"gpus_per_run={gpus_per_run} is out of range; give 0 to {MAX_GPUS}.")
    if seed is not None and not 0 <= seed < 2**63:
        raise InvalidInput(f"seed={seed} is out of range; give 0 to 2**63-1.")
    if space and not base_command:
        raise InvalidInput(
            "parameters need base_command, the command their values go into, e.g. "
            "'python train.py --lr {lr}'; values without a {name} placeholder are appended as "
            "--name=value."
        )
    search = validate_search(
        method=method,
        space=space,
        metric=metric,
        direction=direction,
        pruner=pruner,
        budget=budget,
        max_runs=max_runs,
        parallel=parallel,
        auto_start=auto_start,
    )
    if base_command is not None:
        _validate_command(base_command)
    wd = _validate_workdir(workdir)
    clean_env = _validate_env(env)
    # Checked once here, so a bad option refuses the sweep before anything is written.
    chosen_backend, kept = service.runs.backend_options(backend, options)
    if method in ("random", "tpe") and space and seed is None:
        seed = secrets.randbelow(2**31)  # recorded, so the sweep can be reproduced
    configs = expand(space, method, max_runs, seed)
    commands = [render_command(base_command or "", values) for values in configs]
    for command in commands:
        _validate_command(command)
    search["backend"] = chosen_backend
    if kept:
        search["options"] = kept  # for runs created later (adaptive asks, extend_sweep)
    return SweepSpec(
        name=name,
        goal=goal.strip(),
        base_command=base_command,
        space=space,
        method=method,
        max_runs=max_runs if max_runs is not None else (len(configs) or None),
        seed=seed,
        parallel=parallel,
        gpus_per_run=gpus_per_run,
        backend=backend,
        chosen_backend=chosen_backend,
        workdir=wd,
        env=clean_env,
        options=kept,
        search=search,
        configs=configs,
        commands=commands,
    )


def create(service: SweepService, spec: SweepSpec, auto_start: bool) -> SweepDetail:
    t = now()
    sweep = Sweep(
        id=new_id("sweep"),
        name=spec.name,
        goal=spec.goal,
        base_command=spec.base_command,
        parameters=spec.space,
        method=spec.method,
        max_runs=spec.max_runs,
        seed=spec.seed,
        parallel=spec.parallel,
        gpus_per_run=spec.gpus_per_run,
        backend=spec.backend,
        workdir=spec.workdir,
        search=spec.search,
        created_at=t,
        updated_at=t,
    )
    # Every run is validated and staged before anything is committed; then the sweep and
    # all its runs are one transaction: a refusal or a kill -9 leaves nothing, or all of it.
    staged: list[tuple[Run, Path]] = []
    try:
        for run_name, command, values in zip(spec.run_names(), spec.commands, spec.configs, strict=True):
            fields, _env = service.runs.prepare(
                name=run_name, command=command, workdir=spec.workdir, sweep_id=sweep.id,
                gpus=spec.gpus_per_run, env=spec.env, params=values, backend=spec.chosen_backend,
                options=spec.options, new_sweep=True, checked=True,
            )  # fmt: skip
            run = service.runs.new_run(fields)
            path = service.runs.stage(run, lambda f: write_env(f, spec.env), auto_start=auto_start)
            staged.append((run, path))
    except BaseException:
        for _run, path in staged:
            shutil.rmtree(path, ignore_errors=True)
        raise
    # The sweep's env values, for runs created after this call (adaptive asks, extend_sweep).
    env_dir = service.state.sweep_dir(sweep.id)
    spec_path = service._write_spec(sweep)
    try:
        env_dir.mkdir(mode=0o700, parents=True)
        write_env(JobFiles(env_dir), spec.env)
        service.runs.commit(staged, before=lambda s: s.add(sweep))
    except BaseException:
        spec_path.unlink(missing_ok=True)
        shutil.rmtree(env_dir, ignore_errors=True)
        raise
    created = [service.runs.load(run.id) for run, _path in staged]
    if auto_start and created:
        start_all(service, sweep, created)
    elif auto_start and spec.method == "tpe":
        service.fill(sweep.id)
    return service.get(sweep.id, metric=spec.search.get("metric"), direction=spec.search["direction"])


def start_all(service: SweepService, sweep: Sweep, runs: list[Run]) -> None:
    """Start new runs of a sweep: through its parallel cap, or all at once without one."""
    if sweep.parallel is not None:
        service._enqueue(sweep, runs)
        service.fill(sweep.id)
        return
    for run in runs:
        try:
            service.runs.launch(run)
        except ResearchError as err:
            service._refused(run.id, err)
