"""Builders of MCP resource documents (cluster state, experiment context)."""
