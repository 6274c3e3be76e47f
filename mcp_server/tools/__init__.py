"""MCP tool wiring, one module per area; each exposes ``register(mcp, app)``."""

# The bound on integer arguments that have no natural one (offsets, seeds): every JSON client
# keeps it exact, and it fits SQLite's 64-bit INTEGER, so a huge number is refused by the
# schema instead of overflowing in the store.
MAX_INT = 2**53 - 1
