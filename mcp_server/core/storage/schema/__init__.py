"""Frozen DDL of each schema step (read by ``core.storage.migrations``; never edit a released file)."""
