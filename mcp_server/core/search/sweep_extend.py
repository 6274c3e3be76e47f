"""extend_sweep: more configurations, a larger run budget, or more GPU-hours / hours.

Configurations become runs of the sweep that wait for its ``parallel`` cap like the others
(for a TPE sweep they are trials too: the study is told their results like any asked
trial). A larger ``max_runs`` lets a TPE sweep ask for more; a larger budget lets a paused
sweep launch its held-back runs again. Everything is checked before anything is written.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

from sqlalchemy import update
from sqlmodel import col, select

from mcp_server.core.errors import InvalidInput
from mcp_server.core.execution.runs import _validate_command
from mcp_server.core.search.adaptive import claim_trial, next_number, sweep_env
from mcp_server.core.search.sweep_create import start_all
from mcp_server.core.search.sweep_search import validate_budget
from mcp_server.core.search.sweep_space import MAX_SWEEP_RUNS, render_command, validate_space
from mcp_server.core.storage.models import Sweep
from mcp_server.core.storage.store import now
from mcp_server.core.workflow.workflow_views import SweepDetail

if TYPE_CHECKING:
    from mcp_server.core.search.sweeps import SweepService

MAX_CLAIM_TRIES = 32


def _check_configs(sweep: Sweep, configs: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
    out = []
    for i, config in enumerate(configs):
        if not isinstance(config, Mapping) or not config:
            raise InvalidInput(f"configs[{i}] must be an object of parameter name → value.")
        # Each value is checked as a one-value list of the space's kind: scalars, valid names.
        validate_space({k: [v] for k, v in config.items()}, "grid")
        if sweep.method == "tpe":
            for name, value in config.items():
                spec = sweep.parameters.get(name)
                fits = (
                    value in spec
                    if isinstance(spec, list)
                    else spec is not None
                    and isinstance(value, int | float)
                    and spec["min"] <= value <= spec["max"]
                )
                if not fits:
                    raise InvalidInput(
                        f"configs[{i}]: {name}={value!r} is outside the sweep's space ({spec!r}); a TPE "
                        "sweep can only be told configurations from its space."
                    )
            if set(config) != set(sweep.parameters):
                raise InvalidInput(
                    f"configs[{i}] must set every parameter of the space: {sorted(sweep.parameters)}."
                )
        out.append(dict(config))
    return out


def extend(
    service: SweepService,
    sweep_id: str,
    *,
    configs: Sequence[Mapping[str, Any]] | None = None,
    max_runs: int | None = None,
    budget: Mapping[str, Any] | None = None,
) -> SweepDetail:
    sweep = service.load(sweep_id)
    if not configs and max_runs is None and not budget:
        raise InvalidInput("give configs, max_runs or budget: what to add to the sweep.")
    new = _check_configs(sweep, configs or [])
    if new and not sweep.base_command:
        raise InvalidInput("this sweep has no base_command; add runs to it with create_run(sweep_id=…).")
    for config in new:
        _validate_command(render_command(sweep.base_command or "", config))
    count = len(service.runs_of(sweep_id))
    needed = count + len(new)
    limit = max(max_runs or 0, sweep.max_runs or 0, needed)
    if max_runs is not None and max_runs < needed:
        raise InvalidInput(
            f"max_runs={max_runs} is below the {needed} runs the sweep would have; give at least that."
        )
    if limit > MAX_SWEEP_RUNS:
        raise InvalidInput(f"the sweep would have {limit} runs; the limit is {MAX_SWEEP_RUNS}.")
    clean_budget = validate_budget(budget)
    with service.store.write() as s:
        search = dict(s.exec(select(Sweep.search).where(Sweep.id == sweep_id)).first() or {})
        search.pop("stopped", None)  # a stopped adaptive sweep asks again for what was added
        if clean_budget:
            search["budget"] = {**search.get("budget", {}), **clean_budget}
        s.execute(
            update(Sweep)
            .where(col(Sweep.id) == sweep_id)
            .values(
                max_runs=limit if (max_runs is not None or new) else sweep.max_runs,
                search=search,
                updated_at=now(),
            )
        )
    sweep = service.load(sweep_id)
    service._write_spec(sweep)  # doctor --repair rebuilds the sweep as extended
    if sweep.method == "tpe":
        for config in new:
            for _ in range(MAX_CLAIM_TRIES):  # another process may take the number first
                if claim_trial(service, sweep, config, next_number(service, sweep_id), check_slot=False):
                    break
    elif new:
        env = sweep_env(service, sweep_id)
        width = max(2, len(str(needed)))
        created = []
        for i, config in enumerate(new, start=count + 1):
            detail = service.runs.create(
                name=f"{sweep.name[: 63 - width]}-{i:0{width}d}",
                command=render_command(sweep.base_command or "", config),
                workdir=sweep.workdir,
                sweep_id=sweep_id,
                gpus=sweep.gpus_per_run,
                env=env,
                auto_start=False,
                params=config,
                backend=search.get("backend") or service.runs.resolve_backend(sweep.backend),
                options=search.get("options"),
            )
            created.append(service.runs.load(detail.id))
        start_all(service, sweep, created)
    service.fill(sweep_id)
    return service.get(sweep_id)
