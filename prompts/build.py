"""Build the agent prompts from their templates and live data (no MCP imports).

The MCP layer gathers the live data (the registered tools, cluster state, experiment
context) into ``Live`` and calls these; tests can call them with any ``Live``.
"""

from __future__ import annotations

from dataclasses import dataclass

from mcp_server.core.errors import InvalidInput
from prompts.render import load, render

MAX_GOAL_CHARS = 4000
MAX_ITERATIONS = 100


@dataclass(frozen=True)
class Live:
    tools: tuple[tuple[str, str], ...]  # (name, description) of every registered tool
    cluster_type: str | None  # local_gpu | slurm | cpu_only, None when not detected
    cluster_state: str
    memory_rules: str
    experiment_context: str
    recent_plans: str
    cpu_run_limit: int | None = None  # local runs at once on a cpu_only machine (None: unknown)

    @property
    def tool_names(self) -> frozenset[str]:
        return frozenset(name for name, _ in self.tools)


def first_line(text: str | None) -> str:
    for line in (text or "").splitlines():
        if line.strip():
            return line.strip()
    return ""


def tool_catalog(tools: tuple[tuple[str, str], ...]) -> str:
    return "\n".join(f"- `{name}` — {first_line(desc)}" for name, desc in sorted(tools))


def cluster_guidance(live: Live) -> str:
    name = live.cluster_type if live.cluster_type in ("local_gpu", "slurm", "cpu_only") else "unknown"
    # The CPU guidance names the machine's own run limit, never a parallelism it would refuse.
    values = {}
    if name in ("cpu_only", "unknown"):
        limit = live.cpu_run_limit
        values["cpu_runs"] = f"{limit} run{'s' if limit != 1 else ''}" if limit else "CPU-run-limit runs"
    return render(load(f"cluster/{name}"), values, live.tool_names).strip()


def _goal(goal: str) -> str:
    if not isinstance(goal, str) or not goal.strip() or len(goal) > MAX_GOAL_CHARS:
        raise InvalidInput(f"goal must be 1-{MAX_GOAL_CHARS} characters saying what to find out.")
    return " ".join(goal.split())


def agent_mode(live: Live) -> str:
    return render(
        load("agent_mode"),
        {
            "cluster_state": live.cluster_state,
            "cluster_guidance": cluster_guidance(live),
            "memory_rules": live.memory_rules,
            "tool_catalog": tool_catalog(live.tools),
            "experiment_context": live.experiment_context,
        },
        live.tool_names,
    )


def plan_mode(live: Live, goal: str) -> str:
    return render(
        load("plan_mode"),
        {
            "goal": _goal(goal),
            "cluster_state": live.cluster_state,
            "cluster_guidance": cluster_guidance(live),
            "memory_rules": live.memory_rules,
            "recent_plans": live.recent_plans,
        },
        live.tool_names,
    )


def wild_mode(live: Live, goal: str, max_iterations: int) -> str:
    if isinstance(max_iterations, bool) or not isinstance(max_iterations, int):
        raise InvalidInput(f"max_iterations={max_iterations!r} must be a whole number.")
    if not 1 <= max_iterations <= MAX_ITERATIONS:
        raise InvalidInput(f"max_iterations={max_iterations} is out of range; give 1 to {MAX_ITERATIONS}.")
    return render(
        load("wild_mode"),
        {
            "goal": _goal(goal),
            "max_iterations": str(max_iterations),
            "cluster_state": live.cluster_state,
            "cluster_guidance": cluster_guidance(live),
            "memory_rules": live.memory_rules,
            "experiment_context": live.experiment_context,
        },
        live.tool_names,
    )
