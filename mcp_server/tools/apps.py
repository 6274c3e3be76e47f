"""MCP Apps wiring: the ``ui://`` chart that get_metrics and get_sweep answers render in.

Hosts that render Apps (Claude, VS Code, Cursor) fetch the chart page with
``resources/read`` and hand it the tool's result; hosts without Apps ignore the tool's
``_meta.ui`` and show the usual text. The page's HTML is built from the dashboard's chart
code on first read, so server start-up pays nothing for it; tools/list grows only by the
two tools' ``_meta``.
"""

from __future__ import annotations

from typing import Any

from mcp.server.apps import APP_MIME_TYPE, Apps
from mcp.server.mcpserver.resources import FunctionResource

CHART_URI = "ui://research-mcp/chart"
# What @apps.tool(resource_uri=CHART_URI) stamps, given to the tools' own decorators so they
# stay registered where they are (and in their order) with the rest of their area.
CHART_META: dict[str, Any] = {"ui": {"resourceUri": CHART_URI}}


def _html() -> str:
    from mcp_server.ui.appview import chart_app_html

    return chart_app_html()


def chart_apps() -> Apps:
    apps = Apps()
    apps.add_resource(
        FunctionResource(
            uri=CHART_URI,
            name="research-mcp chart",
            description="curves of get_metrics and get_sweep answers",
            mime_type=APP_MIME_TYPE,
            fn=_html,
        )
    )
    return apps
