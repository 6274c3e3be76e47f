"""Sweep tools: thin wrappers over ``SweepService``."""

from typing import Annotated, Any, Literal

from mcp.server.mcpserver import MCPServer
from mcp_types import ToolAnnotations
from pydantic import Field

from mcp_server.app import App, tool_errors
from mcp_server.core.workflow_views import SweepDetail
from mcp_server.tools import MAX_INT
from mcp_server.tools.runs import SlurmOptions

ParamValues = list[str | int | float | bool] | dict[str, Any]


def register(mcp: MCPServer, app: App) -> None:
    @mcp.tool(
        title="Create a sweep",
        annotations=ToolAnnotations(
            read_only_hint=False, destructive_hint=False, idempotent_hint=False, open_world_hint=False
        ),
    )
    @tool_errors
    def create_sweep(
        name: Annotated[str, Field(description="short label: letters, digits, '.', '_', '-' (max 64)")],
        goal: Annotated[str, Field(description="what the sweep should find out, in a sentence")],
        base_command: Annotated[
            str | None,
            Field(
                description="command each run executes; a value fills its {name} placeholder "
                "(e.g. 'python train.py --lr {lr}'), values without one are appended as --name=value"
            ),
        ] = None,
        parameters: Annotated[
            dict[str, ParamValues] | None,
            Field(
                description="name -> list of values (grid or random), or for random also a range "
                '{"min": 0, "max": 1} or log-range {"min": 1e-5, "max": 1e-2, "log": true}; '
                "integer bounds sample integers. Leave out for an empty sweep that "
                "create_run(sweep_id=...) fills"
            ),
        ] = None,
        method: Annotated[
            Literal["grid", "random"],
            Field(description="grid: every combination; random: max_runs samples from a seeded RNG"),
        ] = "grid",
        max_runs: Annotated[
            int | None,
            Field(
                description="grid: upper bound on the grid size; random: samples to draw; also caps "
                "runs added later",
                ge=1,
                le=1000,
            ),
        ] = None,
        seed: Annotated[
            int | None,
            Field(description="random sweeps: RNG seed; the same seed gives the same runs", ge=0, le=MAX_INT),
        ] = None,
        parallel: Annotated[
            int | None,
            Field(
                description="at most this many runs of the sweep active at once; the rest wait in "
                "status 'queued' and start as others end. Default: no cap",
                ge=1,
                le=256,
            ),
        ] = None,
        gpus_per_run: Annotated[
            int, Field(description="GPUs each run needs (0 for CPU)", ge=0, le=64, strict=True)
        ] = 0,
        backend: Annotated[
            Literal["auto", "local", "slurm"], Field(description="where runs execute (as in create_run)")
        ] = "auto",
        workdir: Annotated[
            str | None, Field(description="directory runs start in; default: the server's working directory")
        ] = None,
        env: Annotated[
            dict[str, str] | None,
            Field(description="extra environment variables for every run (values private)"),
        ] = None,
        auto_start: Annotated[
            bool, Field(description="launch the runs now (true) or leave them 'ready' for start_run")
        ] = True,
        slurm: Annotated[
            SlurmOptions | None,
            Field(description="scheduler options for every run on Slurm (as in create_run)"),
        ] = None,
    ) -> SweepDetail:
        """Create a named sweep and launch one run per configuration of its parameter space.

        Each run records its values as params and gets its own command. Use a small smoke
        run first, then the sweep; follow it with wait_for_events and get_sweep.
        """
        return app.services().sweeps.create(
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
            slurm=slurm.model_dump(exclude_none=True, exclude_defaults=True) if slurm else None,
        )

    @mcp.tool(
        title="Get a sweep",
        annotations=ToolAnnotations(
            read_only_hint=True, destructive_hint=False, idempotent_hint=True, open_world_hint=False
        ),
    )
    @tool_errors
    def get_sweep(
        sweep_id: Annotated[str, Field(description="a sweep id as returned by create_sweep")],
        metric: Annotated[
            str | None, Field(description="rank runs by this logged metric, e.g. 'val_loss'", max_length=128)
        ] = None,
        direction: Annotated[
            Literal["min", "max"], Field(description="whether lower or higher metric values are better")
        ] = "min",
    ) -> SweepDetail:
        """A sweep's status and progress (derived from its runs), its runs, and the best run by a metric."""
        return app.services().sweeps.get(sweep_id, metric=metric, direction=direction)
