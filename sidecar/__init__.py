"""The per-run monitor process (``python -m sidecar``); see sidecar/monitor.py."""
