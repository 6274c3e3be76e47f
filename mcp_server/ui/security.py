"""Who may see the dashboard: the server's bearer token, a session cookie, CSRF, Host and Origin.

The dashboard shows run commands, logs and parameters and can stop runs, so it is behind
the same token as the MCP endpoint. The login link carries the token once
(``/ui?token=…``, as Jupyter does); the answer sets a session cookie and redirects to a
URL without it. Sessions and CSRF tokens are HMACs keyed by the server token, so any
process serving the same state dir accepts them and no session table is needed.

A Host header that is not an allowed name gets 421 (a DNS-rebinding page cannot read
anything); an action needs the session, a JSON body, an allowed Origin when the browser
sends one, and the page's CSRF token.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from collections.abc import Iterable
from dataclasses import dataclass

from starlette.requests import HTTPConnection
from starlette.responses import PlainTextResponse
from starlette.types import ASGIApp, Receive, Scope, Send

CSRF_HEADER = "x-csrf-token"
SESSION_MAX_AGE_S = 30 * 24 * 3600


def _matches(value: str, patterns: Iterable[str]) -> bool:
    """``value`` equals a pattern, or a ``base:*`` pattern's base followed by any port."""
    for pattern in patterns:
        if value == pattern or (pattern.endswith(":*") and value.startswith(pattern[:-1])):
            return True
    return False


@dataclass(frozen=True)
class Gate:
    token: str
    allowed_hosts: tuple[str, ...]
    allowed_origins: tuple[str, ...]

    @property
    def cookie_name(self) -> str:
        # Per token: two dashboards (two state dirs) on one host must not overwrite each other's cookie.
        return "rmcp_" + hashlib.sha256(self.token.encode()).hexdigest()[:10]

    def _sign(self, purpose: str, value: str) -> str:
        return hmac.new(self.token.encode(), f"{purpose}|{value}".encode(), hashlib.sha256).hexdigest()

    def token_ok(self, candidate: str | None) -> bool:
        return bool(candidate) and hmac.compare_digest(str(candidate).encode(), self.token.encode())

    def new_session(self) -> str:
        sid = secrets.token_urlsafe(18)
        return f"{sid}.{self._sign('session', sid)}"

    def session_of(self, conn: HTTPConnection) -> str | None:
        """The session id of a request: a valid session cookie, or the bearer token itself."""
        raw = conn.cookies.get(self.cookie_name, "")
        sid, _, sig = raw.partition(".")
        if sid and sig and hmac.compare_digest(sig, self._sign("session", sid)):
            return sid
        auth = conn.headers.get("authorization", "")
        if auth.lower().startswith("bearer ") and self.token_ok(auth[7:].strip()):
            return "bearer"
        return None

    def csrf_for(self, sid: str) -> str:
        return self._sign("csrf", sid)

    def csrf_ok(self, sid: str, candidate: str | None) -> bool:
        return bool(candidate) and hmac.compare_digest(str(candidate), self.csrf_for(sid))

    def host_ok(self, host: str | None) -> bool:
        return bool(host) and _matches(str(host), self.allowed_hosts)

    def origin_ok(self, origin: str | None) -> bool:
        return not origin or _matches(origin, self.allowed_origins)


class HostCheck:
    """ASGI middleware: a request whose Host is not ours is answered 421 before any route runs."""

    def __init__(self, app: ASGIApp, gate: Gate) -> None:
        self.app = app
        self.gate = gate

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and not self.gate.host_ok(HTTPConnection(scope).headers.get("host")):
            response = PlainTextResponse(
                "Misdirected request: this Host is not one research-mcp serves.", status_code=421
            )
            await response(scope, receive, send)
            return
        await self.app(scope, receive, send)
