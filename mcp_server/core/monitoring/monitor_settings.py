"""Tunables of the sidecar (per-run monitor) and of the server's sidecar supervision.

Read from the environment like ``core.settings``; a sidecar inherits the environment of
the server that started it, so one variable steers both. Stdlib only (the sidecar
imports it).
"""

from __future__ import annotations

import os
from dataclasses import dataclass

from mcp_server.core.settings import _float_env


@dataclass(frozen=True)
class MonitorSettings:
    # How often the sidecar looks at the run's files; an idle look is a few stat() calls.
    poll_s: float = 0.25
    # How often it proves it is alive; the server restarts a sidecar whose process is gone.
    heartbeat_s: float = 5.0
    # How often it asks the backend (tmux, Slurm) whether a job that has not started, or
    # whose process group is gone without an exit code, still exists.
    backend_check_s: float = 10.0
    # No new metric and no new output for this long while the job lives → a stall alert.
    stall_s: float = 900.0
    # A spike or divergence alert for the same key is raised at most once per this window.
    alert_ttl_s: float = 1800.0
    # LLM judge: off unless a model is named (litellm model string, e.g. "openai/gpt-4o-mini").
    judge_model: str | None = None
    judge_interval_s: float = 30.0
    judge_timeout_s: float = 30.0
    # How often the workdir is walked for framework log files (event files, metrics.csv,
    # trainer_state.json); known files are stat'ed every poll regardless.
    discover_s: float = 5.0
    # Printed lines of other ranks ([rank1]: / [default1]:) are skipped unless this is set;
    # then they are stored under rank<N>/<key>.
    log_all_ranks: bool = False
    # A sweep with a pruner: how often a run's sidecar asks it (when the metric advanced), and
    # how many finished runs must have reached a step before a run is compared with them.
    prune_check_s: float = 5.0
    prune_min_runs: int = 3

    @property
    def stale_s(self) -> float:
        """A heartbeat older than this means the sidecar is gone (used across hosts)."""
        return 3 * self.heartbeat_s + 5

    @classmethod
    def from_env(cls) -> MonitorSettings:
        return cls(
            poll_s=max(0.01, _float_env("RESEARCH_MCP_SIDECAR_POLL_S", cls.poll_s)),
            heartbeat_s=max(0.05, _float_env("RESEARCH_MCP_SIDECAR_HEARTBEAT_S", cls.heartbeat_s)),
            backend_check_s=_float_env("RESEARCH_MCP_SIDECAR_BACKEND_CHECK_S", cls.backend_check_s),
            stall_s=_float_env("RESEARCH_MCP_STALL_S", cls.stall_s),
            alert_ttl_s=_float_env("RESEARCH_MCP_ALERT_TTL_S", cls.alert_ttl_s),
            judge_model=os.environ.get("RESEARCH_MCP_JUDGE_MODEL") or None,
            judge_interval_s=_float_env("RESEARCH_MCP_JUDGE_INTERVAL_S", cls.judge_interval_s),
            judge_timeout_s=max(0.1, _float_env("RESEARCH_MCP_JUDGE_TIMEOUT_S", cls.judge_timeout_s)),
            discover_s=max(0.05, _float_env("RESEARCH_MCP_SIDECAR_DISCOVER_S", cls.discover_s)),
            log_all_ranks=os.environ.get("RESEARCH_MCP_LOG_RANKS", "0").strip().lower() == "all",
            prune_check_s=max(0.05, _float_env("RESEARCH_MCP_PRUNE_CHECK_S", cls.prune_check_s)),
            prune_min_runs=max(1, int(_float_env("RESEARCH_MCP_PRUNE_MIN_RUNS", cls.prune_min_runs))),
        )
