"""Run tools: thin wrappers over ``RunService``."""

from typing import Annotated, Any, Literal

from mcp.server.mcpserver import MCPServer
from mcp_types import ToolAnnotations
from pydantic import BaseModel, ConfigDict, Field

from mcp_server.app import App, tool_errors
from mcp_server.core.views import LogChunk, RunDetail, RunPage, RunRecord
from mcp_server.tools import MAX_INT

RunId = Annotated[
    str,
    Field(description="a run id as returned by create_run or list_runs, e.g. run-20260101-120000-1a2b3c4d"),
]


class GpuwrapInput(BaseModel):
    """How a local run gets its GPUs (ignored for Slurm, which allocates GPUs itself)."""

    model_config = ConfigDict(extra="forbid")

    enabled: bool | None = Field(
        None,
        description="lease free GPUs and set CUDA_VISIBLE_DEVICES to them; "
        "null (default): on for local_gpu machines when gpus ≥ 1",
    )
    retries: int | None = Field(
        None,
        ge=0,
        le=1_000_000,
        description="how many more tries (one retry_delay_seconds apart) to get GPUs, also used up by "
        "GPU-contention failures; null (default): wait as long as it takes",
    )
    retry_delay_seconds: float = Field(
        10.0, gt=0, le=86400, description="seconds between tries, and the back-off after GPU contention"
    )


class SlurmOptions(BaseModel):
    """Scheduler options for backend 'slurm' (gpus becomes --gres=gpu:N)."""

    model_config = ConfigDict(extra="forbid")

    partition: str | None = Field(None, description="partition (sbatch --partition)")
    time: str | None = Field(None, description="time limit: minutes, 'HH:MM:SS' or 'D-HH:MM:SS'")
    account: str | None = Field(None, description="account to charge")
    qos: str | None = Field(None, description="quality of service")
    cpus_per_task: int | None = Field(None, ge=1, le=4096, description="CPUs per task")
    mem: str | None = Field(None, description="memory per node, e.g. '32G'")
    extra_args: list[str] = Field(
        default_factory=list, description="more sbatch flags, each '--flag' or '--flag=value'"
    )


READ_ONLY = ToolAnnotations(
    read_only_hint=True, destructive_hint=False, idempotent_hint=True, open_world_hint=False
)


def register(mcp: MCPServer, app: App) -> None:
    @mcp.tool(
        title="Create a run",
        annotations=ToolAnnotations(
            read_only_hint=False, destructive_hint=False, idempotent_hint=False, open_world_hint=False
        ),
    )
    @tool_errors
    def create_run(
        name: Annotated[str, Field(description="short label: letters, digits, '.', '_', '-' (max 64)")],
        command: Annotated[
            str, Field(description="shell command run with bash in workdir, e.g. 'python train.py --lr 3e-4'")
        ],
        workdir: Annotated[
            str | None, Field(description="directory to run in; default: the server's working directory")
        ] = None,
        sweep_id: Annotated[str | None, Field(description="attach the run to this sweep")] = None,
        gpus: Annotated[
            int, Field(description="number of GPUs the run needs (0 for CPU)", ge=0, le=64, strict=True)
        ] = 0,
        env: Annotated[
            dict[str, str] | None, Field(description="extra environment variables; values are kept private")
        ] = None,
        auto_start: Annotated[
            bool, Field(description="launch now (true) or leave in status 'ready' for start_run")
        ] = True,
        parent_run_id: Annotated[str | None, Field(description="the run this one derives from")] = None,
        params: Annotated[
            dict[str, Any] | None, Field(description="hyper-parameters to record with the run")
        ] = None,
        backend: Annotated[
            Literal["auto", "local", "slurm"],
            Field(description="where to run: auto picks slurm on a Slurm cluster, else local (tmux)"),
        ] = "auto",
        slurm: Annotated[SlurmOptions | None, Field(description="scheduler options for a Slurm run")] = None,
        gpuwrap: Annotated[
            GpuwrapInput | None,
            Field(description="GPU leasing for local runs: {enabled, retries, retry_delay_seconds}"),
        ] = None,
    ) -> RunRecord:
        """Launch a training/eval command as a tracked run that survives this session.

        The command runs in its own tmux window under a launch script that records its exit
        code; its output goes to the run's log (read with get_logs). The job gets
        RESEARCH_RUN_ID and RESEARCH_METRICS_FILE (append JSON lines there to log metrics).
        With gpus ≥ 1 on a local GPU machine, gpuwrap leases that many free GPUs and sets
        CUDA_VISIBLE_DEVICES; when none are free the run is 'queued' (status_reason says
        what it waits for) and starts in FIFO order. Do not set CUDA_VISIBLE_DEVICES
        yourself unless you mean to pick GPUs by hand (that turns gpuwrap off).
        Never run experiments in your own shell: use this tool so they are tracked.
        """
        return app.services().runs.create(
            name=name,
            command=command,
            workdir=workdir,
            sweep_id=sweep_id,
            gpus=gpus,
            env=env,
            auto_start=auto_start,
            parent_run_id=parent_run_id,
            params=params,
            backend=backend,
            slurm=slurm.model_dump(exclude_none=True, exclude_defaults=True) if slurm else None,
            gpuwrap=gpuwrap.model_dump() if gpuwrap is not None else None,
        )

    @mcp.tool(
        title="Start a ready run",
        annotations=ToolAnnotations(
            read_only_hint=False, destructive_hint=False, idempotent_hint=False, open_world_hint=False
        ),
    )
    @tool_errors
    def start_run(run_id: RunId) -> RunRecord:
        """Launch a run that was created with auto_start=false (status 'ready')."""
        return app.services().runs.start(run_id)

    @mcp.tool(
        title="Stop a run",
        annotations=ToolAnnotations(
            read_only_hint=False, destructive_hint=True, idempotent_hint=False, open_world_hint=False
        ),
    )
    @tool_errors
    def stop_run(run_id: RunId) -> RunRecord:
        """Stop a run: SIGINT to its process group, then SIGTERM, then SIGKILL after grace periods."""
        return app.services().runs.stop(run_id)

    @mcp.tool(
        title="Run again",
        annotations=ToolAnnotations(
            read_only_hint=False, destructive_hint=False, idempotent_hint=False, open_world_hint=False
        ),
    )
    @tool_errors
    def rerun(
        run_id: RunId,
        auto_start: Annotated[bool, Field(description="launch the new run now")] = True,
    ) -> RunRecord:
        """Create a new run with the same command, workdir, env and params; its parent is run_id."""
        return app.services().runs.rerun(run_id, auto_start=auto_start)

    @mcp.tool(title="List runs", annotations=READ_ONLY)
    @tool_errors
    def list_runs(
        status: Annotated[
            list[Literal["ready", "queued", "launching", "running", "finished", "failed", "stopped", "lost"]]
            | None,
            Field(description="only runs in these statuses"),
        ] = None,
        name_contains: Annotated[
            str | None, Field(description="only runs whose name contains this text", max_length=64)
        ] = None,
        sweep_id: Annotated[str | None, Field(description="only runs of this sweep")] = None,
        limit: Annotated[int, Field(description="page size", ge=1, le=500)] = 50,
        offset: Annotated[
            int, Field(description="rows to skip (next_offset of the previous page)", ge=0, le=MAX_INT)
        ] = 0,
    ) -> RunPage:
        """List runs, newest first, as compact rows; page with offset/next_offset."""
        return app.services().runs.list(
            status=list(status) if status else None,
            name_contains=name_contains,
            sweep_id=sweep_id,
            limit=limit,
            offset=offset,
        )

    @mcp.tool(title="Get a run", annotations=READ_ONLY)
    @tool_errors
    def get_run(run_id: RunId) -> RunDetail:
        """One run in full: command, status and why, exit code, times, params, paths, a summary of
        each metric (last/min/max/best), open alerts and its monitor's state."""
        return app.services().runs.get(run_id)

    @mcp.tool(title="Read a run's log", annotations=READ_ONLY)
    @tool_errors
    def get_logs(
        run_id: RunId,
        lines: Annotated[int, Field(description="how many lines from the end", ge=1, le=5000)] = 100,
        source: Annotated[
            Literal["output", "sidecar"], Field(description="the command's output or the monitor's log")
        ] = "output",
        offset: Annotated[
            int | None,
            Field(
                description="read a byte window from here instead of the tail (negative: from the end)",
                ge=-MAX_INT,
                le=MAX_INT,
            ),
        ] = None,
        length: Annotated[
            int | None, Field(description="bytes to read with offset", ge=1, le=1048576)
        ] = None,
        filter: Annotated[
            str | None, Field(description="only lines matching this regular expression", max_length=200)
        ] = None,
        max_bytes: Annotated[int, Field(description="cap on returned text", ge=1, le=1048576)] = 65536,
    ) -> LogChunk:
        """The end of a run's output (or a byte window of it), capped in size; never reads the whole file."""
        return app.services().runs.logs(
            run_id,
            lines=lines,
            source=source,
            offset=offset,
            length=length,
            filter=filter,
            max_bytes=max_bytes,
        )
