"""The notification watcher survives a failed publish: the server keeps answering and notifying.

The watcher runs in the server's lifespan task group, so an exception escaping it would end
the server. Publishing is made to fail once (in-process, the only fault injected); the
store, the server and the client are real.
"""

from __future__ import annotations

import logging
from pathlib import Path

import anyio
import pytest
from mcp import Client
from mcp.server.subscriptions import InMemorySubscriptionBus, ResourceUpdated

from mcp_server.core.monitoring.alerts import raise_alert
from mcp_server.core.services import Services
from mcp_server.notify import CONTEXT_URI
from mcp_server.server import create_server

pytestmark = pytest.mark.anyio


def alert(services: Services, signature: str) -> None:
    """An alert written straight to the store, as a sidecar does."""
    with services.store.write() as s:
        raise_alert(s, run_id=None, kind="rule", severity="warning", message=signature, signature=signature)


async def test_a_publish_that_fails_once_leaves_the_server_answering_and_notifying(
    state_dir: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    real_publish = InMemorySubscriptionBus.publish
    failed: list[ResourceUpdated] = []

    async def publish_failing_once(self: InMemorySubscriptionBus, event: ResourceUpdated) -> None:
        if not failed:
            failed.append(event)
            raise RuntimeError("listener stream broke")
        await real_publish(self, event)

    monkeypatch.setattr(InMemorySubscriptionBus, "publish", publish_failing_once)
    services = Services(state_dir)
    try:
        async with (
            Client(create_server(state_dir), mode="auto") as c,
            c.listen(resource_subscriptions=[CONTEXT_URI]) as updates,
        ):
            await anyio.to_thread.run_sync(alert, services, "first")
            with anyio.fail_after(10):
                while not failed:
                    await anyio.sleep(0.05)
            assert str(failed[0].uri) == CONTEXT_URI

            page = await c.call_tool("list_runs", {})  # the server still answers
            assert not page.is_error and page.structured_content["total"] == 0  # type: ignore[index]

            await anyio.to_thread.run_sync(alert, services, "second")
            with anyio.fail_after(10):
                update = await updates.__anext__()
            assert str(update.uri) == CONTEXT_URI  # type: ignore[union-attr]
    finally:
        services.close()
    logged = [r.exc_info[1] for r in caplog.records if r.exc_info and r.levelno >= logging.WARNING]
    assert [str(e) for e in logged] == ["listener stream broke"]
