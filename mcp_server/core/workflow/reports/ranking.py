"""The best run, and how sure that is.

Runs are ranked by their best value of the ranking metric over their whole history (as
``get_sweep`` ranks them). "How sure" compares the winner's margin over the runner-up with
the noise of the two curves: the larger spread (standard deviation) of either run's last
values. A trend inside that window inflates the spread, so the verdict errs towards
"not sure", never towards a false winner.
"""

from __future__ import annotations

import math
import statistics
from dataclasses import dataclass

from mcp_server.core.monitoring.metric_keys import goal
from mcp_server.core.run_views import MetricSeriesOut, MetricSummary, RunDetail

NOISE_WINDOW = 10
MIN_NOISE_POINTS = 3


@dataclass(frozen=True)
class Standing:
    run: RunDetail
    value: float
    step: int | None


@dataclass(frozen=True)
class Verdict:
    ranked: list[Standing]
    margin: float | None = None
    relative: float | None = None
    noise: float | None = None
    words: str = ""

    @property
    def best(self) -> Standing | None:
        return self.ranked[0] if self.ranked else None

    @property
    def runner_up(self) -> Standing | None:
        return self.ranked[1] if len(self.ranked) > 1 else None


def summary_of(run: RunDetail, key: str) -> MetricSummary | None:
    return next((m for m in run.metrics if m.key == key), None)


def best_value(summary: MetricSummary, direction: str) -> tuple[float, int | None] | None:
    """The run's best value in ``direction`` (with its step when the summary knows it)."""
    if goal(summary.key) == direction and summary.best is not None:
        return summary.best, summary.best_step
    value = summary.min if direction == "min" else summary.max
    return None if value is None else (value, None)


def tail_spread(series: MetricSeriesOut | None) -> float | None:
    if series is None:
        return None
    values = [v for _, v in series.points if v is not None and math.isfinite(v)][-NOISE_WINDOW:]
    return statistics.pstdev(values) if len(values) >= MIN_NOISE_POINTS else None


def rank(
    runs: list[RunDetail],
    metric: str | None,
    direction: str,
    curves: dict[str, dict[str, MetricSeriesOut]],
) -> Verdict:
    if metric is None:
        return Verdict([], words="no loss- or accuracy-like metric was logged, so no run is ranked")
    standings = []
    for run in runs:
        summary = summary_of(run, metric)
        found = best_value(summary, direction) if summary is not None else None
        if found is not None:
            standings.append(Standing(run, found[0], found[1]))
    standings.sort(key=lambda s: s.value, reverse=direction == "max")
    if not standings:
        return Verdict([], words=f"no run logged {metric}")
    if len(standings) == 1:
        return Verdict(standings, words=f"only one run logged {metric}: nothing to compare it with")
    best, second = standings[0], standings[1]
    margin = abs(best.value - second.value)
    relative = margin / abs(second.value) if second.value else None
    spreads = [tail_spread(curves.get(s.run.id, {}).get(metric)) for s in (best, second)]
    noise = max(spreads) if all(x is not None for x in spreads) else None  # type: ignore[type-var]
    if noise is None:
        words = f"too few {metric} points to judge the noise; the margin alone is {margin:.4g}"
    elif margin > 2 * noise:
        words = (
            f"clear: the margin is {margin / noise:.1f}× the noise" if noise else "clear: the curves are flat"
        )
    elif margin > noise:
        words = f"likely, not certain: the margin is {margin / noise:.1f}× the noise"
    else:
        words = "within the noise: not a clear winner (rerun with more seeds to separate them)"
    return Verdict(standings, margin=margin, relative=relative, noise=noise, words=words)
