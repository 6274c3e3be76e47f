"""stdio transport that answers malformed lines instead of silently dropping them.

The SDK's stdio reader turns a line it cannot parse into an exception on the read stream,
and the server only logs it; the client then waits forever for a reply. Per JSON-RPC 2.0,
an unparseable message gets a Parse error (-32700) and an invalid one an Invalid Request
(-32600), both with ``id: null``. This wrapper sits between the transport and the server
and sends those replies; the session carries on.
"""

from __future__ import annotations

import anyio
from mcp.server.mcpserver import MCPServer
from mcp.server.stdio import stdio_server
from mcp.shared.message import SessionMessage
from mcp_types import INVALID_REQUEST, PARSE_ERROR, ErrorData, JSONRPCError
from pydantic import ValidationError


def error_reply(exc: Exception) -> SessionMessage:
    unparseable = isinstance(exc, ValidationError) and any(e["type"] == "json_invalid" for e in exc.errors())
    if unparseable:
        error = ErrorData(code=PARSE_ERROR, message="Parse error: the line is not valid JSON")
    else:
        error = ErrorData(code=INVALID_REQUEST, message="Invalid Request: not a JSON-RPC 2.0 message")
    return SessionMessage(JSONRPCError(jsonrpc="2.0", id=None, error=error))


async def run_stdio(mcp: MCPServer) -> None:
    # The SDK's own run_stdio_async drives the low-level server the same way; there is no
    # public hook for transport-level errors, so this reaches for it too.
    lowlevel = mcp._lowlevel_server
    async with stdio_server() as (read_stream, write_stream):
        send, receive = anyio.create_memory_object_stream[SessionMessage | Exception](0)

        async def relay() -> None:
            async with send:
                async for item in read_stream:
                    if isinstance(item, Exception):
                        await write_stream.send(error_reply(item))
                    else:
                        await send.send(item)

        async with anyio.create_task_group() as tg:
            tg.start_soon(relay)
            await lowlevel.run(receive, write_stream, lowlevel.create_initialization_options())
            tg.cancel_scope.cancel()
