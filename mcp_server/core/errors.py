"""One exception hierarchy for every core service.

Each message is written for the reader who has to act on it (often a model calling a
tool): it names what was wrong and what would be valid. The MCP layer turns any
``ResearchError`` into a ``ToolError`` carrying this text unchanged.
"""


class ResearchError(Exception):
    """Base class; ``str(err)`` is the full, user-facing explanation."""


class InvalidInput(ResearchError):
    """An argument was malformed or out of range; nothing was changed."""


class NotFound(ResearchError):
    """An id names nothing in the store."""


class Conflict(ResearchError):
    """The request is valid in general but not in the object's current state."""


class BackendError(ResearchError):
    """The execution backend (tmux, Slurm) refused or failed an operation."""


class StoreError(ResearchError):
    """The store cannot be used right now (busy, full, corrupt, missing, too new); nothing changed."""
