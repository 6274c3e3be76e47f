"""Tunables of notification delivery, read from the environment (a sidecar and the sender it
starts inherit the server's). Stdlib only."""

from __future__ import annotations

from dataclasses import dataclass

from mcp_server.core.settings import _float_env, _int_env


@dataclass(frozen=True)
class NotifySettings:
    # Each send gives up after this long without an answer (apprise's read timeout; connect ≤ 5 s).
    timeout_s: float = 10.0
    # A message is tried once, then this many more times, the back-off doubling from backoff_s.
    retries: int = 5
    backoff_s: float = 5.0
    max_backoff_s: float = 300.0
    # Servers and sidecars look for work this often; the sender polls twice as often.
    poll_s: float = 1.0
    # The sender exits after this long with nothing to send (any server or sidecar restarts it).
    idle_s: float = 30.0
    # Events older than this when first seen are not notified (a target configured long ago
    # on a store that kept working without it would otherwise replay a day of news).
    max_age_s: float = 86400.0

    @property
    def lease_s(self) -> float:
        """A sender whose heartbeat is older than this is gone; another may take its targets."""
        return max(10.0, 5 * self.poll_s)

    @property
    def claim_s(self) -> float:
        """How long a claimed message is held before another sender may try it (a sender died)."""
        return 3 * self.timeout_s + 30.0

    def backoff(self, attempts: int) -> float:
        return float(min(self.max_backoff_s, self.backoff_s * 2 ** max(0, attempts - 1)))

    @classmethod
    def from_env(cls) -> NotifySettings:
        return cls(
            timeout_s=max(0.5, _float_env("RESEARCH_MCP_NOTIFY_TIMEOUT_S", cls.timeout_s)),
            retries=_int_env("RESEARCH_MCP_NOTIFY_RETRIES", cls.retries, 0),
            backoff_s=_float_env("RESEARCH_MCP_NOTIFY_BACKOFF_S", cls.backoff_s),
            max_backoff_s=_float_env("RESEARCH_MCP_NOTIFY_MAX_BACKOFF_S", cls.max_backoff_s),
            poll_s=max(0.05, _float_env("RESEARCH_MCP_NOTIFY_POLL_S", cls.poll_s)),
            idle_s=_float_env("RESEARCH_MCP_NOTIFY_IDLE_S", cls.idle_s),
            max_age_s=_float_env("RESEARCH_MCP_NOTIFY_MAX_AGE_S", cls.max_age_s),
        )
