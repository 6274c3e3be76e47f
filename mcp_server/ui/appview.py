"""The MCP Apps ``ui://`` page: the dashboard's chart code in one self-contained HTML file.

Hosts render it in a sandboxed iframe whose default CSP allows inline scripts and styles
but no network, so uPlot, the chart code and the bridge are inlined. Built on first read
(a resource read), never at server start-up.
"""

from __future__ import annotations

import functools
from pathlib import Path

STATIC = Path(__file__).parent / "static"

VIEW_CSS = """
body { margin: 0; font: 13px system-ui, sans-serif; color: #171717; background: transparent; }
#app { padding: 6px; }
h2 { font-size: 14px; margin: 4px 0; } h3 { font-size: 13px; margin: 2px 0; }
.charts { display: grid; grid-template-columns: minmax(0, 1fr); gap: 8px; }
.chart { border: 1px solid #e5e7eb; border-radius: 6px; padding: 4px; }
table { border-collapse: collapse; width: 100%; margin: 6px 0; }
th, td { text-align: left; padding: 3px 6px; border-bottom: 1px solid #e5e7eb; }
td.num { text-align: right; font-variant-numeric: tabular-nums; }
tr.best { background: #ecfdf5; }
.muted { color: #6b7280; }
"""


def _inline(name: str) -> str:
    text = (STATIC / name).read_text(encoding="utf-8")
    if "</script" in text.lower() or "</style" in text.lower():
        raise ValueError(f"{name} cannot be inlined: it contains a closing tag")
    return text


@functools.cache
def chart_app_html() -> str:
    return (
        '<!doctype html>\n<html lang="en"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f"<title>research-mcp charts</title><style>{_inline('uPlot.min.css')}{VIEW_CSS}</style></head>"
        '<body><div id="app"><p class="muted">waiting for the tool result…</p></div>'
        f"<script>{_inline('uPlot.iife.min.js')}</script>"
        f"<script>{_inline('chart.js')}</script>"
        f"<script>{_inline('app-view.js')}</script>"
        "</body></html>\n"
    )
