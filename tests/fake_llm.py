"""An OpenAI-compatible chat server on 127.0.0.1 — the one allowed fake (an LLM provider).

It answers ``POST /v1/chat/completions`` the way the real API does; ``mode`` picks the
answer: a verdict, garbage text, an HTTP 500, or a reply slower than the client's timeout.
Every request body is recorded so tests can see what the judge sent.
"""

from __future__ import annotations

import contextlib
import json
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

VERDICT = {
    "action": "alert",
    "severity": "warning",
    "message": "loss has been flat for 40 steps; the learning rate may be too low",
    "choices": ["Ignore", "Stop run", "Lower the learning rate"],
}


class FakeLLM:
    def __init__(self) -> None:
        self.mode = "ignore"
        self.slow_s = 5.0
        self.requests: list[tuple[str, dict[str, Any]]] = []  # (mode answered, body)
        self.headers: list[dict[str, str]] = []  # names lower-cased: HTTP header names carry no case
        self._server: ThreadingHTTPServer | None = None

    @property
    def api_base(self) -> str:
        assert self._server is not None
        return f"http://127.0.0.1:{self._server.server_port}/v1"

    def served(self, mode: str) -> int:
        return sum(1 for m, _ in self.requests if m == mode)

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        fake = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: object) -> None:
                pass

            def _send(self, code: int, payload: bytes) -> None:
                self.send_response(code)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)

            def do_POST(self) -> None:
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                mode = fake.mode
                fake.requests.append((mode, body))
                fake.headers.append({k.lower(): v for k, v in self.headers.items()})
                if not self.path.endswith("/chat/completions"):
                    self._send(404, b'{"error": {"message": "not found"}}')
                    return
                if mode == "500":
                    self._send(
                        500, b'{"error": {"message": "the model is overloaded", "type": "server_error"}}'
                    )
                    return
                if mode == "slow":
                    time.sleep(fake.slow_s)
                content = {
                    "alert": json.dumps(VERDICT),
                    "ignore": '```json\n{"action": "ignore"}\n```',
                    "garbage": "I think the run looks fine, but let me explain at length...",
                    "slow": json.dumps(VERDICT),
                }[mode]
                reply = {
                    "id": f"chatcmpl-{len(fake.requests)}",
                    "object": "chat.completion",
                    "created": int(time.time()),
                    "model": body.get("model", "judge"),
                    "choices": [
                        {
                            "index": 0,
                            "message": {"role": "assistant", "content": content},
                            "finish_reason": "stop",
                        }
                    ],
                    "usage": {"prompt_tokens": 120, "completion_tokens": 30, "total_tokens": 150},
                }
                with contextlib.suppress(BrokenPipeError, ConnectionResetError):  # a client that timed out
                    self._send(200, json.dumps(reply).encode())

        return Handler

    @contextmanager
    def running(self) -> Iterator[FakeLLM]:
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self._server.daemon_threads = True
        thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        thread.start()
        try:
            yield self
        finally:
            self._server.shutdown()
            self._server.server_close()
