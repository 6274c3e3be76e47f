"""The tool surface as a client receives it, and its snapshot (tests/snapshots/tools.json).

The snapshot pins every tool's name, description, input schema, output schema and
annotations, so any change to the public API shows up as a diff in review. After an
intended change, regenerate it and commit the diff with the change:

    python -m tests.tool_surface
"""

from __future__ import annotations

import json
import sys
import tempfile
from pathlib import Path
from typing import Any

import anyio
from mcp import Client

SNAPSHOT = Path(__file__).parent / "snapshots" / "tools.json"


async def listing(state_dir: Path) -> dict[str, Any]:
    """``tools/list`` through the real MCP client, as plain JSON data."""
    from mcp_server.server import create_server

    async with Client(create_server(state_dir)) as client:
        result = await client.list_tools()
    return result.model_dump(mode="json", by_alias=True, exclude_none=True)


def compact_bytes(data: Any) -> int:
    return len(json.dumps(data, separators=(",", ":"), ensure_ascii=False).encode())


def render(data: dict[str, Any]) -> str:
    """The snapshot file: one tool per block, sorted by name, so a diff names what changed."""
    tools = sorted(data["tools"], key=lambda t: t["name"])
    return json.dumps(tools, indent=1, ensure_ascii=False, sort_keys=True) + "\n"


def main() -> int:
    with tempfile.TemporaryDirectory() as tmp:
        data = anyio.run(listing, Path(tmp) / "state")
    SNAPSHOT.parent.mkdir(exist_ok=True)
    SNAPSHOT.write_text(render(data))
    print(f"wrote {SNAPSHOT} ({len(data['tools'])} tools, tools/list {compact_bytes(data)} bytes)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
