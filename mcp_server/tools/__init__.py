"""MCP tool wiring, one module per area; each exposes ``register(mcp, app)``."""
