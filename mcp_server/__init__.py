"""research-mcp: an MCP server for planning, launching and watching ML experiments.

The package holds the MCP wiring (``server``, ``cli``) and, under ``core``, the services
it calls. Core services never import the MCP SDK, so they can be driven from the CLI, the
sidecar and tests exactly as the tools drive them.
"""

__version__ = "0.1.0"
