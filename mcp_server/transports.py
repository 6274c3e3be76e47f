"""Network transports (streamable HTTP and SSE), always behind a bearer token.

A research server on a shared GPU box must not be a remote shell for whoever can reach
its port: every network request carries ``Authorization: Bearer <token>``, compared in
constant time; DNS-rebinding protection stays on (Host and Origin are checked), a
non-loopback bind needs an explicit flag and an allowed-host list, and request bodies are
capped. The token comes from ``RESEARCH_MCP_TOKEN`` or is generated once and kept in the
state dir (0600); it never appears on a command line.
"""

from __future__ import annotations

import hmac
import json
import os
import secrets
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from mcp.server.auth.provider import AccessToken, TokenVerifier
from mcp.server.auth.settings import AuthSettings
from mcp.server.transport_security import TransportSecuritySettings

from mcp_server.core.errors import InvalidInput

TOKEN_ENV = "RESEARCH_MCP_TOKEN"
TOKEN_FILE = "token"
LOOPBACK_HOSTS = ("127.0.0.1", "localhost", "::1")
DEFAULT_PORT = 8765
DEFAULT_MAX_BODY = 1024 * 1024  # JSON-RPC requests are small; a megabyte is generous
MIN_TOKEN_CHARS = 16


class StaticTokenVerifier(TokenVerifier):
    """Accepts exactly one token; ``hmac.compare_digest`` so timing leaks nothing."""

    def __init__(self, token: str) -> None:
        self._token = token.encode()

    async def verify_token(self, token: str) -> AccessToken | None:
        if hmac.compare_digest(token.encode(), self._token):
            return AccessToken(token="<redacted>", client_id="research-mcp-client", scopes=[])
        return None


@dataclass(frozen=True)
class Token:
    value: str
    source: str  # "env", "file" or "generated"
    path: Path | None = None


def load_or_create_token(state_root: Path) -> Token:
    """The env var wins; else the state dir's token file; else a new one, written 0600."""
    env = os.environ.get(TOKEN_ENV)
    if env is not None:
        if len(env) < MIN_TOKEN_CHARS:
            raise InvalidInput(
                f"{TOKEN_ENV} is shorter than {MIN_TOKEN_CHARS} characters; use a long random value."
            )
        return Token(env, "env")
    path = state_root / TOKEN_FILE
    value = _read_token(path)
    if value:
        os.chmod(path, 0o600)
        return Token(value, "file", path)
    # Written whole under a private name, then linked into place: two servers starting at
    # once both end up with the one token that won, never a half-written or empty one.
    value = secrets.token_urlsafe(32)
    tmp = path.with_name(f".{TOKEN_FILE}.{os.getpid()}.{secrets.token_hex(4)}")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as fh:
        fh.write(value + "\n")
    try:
        os.link(tmp, path)
    except FileExistsError:
        winner = _read_token(path)
        if not winner:
            raise InvalidInput(f"the token file {path} is empty; delete it and start again.") from None
        return Token(winner, "file", path)
    finally:
        os.unlink(tmp)
    return Token(value, "generated", path)


def _read_token(path: Path) -> str:
    try:
        return path.read_text().strip()
    except FileNotFoundError:
        return ""


def auth_settings(url: str) -> AuthSettings:
    # A static bearer token, no OAuth server: issuer is ourselves, no protected-resource metadata.
    return AuthSettings(issuer_url=url, resource_server_url=None, required_scopes=[])  # type: ignore[arg-type]


def security_settings(
    host: str, port: int, allow_remote: bool, allowed_hosts: list[str]
) -> TransportSecuritySettings:
    if host in LOOPBACK_HOSTS:
        hosts = ["127.0.0.1:*", "localhost:*", "[::1]:*", *allowed_hosts]
        origins = ["http://127.0.0.1:*", "http://localhost:*", "http://[::1]:*"]
        return TransportSecuritySettings(
            enable_dns_rebinding_protection=True, allowed_hosts=hosts, allowed_origins=origins
        )
    if not allow_remote:
        raise InvalidInput(
            f"--host {host} would expose research-mcp beyond this machine; pass --allow-remote and at "
            "least one --allowed-host NAME[:PORT] (the Host header clients will send), or keep the "
            "default 127.0.0.1."
        )
    if not allowed_hosts:
        raise InvalidInput(
            "--allow-remote needs at least one --allowed-host NAME[:PORT] (e.g. gpu-box.lab:8765)."
        )
    hosts = [h if ":" in h else f"{h}:{port}" for h in allowed_hosts]
    origins = [f"http://{h}" for h in hosts] + [f"https://{h}" for h in hosts]
    return TransportSecuritySettings(
        enable_dns_rebinding_protection=True, allowed_hosts=hosts, allowed_origins=origins
    )


def client_config(url: str, token: str) -> str:
    """Ready-to-paste configuration for Claude Code and OpenCode."""
    claude = {
        "mcpServers": {
            "research": {"type": "http", "url": url, "headers": {"Authorization": f"Bearer {token}"}}
        }
    }
    opencode = {
        "mcp": {
            "research": {
                "type": "remote",
                "url": url,
                "headers": {"Authorization": "Bearer {env:RESEARCH_MCP_TOKEN}"},
                "enabled": True,
            }
        }
    }
    return (
        f"Claude Code (.mcp.json):\n{json.dumps(claude, indent=2)}\n\n"
        f"OpenCode (opencode.json; export {TOKEN_ENV}=<the token> first):\n{json.dumps(opencode, indent=2)}\n"
    )


def announce(token: Token, url: str) -> None:
    """Show a newly generated token once; later starts only say where it is kept."""
    if token.source == "generated":
        print(
            f"research-mcp: generated a bearer token, kept in {token.path} (mode 0600). "
            f"It is shown only this once:\n\n    {token.value}\n\n{client_config(url, token.value)}",
            file=sys.stderr,
            flush=True,
        )
    elif token.source == "file":
        print(f"research-mcp: serving {url} (bearer token in {token.path})", file=sys.stderr, flush=True)
    else:
        print(f"research-mcp: serving {url} (bearer token from ${TOKEN_ENV})", file=sys.stderr, flush=True)


def public_base(host: str, port: int, allowed_hosts: list[str]) -> str:
    """The address clients must use: a remote bind is reached by an allowed Host name (any
    other Host header gets 421), so the printed URL names the first allowed host."""
    if host not in LOOPBACK_HOSTS and allowed_hosts:
        name = allowed_hosts[0]
        return f"http://{name if ':' in name.rsplit(']', 1)[-1] else f'{name}:{port}'}"
    shown = f"[{host}]" if ":" in host else host
    return f"http://{shown}:{port}"


def serve_network(
    *,
    transport: str,
    state_dir: str | None,
    host: str,
    port: int,
    allow_remote: bool,
    allowed_hosts: list[str],
    max_body: int,
) -> None:
    from mcp_server.core.paths import StateDir
    from mcp_server.server import create_server

    security = security_settings(host, port, allow_remote, allowed_hosts)
    state = StateDir.open(state_dir)
    token = load_or_create_token(state.root)
    base = public_base(host, port, allowed_hosts)
    url = f"{base}/mcp" if transport == "http" else f"{base}/sse"
    server = create_server(
        state.root, token_verifier=StaticTokenVerifier(token.value), auth=auth_settings(base)
    )
    announce(token, url)
    if transport == "http":
        app = server.streamable_http_app(
            host=host, transport_security=security, max_request_body_size=max_body
        )
    else:
        app = server.sse_app(host=host, transport_security=security, max_request_body_size=max_body)
    mount_dashboard(app, state.root, token, security)
    print(
        f"research-mcp: dashboard at {base}/ui (log in once with ?token=<the token>)",
        file=sys.stderr,
        flush=True,
    )
    import uvicorn

    uvicorn.run(app, host=host, port=port, log_level="warning")


def mount_dashboard(app: Any, root: Path, token: Token, security: TransportSecuritySettings) -> None:
    """``/ui`` beside the MCP endpoint: same token, same allowed Host and Origin values."""
    from mcp_server.ui.security import Gate
    from mcp_server.ui.serve import mount

    gate = Gate(token.value, tuple(security.allowed_hosts), tuple(security.allowed_origins))
    mount(app, root, gate)
