"""Resources: thin wiring of the builders in the top-level ``resources`` package."""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import ParamSpec, TypeVar

import anyio.to_thread
from mcp.server.mcpserver import MCPServer
from mcp.server.mcpserver.exceptions import ResourceNotFoundError

from mcp_server.app import App
from mcp_server.core.errors import ResearchError

P = ParamSpec("P")
R = TypeVar("R")


def resource_errors(fn: Callable[P, R]) -> Callable[P, R]:
    """An unknown or malformed id in a URI is 'not found' (-32602) with the core's message."""

    @functools.wraps(fn)
    def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
        try:
            return fn(*args, **kwargs)
        except ResearchError as err:
            raise ResourceNotFoundError(str(err)) from err

    return wrapper


def register(mcp: MCPServer, app: App) -> None:
    @mcp.resource(
        "experiment://context",
        name="experiment_context",
        title="Experiment context",
        description="A short Markdown digest: cluster, runs, sweeps, open alerts, memory rules, plans.",
        mime_type="text/markdown",
    )
    async def experiment_context() -> str:
        from resources.context import experiment_context as build

        can_detect = any(t.name == "detect_cluster" for t in await mcp.list_tools())
        return await anyio.to_thread.run_sync(
            resource_errors(lambda: build(app.services(), can_detect=can_detect))
        )

    @mcp.resource(
        "runs://{run_id}",
        name="run",
        title="A run",
        description="One run in full (status and why, exit code, params, times) with a metric summary.",
        mime_type="application/json",
    )
    @resource_errors
    def run(run_id: str) -> str:
        from resources.documents import run_document

        return run_document(app.services(), run_id)

    @mcp.resource(
        "runs://{run_id}/logs",
        name="run_logs",
        title="A run's output",
        description="The last 200 lines (at most 64 KB) of a run's output.",
        mime_type="text/plain",
    )
    @resource_errors
    def run_logs(run_id: str) -> str:
        from resources.documents import run_logs as build

        return build(app.services(), run_id)

    @mcp.resource(
        "runs://{run_id}/metrics",
        name="run_metrics",
        title="A run's metrics",
        description="Per metric: count, last, min and max with their steps; and the latest records.",
        mime_type="application/json",
    )
    @resource_errors
    def run_metrics(run_id: str) -> str:
        from resources.documents import run_metrics as build

        return build(app.services(), run_id)

    @mcp.resource(
        "runs://{run_id}/provenance",
        name="run_provenance",
        title="What a run ran",
        description="Commit, branch, uncommitted diff, interpreter and packages, host, GPUs, seeds.",
        mime_type="application/json",
    )
    @resource_errors
    def run_provenance(run_id: str) -> str:
        from resources.documents import run_provenance as build

        return build(app.services(), run_id)

    @mcp.resource(
        "runs://{run_id}/lineage",
        name="run_lineage",
        title="A run's lineage",
        description="Its ancestors and descendants (reruns), each with what it changed.",
        mime_type="application/json",
    )
    @resource_errors
    def run_lineage(run_id: str) -> str:
        from mcp_server.core.workflow.lineage import lineage

        return lineage(app.services().runs, run_id).model_dump_json(indent=1, exclude_defaults=True)

    @mcp.resource(
        "sweeps://{sweep_id}",
        name="sweep",
        title="A sweep",
        description="A sweep's status, progress and runs.",
        mime_type="application/json",
    )
    @resource_errors
    def sweep(sweep_id: str) -> str:
        from resources.documents import sweep_document

        return sweep_document(app.services(), sweep_id)

    @mcp.resource(
        "plans://{plan_id}",
        name="plan",
        title="A plan",
        description="An experiment plan's Markdown, with its status and links in a leading comment.",
        mime_type="text/markdown",
    )
    @resource_errors
    def plan(plan_id: str) -> str:
        from resources.documents import plan_document

        return plan_document(app.services(), plan_id)
