"""The ``cluster://state`` document: the last detection, with leases and queue as they are now."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from mcp_server.core.services import Services


def cluster_state_json(services: Services) -> str:
    return services.cluster.get().model_dump_json(indent=2)
