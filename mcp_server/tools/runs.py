"""Run tools: thin wrappers over ``RunService``."""

from typing import Annotated, Any, Literal

from mcp.server.mcpserver import MCPServer
from mcp_types import ToolAnnotations
from pydantic import Field

from mcp_server.app import App
from mcp_server.core.execution import run_list
from mcp_server.core.run_views import LogChunk, RunBrief, RunDetail, RunPage
from mcp_server.core.workflow.compare_views import RunComparison
from mcp_server.tools import MAX_INT
from mcp_server.tools.backend_options import BACKEND_HELP, BackendName, BackendOptions, options_dict
from mcp_server.tools.surface import answer, fitting

RunId = str
RunStatus = Literal["ready", "queued", "launching", "running", "finished", "failed", "stopped", "lost"]

# Only hints that differ from the protocol's defaults (read-only false, destructive true,
# idempotent false, open world true) are spelled out; the destructive and idempotent hints
# mean something only for tools that write. Every tool acts on this machine or its cluster.
READ_ONLY = ToolAnnotations(read_only_hint=True, open_world_hint=False)
CREATES = ToolAnnotations(destructive_hint=False, open_world_hint=False)
EDITS = ToolAnnotations(destructive_hint=False, idempotent_hint=True, open_world_hint=False)
STOPS = ToolAnnotations(open_world_hint=False)
# get_run keeps its answer small for a run that logs hundreds of keys (get_metrics has them all).
MAX_RUN_METRICS = 24
# A default page of a list tool; its rows are also cut to the answer budget (tools.surface).
DEFAULT_ROWS = 20


def register(mcp: MCPServer, app: App) -> None:
    @mcp.tool(annotations=CREATES)
    @answer
    def create_run(
        name: Annotated[str, Field(description="letters, digits, ._- (max 64)")],
        command: Annotated[str, Field(description="run by bash in workdir")],
        workdir: str | None = None,
        sweep_id: str | None = None,
        gpus: Annotated[int, Field(ge=0, le=64, strict=True)] = 0,
        env: Annotated[dict[str, str] | None, Field(description="values kept private")] = None,
        auto_start: bool = True,
        parent_run_id: str | None = None,
        params: Annotated[dict[str, Any] | None, Field(description="hyper-parameters, recorded")] = None,
        backend: Annotated[BackendName, Field(description=BACKEND_HELP)] = "auto",
        options: BackendOptions | None = None,  # type: ignore[valid-type]
    ) -> RunBrief:
        """Launch a command as a tracked run that outlives this session; it may log metrics as JSON
        lines to $RESEARCH_METRICS_FILE."""
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
            options=options_dict(options),
        )

    @mcp.tool(annotations=CREATES)
    @answer
    def start_run(run_id: RunId) -> RunBrief:
        """Launch a run created with auto_start=false."""
        return app.services().runs.start(run_id)

    @mcp.tool(annotations=STOPS)
    @answer
    def stop_run(run_id: RunId) -> RunBrief:
        """Stop a run: SIGINT, SIGTERM, then SIGKILL to its process group."""
        return app.services().runs.stop(run_id)

    @mcp.tool(annotations=CREATES)
    @answer
    def rerun(
        run_id: RunId,
        auto_start: bool = True,
        overrides: Annotated[
            dict[str, Any] | None,
            Field(description="{params, args: {opt: value|true|null}, env, command}"),
        ] = None,
    ) -> RunBrief:
        """Run a run's spec again, with overrides; the parent is recorded."""
        return app.services().runs.rerun(run_id, auto_start=auto_start, overrides=overrides)

    @mcp.tool(annotations=READ_ONLY)
    @answer
    def compare_runs(
        run_ids: Annotated[list[str], Field(min_length=2, max_length=8)],
        metric: Annotated[str | None, Field(max_length=128)] = None,
        patch: bool = False,
    ) -> RunComparison:
        """What differs between runs: params, code (patch: the diff), settings; each run's best/last
        metric."""
        from mcp_server.core.workflow.compare import compare_runs as compare

        return compare(app.services().runs, run_ids, metric=metric, patch=patch)

    @mcp.tool(annotations=READ_ONLY)
    @answer
    def list_runs(
        status: list[RunStatus] | None = None,
        name_contains: Annotated[str | None, Field(max_length=64)] = None,
        sweep_id: str | None = None,
        limit: Annotated[int, Field(ge=1, le=500)] = DEFAULT_ROWS,
        offset: Annotated[int, Field(ge=0, le=MAX_INT)] = 0,
    ) -> RunPage:
        """Runs, newest first; page with offset=next_offset."""
        args: dict[str, Any] = {
            "status": list(status) if status else None,
            "name_contains": name_contains,
            "sweep_id": sweep_id,
            "limit": limit,
            "offset": offset,
        }
        # A new server answers from plain SQL while its services load (nothing to settle first).
        page = app.read_light(lambda conn: run_list.settled_page(conn, **args)) or app.services().runs.list(
            **args
        )
        if (n := fitting(page.runs, limit=limit, default=DEFAULT_ROWS)) < len(page.runs):
            page.runs, page.next_offset = page.runs[:n], offset + n
        return page

    @mcp.tool(annotations=READ_ONLY)
    @answer
    def get_run(run_id: RunId) -> RunDetail:
        """One run in full: status and why, command, params, times, metrics, open alerts, provenance."""
        detail = app.services().runs.get(run_id)
        if len(detail.metrics) > MAX_RUN_METRICS:
            shown = detail.metrics[:MAX_RUN_METRICS]
            detail.note = f"{len(shown)} of {len(detail.metrics)} metric keys summarised; get_metrics has all"
            detail.metrics = shown
        return detail

    @mcp.tool(annotations=READ_ONLY)
    @answer
    def get_logs(
        run_id: RunId,
        lines: Annotated[int, Field(ge=1, le=5000)] = 50,
        source: Annotated[
            Literal["output", "sidecar"], Field(description="sidecar: the monitor's log")
        ] = "output",
        offset: Annotated[
            int | None, Field(description="in bytes; < 0: from the end", ge=-MAX_INT, le=MAX_INT)
        ] = None,
        length: Annotated[int | None, Field(ge=1, le=1048576)] = None,
        filter: Annotated[str | None, Field(description="regex", max_length=200)] = None,
        max_bytes: Annotated[int, Field(ge=1, le=1048576)] = 4096,
    ) -> LogChunk:
        """The last lines of a run's output (or a byte window), capped at max_bytes."""
        return app.services().runs.logs(
            run_id,
            lines=lines,
            source=source,
            offset=offset,
            length=length,
            filter=filter,
            max_bytes=max_bytes,
        )
