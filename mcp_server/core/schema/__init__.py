"""Frozen DDL of each schema step (read by ``core.migrations``; never edit a released file)."""
