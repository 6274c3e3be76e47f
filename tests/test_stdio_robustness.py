"""A misbehaving client on stdio gets errors, not a dead server."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path


def test_malformed_lines_get_error_responses_and_the_session_goes_on(state_dir: Path) -> None:
    proc = subprocess.Popen(
        [sys.executable, "-m", "mcp_server", "serve", "--state-dir", str(state_dir)],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    assert proc.stdin and proc.stdout

    def send(line: str) -> None:
        proc.stdin.write(line + "\n")  # type: ignore[union-attr]
        proc.stdin.flush()  # type: ignore[union-attr]

    def receive() -> dict:
        return json.loads(proc.stdout.readline())  # type: ignore[union-attr]

    try:
        send("this is not json")
        parse_error = receive()
        assert parse_error["error"]["code"] == -32700
        send('{"jsonrpc": "2.0", "id": 7, "method": "no/such/method"}')
        assert receive()["error"]["code"] in (-32601, -32600)
        hello = {
            "protocolVersion": "2025-11-25",
            "capabilities": {},
            "clientInfo": {"name": "t", "version": "0"},
        }
        send(json.dumps({"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": hello}))
        init = receive()
        assert init["id"] == 1 and init["result"]["serverInfo"]["name"] == "research-mcp"
        send('{"jsonrpc": "2.0", "method": "notifications/initialized"}')
        send('{"jsonrpc": "2.0", "id": 2, "method": "tools/call", "params": {"name": "get_run"')  # truncated
        assert receive()["error"]["code"] == -32700
        send(
            json.dumps(
                {
                    "jsonrpc": "2.0",
                    "id": 3,
                    "method": "tools/call",
                    "params": {"name": "list_runs", "arguments": {}},
                }
            )
        )
        listed = receive()
        assert listed["id"] == 3 and listed["result"]["structuredContent"]["total"] == 0
        assert proc.poll() is None
    finally:
        proc.kill()
        proc.wait()
