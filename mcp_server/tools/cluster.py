"""Cluster tools and the ``cluster://state`` resource: thin wrappers over ``ClusterService``."""

from typing import Annotated, Literal

from mcp.server.mcpserver import MCPServer
from mcp_types import ToolAnnotations
from pydantic import Field

from mcp_server.app import App, tool_errors
from mcp_server.core.views import ClusterInfo
from resources.cluster import cluster_state_json

READ_ONLY = ToolAnnotations(
    read_only_hint=True, destructive_hint=False, idempotent_hint=True, open_world_hint=False
)


def register(mcp: MCPServer, app: App) -> None:
    @mcp.tool(
        title="Detect the cluster",
        annotations=ToolAnnotations(
            read_only_hint=False, destructive_hint=False, idempotent_hint=True, open_world_hint=False
        ),
    )
    @tool_errors
    def detect_cluster(
        preferred_type: Annotated[
            Literal["local_gpu", "slurm", "cpu_only", "auto"] | None,
            Field(
                description="keep this type whatever the probes find (remembered for later calls); "
                "'auto' drops a kept preference; omit to keep the current one"
            ),
        ] = None,
    ) -> ClusterInfo:
        """Probe this machine: Slurm (scontrol ping, sinfo), GPUs (NVML), CPUs and memory.

        Answers local_gpu, slurm or cpu_only with per-GPU facts (memory, utilization,
        processes and their users, which run holds a lease), Slurm partitions and GRES, the
        signals used and a confidence. The result is saved; runs use its type.
        """
        return app.services().cluster.detect(preferred_type)

    @mcp.tool(title="Get the cluster state", annotations=READ_ONLY)
    @tool_errors
    def get_cluster() -> ClusterInfo:
        """The last detect_cluster result, with GPU leases and queued runs as they are now.

        Probes nothing, except once on a state dir where nothing was detected yet.
        """
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
