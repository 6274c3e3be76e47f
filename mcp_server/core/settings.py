"""Tunables read from the environment once per process.

Defaults suit a researcher's machine; tests shorten the waits through the same variables
a user would set, so no code path exists only for tests.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

from mcp_server.core.errors import InvalidInput


def _float_env(name: str, default: float) -> float:
    raw = os.environ.get(name)
    if raw is None or raw == "":
        return default
    try:
        value = float(raw)
    except ValueError:
        raise InvalidInput(
            f"{name}={raw!r} is not a number; unset it or give seconds, e.g. {default}."
        ) from None
    if value < 0:
        raise InvalidInput(f"{name}={raw!r} must be ≥ 0.")
    return value


@dataclass(frozen=True)
class Settings:
    # stop_run sends SIGINT, waits this long, then SIGTERM, waits again, then SIGKILL.
    stop_grace_s: float = 10.0
    # A run whose launch never produced a backend job within this window is declared lost.
    launch_grace_s: float = 30.0
    # At most one scheduler query per this many seconds, shared by all processes.
    slurm_poll_s: float = 5.0
    # A job the scheduler stops listing is declared lost only after this long (and two polls).
    slurm_missing_grace_s: float = 60.0

    @classmethod
    def from_env(cls) -> Settings:
        return cls(
            stop_grace_s=_float_env("RESEARCH_MCP_STOP_GRACE_S", cls.stop_grace_s),
            launch_grace_s=_float_env("RESEARCH_MCP_LAUNCH_GRACE_S", cls.launch_grace_s),
            slurm_poll_s=_float_env("RESEARCH_MCP_SLURM_POLL_S", cls.slurm_poll_s),
            slurm_missing_grace_s=_float_env("RESEARCH_MCP_SLURM_MISSING_GRACE_S", cls.slurm_missing_grace_s),
        )
