"""Execution backends behind one interface (DESIGN invariant 3).

A backend turns a run's rendered files into a job, tells what became of jobs, and stops
them. Nothing above this package knows which backend a run uses beyond its name.
"""

from mcp_server.core.backends.base import Backend

__all__ = ["Backend"]
