"""Sweep tools: thin wrappers over ``SweepService``."""

from typing import Annotated, Any, Literal

from mcp.server.mcpserver import MCPServer
from pydantic import Field

from mcp_server.app import App
from mcp_server.core.workflow.workflow_views import PAGED, SweepDetail, SweepStopped
from mcp_server.tools import MAX_INT
from mcp_server.tools.apps import CHART_META
from mcp_server.tools.backend_options import BackendName
from mcp_server.tools.runs import CREATES, READ_ONLY, STOPS
from mcp_server.tools.surface import answer, fitting

ParamValues = list[str | int | float | bool] | dict[str, Any]
# get_sweep's first page of runs, and the bytes its rows may take (the rest of the answer is
# the sweep's own fields and its best run); the rest page with offset.
DEFAULT_RUN_ROWS = 20
SWEEP_ROWS_BUDGET = 4 * 1024


def page_of(detail: SweepDetail, offset: int, limit: int) -> SweepDetail:
    """A default-size page of a sweep's runs, cut to SWEEP_ROWS_BUDGET; the note says how to page."""
    n = fitting(detail.runs, SWEEP_ROWS_BUDGET, limit=limit, default=DEFAULT_RUN_ROWS)
    if n < len(detail.runs):
        detail.runs, detail.next_offset = detail.runs[:n], offset + n
    paged = PAGED.format(total=detail.progress.total)
    if detail.next_offset is not None and paged not in detail.note:
        detail.note = "; ".join(x for x in (detail.note, paged) if x)
    return detail


# {"gpu_hours": …, "hours": …}: checked by core.search.sweep_search (the listing stays short).
Budget = dict[str, float]


def register(mcp: MCPServer, app: App) -> None:
    @mcp.tool(annotations=CREATES)
    @answer
    def create_sweep(
        name: Annotated[str, Field(description="letters, digits, ._- (max 64)")],
        goal: str,
        base_command: Annotated[
            str | None, Field(description="{lr} takes lr's value, else --lr=value is appended")
        ] = None,
        parameters: Annotated[
            dict[str, ParamValues] | None,
            Field(description='name → values; random, tpe: also {"min":a,"max":b[,"log":true]}'),
        ] = None,
        method: Annotated[
            Literal["grid", "random", "tpe"],
            Field(description="random: seeded draws; tpe: adaptive"),
        ] = "grid",
        max_runs: Annotated[int | None, Field(ge=1, le=1000)] = None,
        seed: Annotated[int | None, Field(ge=0, le=MAX_INT)] = None,
        parallel: Annotated[
            int | None, Field(description="runs active at once; default: all", ge=1, le=256)
        ] = None,
        gpus_per_run: Annotated[int, Field(ge=0, le=64, strict=True)] = 0,
        backend: BackendName = "auto",
        workdir: str | None = None,
        env: Annotated[dict[str, str] | None, Field(description="values kept private")] = None,
        auto_start: bool = True,
        options: Annotated[dict[str, Any] | None, Field(description="create_run's, for every run")] = None,
        metric: Annotated[str | None, Field(max_length=128)] = None,
        direction: Literal["min", "max"] = "min",
        pruner: Literal["none", "median", "halving"] = "none",
        budget: Annotated[Budget | None, Field(description="gpu_hours, hours")] = None,
        preview: bool = False,
    ) -> SweepDetail:
        """A run per configuration of parameters, recorded as params. preview: what would run and
        its cost, creating nothing."""
        detail = app.services().sweeps.create(
            name=name,
            goal=goal,
            base_command=base_command,
            parameters=parameters,
            method=method,
            max_runs=max_runs,
            seed=seed,
            parallel=parallel,
            gpus_per_run=gpus_per_run,
            backend=backend,
            workdir=workdir,
            env=env,
            auto_start=auto_start,
            options=options,
            metric=metric,
            direction=direction,
            pruner=pruner,
            budget=budget,
            preview=preview,
        )
        if len(detail.runs) > DEFAULT_RUN_ROWS:  # the first page, as get_sweep would answer
            detail.runs, detail.next_offset = detail.runs[:DEFAULT_RUN_ROWS], DEFAULT_RUN_ROWS
        return page_of(detail, 0, DEFAULT_RUN_ROWS)

    @mcp.tool(annotations=READ_ONLY, meta=CHART_META)
    @answer
    def get_sweep(
        sweep_id: str,
        metric: Annotated[
            str | None, Field(description="rank runs by it, e.g. val_loss", max_length=128)
        ] = None,
        direction: Literal["min", "max"] = "min",
        limit: Annotated[int, Field(ge=1, le=200)] = DEFAULT_RUN_ROWS,
        offset: Annotated[int, Field(ge=0, le=MAX_INT)] = 0,
    ) -> SweepDetail:
        """A sweep's status, progress, a page of its runs and the best run by metric."""
        detail = app.services().sweeps.get(
            sweep_id, metric=metric, direction=direction, offset=offset, limit=limit
        )
        return page_of(detail, offset, limit)

    @mcp.tool(annotations=CREATES)
    @answer
    def extend_sweep(
        sweep_id: str,
        configs: list[dict[str, Any]] | None = None,
        max_runs: Annotated[int | None, Field(ge=1, le=1000)] = None,
        budget: Budget | None = None,
    ) -> SweepDetail:
        """Add configurations, runs (max_runs) or budget to a sweep."""
        detail = app.services().sweeps.extend(sweep_id, configs=configs, max_runs=max_runs, budget=budget)
        return page_of(detail, 0, DEFAULT_RUN_ROWS)

    @mcp.tool(annotations=STOPS)
    @answer
    def stop_sweep(sweep_id: str) -> SweepStopped:
        """Cancel a sweep: unlaunched runs never start, active runs are stopped."""
        return app.services().sweeps.stop(sweep_id)
