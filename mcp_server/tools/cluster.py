"""Cluster tools and the ``cluster://state`` resource: thin wrappers over ``ClusterService``."""

from typing import Annotated, Literal

from mcp.server.mcpserver import MCPServer
from pydantic import Field

from mcp_server.app import App
from mcp_server.core.run_views import ClusterInfo
from mcp_server.tools.runs import EDITS, READ_ONLY
from mcp_server.tools.surface import answer
from resources.cluster import cluster_state_json


def register(mcp: MCPServer, app: App) -> None:
    @mcp.tool(annotations=EDITS)
    @answer
    def detect_cluster(
        preferred_type: Annotated[
            Literal["local_gpu", "slurm", "cpu_only", "auto"] | None,
            Field(description="pin this type; auto: unpin"),
        ] = None,
    ) -> ClusterInfo:
        """Probe this machine (local_gpu, slurm or cpu_only): GPUs, CPUs, Slurm partitions. Runs
        follow the saved type."""
        return app.services().cluster.detect(preferred_type)

    @mcp.tool(annotations=READ_ONLY)
    @answer
    def get_cluster() -> ClusterInfo:
        """The saved detect_cluster result, with current leases and queued runs."""
        return app.services().cluster.get()

    @mcp.resource(
        "cluster://state",
        name="cluster_state",
        title="Cluster state",
        description="The last detected cluster (type, GPUs and their leases, Slurm partitions), as JSON",
        mime_type="application/json",
    )
    def cluster_state() -> str:
        return cluster_state_json(app.services())
