"""The baseline for cold start: an MCPServer with one tool and nothing else."""

from mcp.server.mcpserver import MCPServer

server: MCPServer = MCPServer("bare", version="0")


@server.tool()
def ping(x: int) -> int:
    """Echo x."""
    return x


if __name__ == "__main__":
    server.run()
