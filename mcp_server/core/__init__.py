"""Core services: store, runs, backends, reconcile. No MCP SDK imports live here."""
