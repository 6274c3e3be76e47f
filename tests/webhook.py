"""A real HTTP endpoint for apprise's ``json://`` URLs: it records what arrives, and can refuse
(an HTTP status) or hang (accept the connection and say nothing) for a while."""

from __future__ import annotations

import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


class Webhook:
    def __init__(self) -> None:
        self.messages: list[dict[str, Any]] = []
        self.hung: list[float] = []  # when each connection that met a hang arrived
        self.refused = 0
        self.status = 200
        self.hang_until = 0.0
        self._closing = threading.Event()
        self._lock = threading.Lock()
        hook = self

        class Handler(BaseHTTPRequestHandler):
            def handle(self) -> None:
                remaining = hook.hang_until - time.time()
                if remaining > 0:
                    # Hang on the socket: read nothing, answer nothing, then drop the connection
                    # (an endpoint that froze; whatever the client sent is lost with it).
                    with hook._lock:
                        hook.hung.append(time.time())
                    hook._closing.wait(remaining)
                    return
                super().handle()

            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
                if hook.status != 200:
                    with hook._lock:
                        hook.refused += 1
                    self.send_response(hook.status)
                    self.end_headers()
                    return
                payload = json.loads(body)
                payload["received_at"] = time.time()
                with hook._lock:
                    hook.messages.append(payload)
                self.send_response(200)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.port = self.server.server_address[1]
        self.url = f"json://127.0.0.1:{self.port}/hook"
        self._thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def __enter__(self) -> Webhook:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._closing.set()
        self.server.shutdown()
        self.server.server_close()

    def hang(self, seconds: float) -> None:
        self.hang_until = time.time() + seconds

    def titles(self) -> list[str]:
        with self._lock:
            return [m.get("title", "") for m in self.messages]
