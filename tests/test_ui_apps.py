"""MCP Apps: get_metrics and get_sweep carry the ``ui://`` chart, and it draws in a real browser.

The chart page is read with the real MCP client (``resources/read``), loaded into a
sandboxed iframe of a host page in headless Chromium, and handed a real ``get_metrics``
result the way an Apps host does it (ext-apps over postMessage: ``ui/initialize``, then
``ui/notifications/initialized``, then ``tool-input`` and ``tool-result``). For a sweep the
page asks the host to call get_metrics (``tools/call``); the test host answers with the
server's real answer, as a host proxies it.
"""

from __future__ import annotations

import json
import shlex
import sys
from pathlib import Path
from typing import Any

import pytest
from mcp import Client

from mcp_server.demo import train
from mcp_server.server import create_server
from mcp_server.tools.apps import CHART_URI
from tests.browser import artifacts, chromium, js_errors, need_browser
from tests.helpers import wait_for

pytestmark = pytest.mark.anyio

HOST_PAGE = """<!doctype html><html><body>
<iframe id="view" sandbox="allow-scripts" style="width:720px;height:700px;border:0"></iframe>
<script>
window.hostLog = [];
const frame = document.getElementById('view');
function toView(msg) { frame.contentWindow.postMessage(msg, '*'); }
window.addEventListener('message', (ev) => {
  if (ev.source !== frame.contentWindow) return;
  const m = ev.data; window.hostLog.push(m.method || ('reply ' + m.id));
  if (m.method === 'ui/initialize') {
    toView({jsonrpc: '2.0', id: m.id, result: {protocolVersion: '2026-01-26',
      hostInfo: {name: 'test-host', version: '1'}, hostCapabilities: {serverTools: {}},
      hostContext: {theme: 'light', displayMode: 'inline'}}});
  } else if (m.method === 'ui/notifications/initialized') {
    toView({jsonrpc: '2.0', method: 'ui/notifications/tool-input', params: {arguments: window.toolInput}});
    toView({jsonrpc: '2.0', method: 'ui/notifications/tool-result', params: window.toolResult});
  } else if (m.method === 'tools/call') {
    window.proxied = m.params;
    toView({jsonrpc: '2.0', id: m.id, result: window.proxyResult});
  }
});
window.start = (html, input, result, proxy) => {
  window.toolInput = input; window.toolResult = result; window.proxyResult = proxy;
  frame.srcdoc = html;
};
</script></body></html>"""


def wire(result: Any) -> dict[str, Any]:
    """A CallToolResult as it travels in JSON-RPC (camelCase, no nulls)."""
    return result.model_dump(mode="json", by_alias=True, exclude_none=True)


def in_view(driver: Any, script: str) -> Any:
    driver.switch_to.frame(driver.find_element("id", "view"))
    try:
        return driver.execute_script(script)
    finally:
        driver.switch_to.default_content()


async def test_tools_list_binds_the_chart_to_get_metrics_and_get_sweep_only(state_dir: Path) -> None:
    async with Client(create_server(state_dir)) as client:
        tools = {t.name: t for t in (await client.list_tools()).tools}
        bound = {name for name, t in tools.items() if (t.meta or {}).get("ui")}
        assert bound == {"get_metrics", "get_sweep"}
        assert tools["get_metrics"].meta == {"ui": {"resourceUri": CHART_URI}}
        page = (await client.read_resource(CHART_URI)).contents[0]
        assert page.mime_type == "text/html;profile=mcp-app"
        assert "uPlot" in page.text and "ui/initialize" in page.text and "<script src" not in page.text
        # Hosts without Apps get today's answer: text plus structured content, nothing else.
        answer = await client.call_tool("get_sweep", {"sweep_id": "sweep-20260101-000000-00000000"})
        assert answer.is_error and "no sweep" in answer.content[0].text


async def test_the_chart_page_draws_a_get_metrics_result_handed_over_like_an_apps_host(
    state_dir: Path,
    services,
    workdir: Path,
    tmp_path: Path,
    tmp_path_factory: pytest.TempPathFactory,  # type: ignore[no-untyped-def]
) -> None:
    need_browser()
    shots = artifacts(tmp_path_factory)
    command = (
        f"{shlex.quote(sys.executable)} {shlex.quote(train.__file__)} --steps 60 --step-time 0 --lr {{lr}}"
    )
    sweep = services.sweeps.create(
        name="apps", goal="g", base_command=command, parameters={"lr": [0.03, 0.3, 1.6]}, workdir=str(workdir)
    )
    ids = [r.id for r in sweep.runs]
    wait_for(lambda: all(services.runs.load(i).status == "finished" for i in ids), timeout=90, what="sweep")
    async with Client(create_server(state_dir)) as client:
        html = (await client.read_resource(CHART_URI)).contents[0].text
        metrics_args = {"run_ids": ids[:1], "keys": ["loss", "w"]}
        metrics = wire(await client.call_tool("get_metrics", metrics_args))
        sweep_args = {"sweep_id": sweep.id, "metric": "loss"}
        sweep_answer = wire(await client.call_tool("get_sweep", sweep_args))
        proxied = wire(await client.call_tool("get_metrics", {"run_ids": ids, "keys": ["loss"]}))
    host = tmp_path / "host.html"
    host.write_text(HOST_PAGE)
    with chromium() as driver:
        driver.get(host.as_uri())
        driver.execute_script("window.start(...arguments)", html, metrics_args, metrics, None)
        drawn = wait_for(
            lambda: in_view(driver, "return window.rmcpDrawn && window.rmcpDrawn.loss && window.rmcpDrawn"),
            what="the curves of the get_metrics result",
        )
        assert drawn["loss"]["points"] == 60 and drawn["w"]["points"] == 60
        assert in_view(driver, "return document.querySelectorAll('.uplot canvas').length") == 2
        log = driver.execute_script("return window.hostLog")
        assert log[:2] == ["ui/initialize", "ui/notifications/initialized"]
        assert "ui/notifications/size-changed" in log
        driver.save_screenshot(str(shots / "apps-get_metrics.png"))
        assert js_errors(driver) == []

        driver.get(host.as_uri())
        driver.execute_script("window.start(...arguments)", html, sweep_args, sweep_answer, proxied)
        lines = wait_for(
            lambda: in_view(
                driver, "return window.rmcpDrawn && window.rmcpDrawn.loss && window.rmcpDrawn.loss.lines"
            ),
            what="the sweep's curves",
        )
        assert lines == 3
        asked = driver.execute_script("return window.proxied")
        assert asked == {"name": "get_metrics", "arguments": {"run_ids": ids, "keys": ["loss"]}}
        best = sweep_answer["structuredContent"]["best"]["name"]
        assert in_view(driver, "return document.querySelector('tr.best').textContent").startswith(best)
        driver.save_screenshot(str(shots / "apps-get_sweep.png"))
        assert js_errors(driver) == []
    assert json.dumps(metrics)  # the same answer a host without Apps shows as text
