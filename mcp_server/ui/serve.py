"""Serving the dashboard: alone (``research-mcp ui``) or beside the MCP endpoint (``serve``).

Both use the state dir's one token (``$RESEARCH_MCP_TOKEN`` or the ``token`` file), the
same loopback default and the same allowed Host/Origin lists as the MCP transports.
"""

from __future__ import annotations

import sys
import threading
from pathlib import Path
from urllib.parse import quote

from starlette.applications import Starlette
from starlette.routing import Mount

from mcp_server.core.services import Services
from mcp_server.ui.app import PREFIX, create_ui_app
from mcp_server.ui.security import Gate

DEFAULT_PORT = 8766


def base_url(host: str, port: int) -> str:
    shown = f"[{host}]" if ":" in host else host
    return f"http://{shown}:{port}"


def login_url(host: str, port: int, token: str) -> str:
    return f"{base_url(host, port)}{PREFIX}?token={quote(token, safe='')}"


def mount(app: Starlette, root: Path, gate: Gate) -> None:
    """Add the dashboard to another Starlette app (the MCP server's), after its own routes.

    Its services open on the first dashboard request, so the MCP endpoint listens as soon
    as it would without the dashboard."""
    lock = threading.Lock()
    made: list[Services] = []

    def services() -> Services:
        with lock:
            if not made:
                made.append(Services(root))
            return made[0]

    app.router.routes.append(Mount("", app=create_ui_app(services, gate, root / "research.db")))


def serve_ui(
    *,
    state_dir: str | None,
    host: str,
    port: int,
    allow_remote: bool,
    allowed_hosts: list[str],
) -> None:
    import uvicorn

    from mcp_server.transports import load_or_create_token, security_settings

    security = security_settings(host, port, allow_remote, allowed_hosts)
    services = Services(state_dir)
    token = load_or_create_token(services.state.root)
    gate = Gate(token.value, tuple(security.allowed_hosts), tuple(security.allowed_origins))
    app = create_ui_app(services, gate)
    print(f"research-mcp dashboard for {services.state.root}", flush=True)
    print(f"open: {login_url(host, port, token.value)}", flush=True)
    print("(the link logs this browser in; keep it private like the token)", file=sys.stderr, flush=True)
    uvicorn.run(app, host=host, port=port, log_level="warning")
