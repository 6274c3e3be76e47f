"""The human's view: a live dashboard over the same core services the MCP tools use.

Server-rendered pages (Jinja2) plus a small charting library (uPlot, shipped as a static
file with its licence) and one script per concern; no Node build step. The same chart
code is inlined into the MCP Apps ``ui://`` resource so hosts that render Apps draw the
curves of ``get_metrics``/``get_sweep`` in the chat.
"""
