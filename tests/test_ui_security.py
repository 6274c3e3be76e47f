"""Who may see and act on the dashboard: token, session cookie, CSRF, Host and Origin.

Over real HTTP against the ASGI app (Starlette's test client) with a real store; the
last test does the same through ``research-mcp serve --transport http``, where the
dashboard sits beside the MCP endpoint behind the same token.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from starlette.testclient import TestClient

from mcp_server.core.services import Services
from mcp_server.ui.app import create_ui_app
from mcp_server.ui.security import Gate
from tests.browser import free_port
from tests.helpers import wait_for
from tests.test_plans import plan_markdown

TOKEN = "t" * 20 + "0123456789abcdef"
BASE = "http://127.0.0.1:8766"
GATE = Gate(TOKEN, ("127.0.0.1:*", "localhost:*"), ("http://127.0.0.1:*", "http://localhost:*"))


@pytest.fixture
def world(services: Services, workdir: Path) -> dict[str, str]:
    """A run (with a private-looking name), an open alert, a draft plan and an active rule."""
    run = services.runs.create(
        name="secret-project-run", command="true", workdir=str(workdir), auto_start=False
    )
    from mcp_server.core.monitoring.alerts import raise_alert

    with services.store.write() as s:
        alert = raise_alert(
            s, run_id=run.id, kind="spike", severity="warning", message="loss spiked", signature="t"
        )
    assert alert is not None
    plan = services.plans.save(title="secret plan", goal="g", raw_markdown=plan_markdown())
    rule = services.memory.add(title="secret rule", content="c")
    return {"run": run.id, "alert": alert.id, "plan": plan.id, "memory": rule.id}


@pytest.fixture
def client(services: Services) -> Iterator[TestClient]:
    with TestClient(create_ui_app(services, GATE), base_url=BASE) as c:
        yield c


def pages(world: dict[str, str]) -> list[str]:
    run = world["run"]
    return [
        "/ui", "/ui/", f"/ui/runs/{run}", "/ui/compare", f"/ui/compare?runs={run}", "/ui/alerts",
        "/ui/plans", f"/ui/plans/{world['plan']}", "/ui/memory", "/ui?fragment=runs",
        f"/ui/api/metrics?run_ids={run}", f"/ui/api/runs/{run}/logs", "/ui/api/events",
    ]  # fmt: skip


def logged_in(client: TestClient) -> TestClient:
    answer = client.get(f"/ui?token={TOKEN}", follow_redirects=False)
    assert answer.status_code == 303 and answer.headers["location"] == "/ui"
    cookie = answer.headers["set-cookie"]
    assert "HttpOnly" in cookie and "SameSite=strict" in cookie and "Path=/ui" in cookie
    return client


def test_without_the_token_every_page_and_data_endpoint_is_401_with_no_data(
    client: TestClient, world: dict[str, str]
) -> None:
    for path in pages(world):
        for headers in ({}, {"authorization": "Bearer wrong-token-0123456789"}):
            answer = client.get(path, headers=headers)
            assert answer.status_code == 401, path
            assert "secret" not in answer.text and world["run"] not in answer.text, path
    wrong = client.get("/ui?token=not-the-token")
    assert wrong.status_code == 401 and "is not this server" in wrong.text


def test_the_login_link_sets_a_session_and_then_every_page_answers(
    client: TestClient, world: dict[str, str]
) -> None:
    logged_in(client)
    for path in pages(world):
        if path.endswith("/events"):
            continue  # a stream: covered by the browser tests
        answer = client.get(path)
        assert answer.status_code == 200, (path, answer.text[:300])
    page = client.get("/ui")
    assert "secret-project-run" in page.text
    assert "no-referrer" in page.headers["referrer-policy"]  # the token never leaks through a Referer
    assert "frame-ancestors 'none'" in page.headers["content-security-policy"]
    # A bearer token works too (scripts, the bench), without any cookie.
    bare = TestClient(create_ui_app_for(client), base_url=BASE)
    assert (
        bare.get(
            f"/ui/api/runs/{world['run']}/logs", headers={"authorization": f"Bearer {TOKEN}"}
        ).status_code
        == 200
    )


def create_ui_app_for(client: TestClient):  # type: ignore[no-untyped-def]
    return client.app


def test_a_foreign_host_gets_421_everywhere(client: TestClient, world: dict[str, str]) -> None:
    logged_in(client)
    for path in [*pages(world), "/ui/static/chart.js", f"/ui?token={TOKEN}"]:
        assert client.get(path, headers={"host": "evil.example:8766"}).status_code == 421, path
    answer = client.post(
        f"/ui/api/memories/{world['memory']}", json={"active": False}, headers={"host": "attacker.test"}
    )
    assert answer.status_code == 421


def test_an_action_without_session_csrf_or_from_another_origin_changes_nothing(
    client: TestClient, services: Services, world: dict[str, str]
) -> None:
    actions = [
        (f"/ui/api/alerts/{world['alert']}/resolve", {"choice": "Ignore"}),
        (f"/ui/api/plans/{world['plan']}", {"status": "approved"}),
        (f"/ui/api/memories/{world['memory']}", {"active": False}),
    ]

    def unchanged() -> None:
        assert services.alerts.load(world["alert"]).status == "open"
        assert services.plans.get(world["plan"]).status == "draft"
        assert services.memory.load(world["memory"]).active is True

    for url, body in actions:
        assert client.post(url, json=body).status_code == 401  # no session
    unchanged()
    logged_in(client)
    page = client.get("/ui")
    csrf = page.text.split('name="csrf" content="')[1].split('"')[0]
    for url, body in actions:
        assert client.post(url, json=body).status_code == 403  # no CSRF token
        assert client.post(url, json=body, headers={"x-csrf-token": "f" * 64}).status_code == 403
        evil = {"x-csrf-token": csrf, "origin": "http://evil.example"}
        assert client.post(url, json=body, headers=evil).status_code == 403
        cross = {"x-csrf-token": csrf, "sec-fetch-site": "cross-site"}
        assert client.post(url, json=body, headers=cross).status_code == 403
        form = client.post(url, data=body, headers={"x-csrf-token": csrf})  # a form post is not JSON
        assert form.status_code == 415
        assert client.get(url).status_code == 405  # a link cannot act either
    unchanged()
    # With the session and the page's token the same actions work, through the core services.
    ok = {"x-csrf-token": csrf, "origin": BASE}
    for url, body in actions:
        answer = client.post(url, json=body, headers=ok)
        assert answer.status_code == 200, answer.text
    assert services.alerts.load(world["alert"]).resolution == "Ignore"
    assert services.plans.get(world["plan"]).status == "approved"
    assert services.memory.load(world["memory"]).active is False
    bad = client.post(f"/ui/api/alerts/{world['alert']}/resolve", json={"choice": "Ignore"}, headers=ok)
    assert bad.status_code == 409 and "already resolved" in bad.json()["error"]


def test_serve_http_mounts_the_dashboard_behind_the_mcp_token(state_dir: Path) -> None:
    port = free_port()
    env = {**os.environ, "RESEARCH_MCP_TOKEN": TOKEN}
    proc = subprocess.Popen(
        [sys.executable, "-m", "mcp_server", "serve", "--transport", "http", "--port", str(port),
         "--state-dir", str(state_dir)],
        env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, start_new_session=True,
    )  # fmt: skip
    base = f"http://127.0.0.1:{port}"
    try:
        wait_for(lambda: _answers(f"{base}/ui"), timeout=30, what="the server")
        with httpx.Client(base_url=base) as http:
            assert http.get("/ui").status_code == 401
            assert http.get("/ui", headers={"host": "evil.example"}).status_code == 421
            login = http.get(f"/ui?token={TOKEN}", follow_redirects=True)
            assert login.status_code == 200 and "research-mcp" in login.text
            assert http.get("/mcp").status_code == 401  # the MCP endpoint keeps its bearer check
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(10)


def _answers(url: str) -> bool:
    try:
        httpx.get(url, timeout=2)
    except httpx.HTTPError:
        return False
    return True
