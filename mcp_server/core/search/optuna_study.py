"""An in-memory Optuna study rebuilt from a sweep's trials as the store holds them.

No Optuna storage outlives a call: the store is the rendezvous (any server or sidecar may
drive a sweep), so each ask or prune decision rebuilds the study from plain facts —
params, state, value, intermediate values, pruner attributes — and throws it away.
Optuna is imported here only, and only when a sweep needs it (about 0.7 s and 20 MB).
"""

from __future__ import annotations

import logging
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from mcp_server.core.search.sweep_space import SIGNIFICANT_DIGITS

if TYPE_CHECKING:
    import optuna

log = logging.getLogger(__name__)

COMPLETE, RUNNING, PRUNED, FAIL = "complete", "running", "pruned", "fail"


@dataclass
class TrialFacts:
    """One trial as the store knows it."""

    run_id: str
    params: dict[str, Any]
    state: str  # complete | running | pruned | fail
    value: float | None = None  # complete: the run's best value of the metric
    intermediate: dict[int, float] = field(default_factory=dict)  # step → value
    attrs: dict[str, Any] = field(default_factory=dict)  # pruner state (Optuna system attrs)
    number: int | None = None


def _optuna() -> Any:
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    return optuna


def distributions(space: Mapping[str, Any]) -> dict[str, Any]:
    """Optuna distributions of a validated space: lists are categorical, ranges int or float."""
    optuna = _optuna()
    out: dict[str, Any] = {}
    for name, spec in space.items():
        if isinstance(spec, list):
            out[name] = optuna.distributions.CategoricalDistribution(spec)
        elif isinstance(spec["min"], int) and isinstance(spec["max"], int):
            out[name] = optuna.distributions.IntDistribution(
                spec["min"], spec["max"], log=spec.get("log", False)
            )
        else:
            out[name] = optuna.distributions.FloatDistribution(
                float(spec["min"]), float(spec["max"]), log=spec.get("log", False)
            )
    return out


def tidy(value: Any, dist: Any) -> Any:
    """An asked float to the sweep's 6 significant digits, kept inside its range."""
    if isinstance(value, float) and not isinstance(value, bool) and hasattr(dist, "low"):
        rounded = float(f"{value:.{SIGNIFICANT_DIGITS}g}")
        return min(dist.high, max(dist.low, rounded))
    return value


def build(
    direction: str,
    space: Mapping[str, Any],
    trials: Sequence[TrialFacts],
    *,
    sampler: Any = None,
    pruner: Any = None,
) -> optuna.Study:
    optuna = _optuna()
    states = optuna.trial.TrialState
    study = optuna.create_study(
        direction="minimize" if direction == "min" else "maximize", sampler=sampler, pruner=pruner
    )
    dists = distributions(space)
    for t in trials:
        used = {k: dists[k] for k in t.params if k in dists}
        state = {COMPLETE: states.COMPLETE, RUNNING: states.RUNNING, PRUNED: states.PRUNED}.get(
            t.state, states.FAIL
        )
        if state == states.COMPLETE and (t.value is None or not math.isfinite(t.value)):
            state = states.FAIL
        try:
            study.add_trial(
                optuna.trial.create_trial(
                    state=state,
                    params={k: t.params[k] for k in used},
                    distributions=used,
                    value=t.value if state == states.COMPLETE else None,
                    intermediate_values=dict(t.intermediate),
                    system_attrs={"run_id": t.run_id, **t.attrs},
                )
            )
        except ValueError as err:  # a value outside the space (a config added by hand): not a trial
            log.info("run %s is left out of the study: %s", t.run_id, err)
    return study


def ask(
    direction: str,
    space: Mapping[str, Any],
    trials: Sequence[TrialFacts],
    seed: int,
    startup: int,
    number: int | None = None,
) -> dict[str, Any]:
    """The next configuration TPE proposes after ``trials``.

    The sampler's seed is the sweep's seed plus the trial's number, so a rebuilt study asks
    reproducibly and two trials never share the random start-up draw; ``constant_liar``
    keeps parallel asks apart while earlier trials still run."""
    optuna = _optuna()
    number = len(trials) if number is None else number
    sampler = optuna.samplers.TPESampler(
        seed=(seed + number) % 2**32, n_startup_trials=startup, constant_liar=True
    )
    study = build(direction, space, trials, sampler=sampler)
    dists = distributions(space)
    trial = study.ask(fixed_distributions=dists)
    return {name: tidy(trial.params[name], dists[name]) for name in space}
