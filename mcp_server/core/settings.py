"""Tunables read from the environment once per process.

Defaults suit a researcher's machine; tests shorten the waits through the same variables
a user would set, so no code path exists only for tests.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field

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


def _int_env(name: str, default: int, minimum: int) -> int:
    raw = os.environ.get(name)
    if raw is None or raw == "":
        return default
    try:
        value = int(raw)
    except ValueError:
        raise InvalidInput(
            f"{name}={raw!r} is not a whole number; unset it or give e.g. {default}."
        ) from None
    if value < minimum:
        raise InvalidInput(f"{name}={raw!r} must be ≥ {minimum}.")
    return value


def _bool_env(name: str, default: bool) -> bool:
    raw = os.environ.get(name, "").strip().lower()
    if raw == "":
        return default
    if raw in ("1", "true", "yes", "on"):
        return True
    if raw in ("0", "false", "no", "off"):
        return False
    raise InvalidInput(f"{name}={raw!r} is not a yes/no value; use 1 or 0.")


def default_cpu_run_limit() -> int:
    """Half the usable cores: a CPU training run usually spreads over several threads."""
    try:
        cores = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        cores = os.cpu_count() or 1
    return max(1, cores // 2)


# Knobs a launch script's waiter must see exactly as the server saw them (see ``as_env``).
KNOBS = {
    "launch_grace_s": "RESEARCH_MCP_LAUNCH_GRACE_S",
    "queue_poll_s": "RESEARCH_MCP_QUEUE_POLL_S",
    "gpu_free_memory_mib": "RESEARCH_MCP_GPU_FREE_MEMORY_MIB",
    "cpu_run_limit": "RESEARCH_MCP_CPU_RUN_LIMIT",
    "probe_timeout_s": "RESEARCH_MCP_PROBE_TIMEOUT_S",
}


@dataclass(frozen=True)
class Settings:
    # stop_run sends SIGINT, waits this long, then SIGTERM, waits again, then SIGKILL.
    stop_grace_s: float = 10.0
    # A run whose launch never produced a backend job within this window is declared lost.
    launch_grace_s: float = 30.0
    # A queued run's waiter checks for free GPUs / a run slot this often.
    queue_poll_s: float = 0.5
    # A GPU with more memory in use than this (MiB) is not free, whoever uses it.
    gpu_free_memory_mib: float = 1024.0
    # cpu_only machines: local runs at once.
    cpu_run_limit: int = field(default_factory=default_cpu_run_limit)
    # Upper bound on each cluster probe (NVML, nvidia-smi, an engine's probe).
    probe_timeout_s: float = 3.0
    # End the processes a command leaves behind (``sleep 600 &``, daemons) when it ends.
    end_leftovers: bool = False

    @classmethod
    def from_env(cls) -> Settings:
        return cls(
            stop_grace_s=_float_env("RESEARCH_MCP_STOP_GRACE_S", cls.stop_grace_s),
            launch_grace_s=_float_env("RESEARCH_MCP_LAUNCH_GRACE_S", cls.launch_grace_s),
            queue_poll_s=max(0.05, _float_env(KNOBS["queue_poll_s"], cls.queue_poll_s)),
            gpu_free_memory_mib=_float_env(KNOBS["gpu_free_memory_mib"], cls.gpu_free_memory_mib),
            cpu_run_limit=_int_env(KNOBS["cpu_run_limit"], default_cpu_run_limit(), 1),
            probe_timeout_s=max(0.05, _float_env(KNOBS["probe_timeout_s"], cls.probe_timeout_s)),
            end_leftovers=_bool_env("RESEARCH_MCP_END_LEFTOVERS", cls.end_leftovers),
        )

    def as_env(self) -> dict[str, str]:
        """These settings as environment variables, for a process that must decide like this one."""
        return {env: str(getattr(self, name)) for name, env in KNOBS.items()}
