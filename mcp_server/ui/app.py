"""The dashboard as a Starlette app: pages, their data endpoints, actions and the live feed.

Mounted under ``/ui`` by ``research-mcp ui`` and by ``research-mcp serve --transport
http|sse`` (beside the MCP endpoint, behind the same token). Handlers are thin: they
check the session, call ``views`` or a core service in a worker thread (the services are
synchronous SQLite), and render.
"""

from __future__ import annotations

import functools
import json
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import anyio.to_thread
from sse_starlette.sse import EventSourceResponse
from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, RedirectResponse, Response
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from mcp_server.core.errors import Conflict, InvalidInput, NotFound, ResearchError
from mcp_server.core.services import Services
from mcp_server.ui import pages
from mcp_server.ui.feed import Broadcaster
from mcp_server.ui.render import render
from mcp_server.ui.security import CSRF_HEADER, SESSION_MAX_AGE_S, Gate, HostCheck

STATIC = Path(__file__).parent / "static"
PREFIX = "/ui"
MAX_ACTION_BODY = 16 * 1024
CSP = (
    "default-src 'none'; script-src 'self'; style-src 'self' 'unsafe-inline'; img-src 'self' data:; "
    "connect-src 'self'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'"
)

Handler = Callable[[Request, str], Awaitable[Response]]


def _status_of(err: ResearchError) -> int:
    if isinstance(err, NotFound):
        return 404
    if isinstance(err, Conflict):
        return 409
    return 400 if isinstance(err, InvalidInput) else 500


class SecurityHeaders:
    """Every answer: no framing, no referrer (the login link carries the token), a strict CSP."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        async def add_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = message.setdefault("headers", [])
                headers += [
                    (b"content-security-policy", CSP.encode()),
                    (b"x-frame-options", b"DENY"),
                    (b"referrer-policy", b"no-referrer"),
                    (b"x-content-type-options", b"nosniff"),
                ]
            await send(message)

        await self.app(scope, receive, add_headers)


class Dashboard:
    def __init__(
        self, services: Services | Callable[[], Services], gate: Gate, db_path: Path | None = None
    ) -> None:
        """``services`` may be a factory: beside the MCP endpoint the store opens on first use, not
        before the server listens (``db_path`` is then given so the feed needs no services)."""
        self._services = services
        self.gate = gate
        path = db_path if db_path is not None else self.sv.state.db_path
        self.feed = Broadcaster(path, lambda run_id: self.sv.runs.files(run_id).output)

    @property
    def sv(self) -> Services:
        return self._services if isinstance(self._services, Services) else self._services()

    # ---- guards --------------------------------------------------------------------------

    def _login_page(self, status: int, note: str) -> HTMLResponse:
        return HTMLResponse(render("login.html", {"note": note, "prefix": PREFIX}), status_code=status)

    def page(self, fn: Callable[[Request, str], str]) -> Handler:
        """A page: the session (or ``?token=`` once, which sets it) or a 401 login page with no data."""

        @functools.wraps(fn)
        async def handler(request: Request, _sid: str = "") -> Response:
            token = request.query_params.get("token")
            if token is not None:
                if not self.gate.token_ok(token):
                    return self._login_page(401, "That token is not this server's token.")
                response = RedirectResponse(request.url.path, status_code=303)
                response.set_cookie(
                    self.gate.cookie_name, self.gate.new_session(), max_age=SESSION_MAX_AGE_S,
                    path=PREFIX, httponly=True, samesite="strict",
                )  # fmt: skip
                return response
            sid = self.gate.session_of(request)
            if sid is None:
                return self._login_page(401, "")
            try:
                html = await anyio.to_thread.run_sync(fn, request, sid)
            except ResearchError as err:
                html = render("error.html", self.context(sid, message=str(err)))
                return HTMLResponse(html, status_code=_status_of(err))
            except KeyError:
                return HTMLResponse("no such fragment", status_code=404)
            return HTMLResponse(html, headers={"cache-control": "no-store"})

        return handler

    def data(self, fn: Callable[[Request], Any]) -> Handler:
        """A JSON read: the session, or 401 with nothing in it."""

        @functools.wraps(fn)
        async def handler(request: Request, _sid: str = "") -> Response:
            if self.gate.session_of(request) is None:
                return JSONResponse({"error": "log in with the link research-mcp prints"}, status_code=401)
            try:
                body = await anyio.to_thread.run_sync(fn, request)
            except ResearchError as err:
                return JSONResponse({"error": str(err)}, status_code=_status_of(err))
            return JSONResponse(body, headers={"cache-control": "no-store"})

        return handler

    def action(self, fn: Callable[[Request, dict[str, Any]], Any]) -> Handler:
        """A change: session, JSON body, an allowed Origin and the page's CSRF token, or nothing happens."""

        @functools.wraps(fn)
        async def handler(request: Request, _sid: str = "") -> Response:
            sid = self.gate.session_of(request)
            if sid is None:
                return JSONResponse({"error": "not logged in"}, status_code=401)
            if not self.gate.origin_ok(request.headers.get("origin")):
                return JSONResponse({"error": "cross-origin request refused"}, status_code=403)
            if request.headers.get("sec-fetch-site") not in (None, "same-origin", "none"):
                return JSONResponse({"error": "cross-site request refused"}, status_code=403)
            if sid != "bearer" and not self.gate.csrf_ok(sid, request.headers.get(CSRF_HEADER)):
                return JSONResponse(
                    {"error": "missing or wrong CSRF token; reload the page"}, status_code=403
                )
            if not request.headers.get("content-type", "").startswith("application/json"):
                return JSONResponse({"error": "send a JSON body"}, status_code=415)
            raw = await request.body()
            if len(raw) > MAX_ACTION_BODY:
                return JSONResponse({"error": "request body too large"}, status_code=413)
            try:
                body = json.loads(raw or b"{}")
            except ValueError:
                return JSONResponse({"error": "the body is not JSON"}, status_code=400)
            if not isinstance(body, dict):
                return JSONResponse({"error": "the body must be a JSON object"}, status_code=400)
            try:
                result = await anyio.to_thread.run_sync(fn, request, body)
            except ResearchError as err:
                return JSONResponse({"error": str(err)}, status_code=_status_of(err))
            return JSONResponse(result)

        return handler

    def context(self, sid: str, **values: Any) -> dict[str, Any]:
        return {"prefix": PREFIX, "csrf": self.gate.csrf_for(sid), **values}

    # ---- live feed -----------------------------------------------------------------------

    async def events(self, request: Request) -> Response:
        if self.gate.session_of(request) is None:
            return JSONResponse({"error": "not logged in"}, status_code=401)
        runs = frozenset(r for r in request.query_params.get("runs", "").split(",") if r)
        if "*" in runs and len(runs) > 1:
            return JSONResponse({"error": "give runs=* alone, or run ids"}, status_code=400)
        if len(runs) > 50:
            return JSONResponse({"error": "watch at most 50 runs per page"}, status_code=400)

        async def stream() -> AsyncIterator[dict[str, str]]:
            async with self.feed.subscribe(runs) as sub:
                yield {"event": "hello", "data": "{}"}
                while True:
                    text = await sub.queue.get()
                    if sub.lagging:
                        sub.lagging = False
                        yield {"event": "resync", "data": "{}"}
                    yield {"event": "tick", "data": text}

        return EventSourceResponse(stream(), ping=15, headers={"cache-control": "no-store"})


def create_ui_app(
    services: Services | Callable[[], Services], gate: Gate, db_path: Path | None = None
) -> Starlette:
    """The dashboard's routes under ``/ui``; also mountable beside the MCP endpoint."""
    ui = Dashboard(services, gate, db_path)
    p = pages.Pages(ui)
    routes = [
        Route(PREFIX, ui.page(p.runs)),
        Route(PREFIX + "/", ui.page(p.runs)),
        Route(PREFIX + "/runs/{run_id}", ui.page(p.run)),
        Route(PREFIX + "/compare", ui.page(p.compare)),
        Route(PREFIX + "/alerts", ui.page(p.alerts)),
        Route(PREFIX + "/plans", ui.page(p.plans)),
        Route(PREFIX + "/plans/{plan_id}", ui.page(p.plan)),
        Route(PREFIX + "/memory", ui.page(p.memory)),
        Route(PREFIX + "/api/metrics", ui.data(p.metrics_data)),
        Route(PREFIX + "/api/runs/{run_id}/logs", ui.data(p.logs_data)),
        Route(PREFIX + "/api/alerts/{alert_id}/resolve", ui.action(p.resolve_alert), methods=["POST"]),
        Route(PREFIX + "/api/plans/{plan_id}", ui.action(p.update_plan), methods=["POST"]),
        Route(PREFIX + "/api/memories/{memory_id}", ui.action(p.update_memory), methods=["POST"]),
        Route(PREFIX + "/api/events", ui.events),
        Mount(PREFIX + "/static", StaticFiles(directory=STATIC), name="static"),
    ]
    app = Starlette(routes=routes, middleware=[Middleware(HostCheck, gate=gate), Middleware(SecurityHeaders)])
    app.state.dashboard = ui
    return app
