"""Alert rules: pure functions over a metric's recent values. No I/O, no clock.

Thresholds are relative (a spike is "3× the recent median", never "loss > 10"): losses
live on every scale, so an absolute threshold is wrong for most runs. Every alert carries
a signature; ``raise_alert`` drops a repeat of the same signature within its TTL.
"""

from __future__ import annotations

import bisect
import math
from collections import deque
from collections.abc import Sequence

from mcp_server.core.monitoring.alert_specs import DEFAULT_CHOICES, FOREVER_S, AlertSpec

SPIKE_FACTOR = 3.0
TREND_WINDOW = 30  # divergence looks at this many latest points; a spike is judged against their median
SPIKE_MIN_POINTS = 3
TREND_FACTOR = 1.5  # late median ≥ this × early median
TREND_TAU = 0.5  # and the values must rise consistently (Kendall's tau)


class RecentWindow:
    """The last ``size`` finite values of one metric, kept in order and sorted (O(1) median)."""

    def __init__(self, size: int = TREND_WINDOW) -> None:
        self.size = size
        self.values: deque[float] = deque(maxlen=size)
        self.ordered: list[float] = []

    def __len__(self) -> int:
        return len(self.values)

    def push(self, value: float) -> None:
        values = self.values
        if len(values) == self.size:
            del self.ordered[bisect.bisect_left(self.ordered, values[0])]
        values.append(value)
        bisect.insort(self.ordered, value)

    def median(self) -> float:
        s = self.ordered
        mid = len(s) // 2
        return s[mid] if len(s) % 2 else (s[mid - 1] + s[mid]) / 2


def _fmt(value: float) -> str:
    return f"{value:.4g}"


def nonfinite_alert(key: str, step: int, value: float) -> AlertSpec:
    """A NaN/Inf is never noise: one critical alert per run (the first key to break names it)."""
    what = "NaN" if math.isnan(value) else ("+Inf" if value > 0 else "-Inf")
    return AlertSpec(
        kind="nonfinite",
        severity="critical",
        message=f"{key} became {what} at step {step}; the run is unlikely to recover",
        signature="nonfinite",
        choices=DEFAULT_CHOICES,
        data={"key": key, "step": step, "value": what},
        ttl_s=FOREVER_S,
    )


def spike_alert(key: str, step: int, value: float, window: RecentWindow, ttl_s: float) -> AlertSpec | None:
    """``value`` is a spike when it is ≥ 3× the median of the points before it (≥ 3 of them)."""
    n = len(window.ordered)
    if n < SPIKE_MIN_POINTS:
        return None
    median = window.median()
    if median <= 0 or value < SPIKE_FACTOR * median:
        return None  # a relative rule has no meaning around zero or below it
    ratio = value / median
    return AlertSpec(
        kind="spike",
        severity="warning",
        message=(
            f"{key} spiked to {_fmt(value)} at step {step}: {ratio:.1f}× the median {_fmt(median)} "
            f"of the previous {n} points"
        ),
        signature=f"spike:{key}",
        choices=DEFAULT_CHOICES,
        data={"key": key, "step": step, "value": value, "median": median, "ratio": round(ratio, 3)},
        ttl_s=ttl_s,
    )


def kendall_tau(values: Sequence[float]) -> float:
    """Rank correlation of values with their order: +1 = always rising, -1 = always falling."""
    n = len(values)
    if n < 2:
        return 0.0
    score = 0
    for i in range(n - 1):
        vi = values[i]
        for vj in values[i + 1 :]:
            score += (vj > vi) - (vj < vi)
    return score / (n * (n - 1) / 2)


def divergence_alert(key: str, steps: Sequence[int], window: RecentWindow, ttl_s: float) -> AlertSpec | None:
    """A loss that rises consistently over the latest window: its late third ≥ 1.5× its early third."""
    values = list(window.values)
    n = len(values)
    if n < TREND_WINDOW:
        return None
    third = n // 3
    early = sorted(values[:third])[third // 2]
    late = sorted(values[-third:])[third // 2]
    if early <= 0 or late < TREND_FACTOR * early:
        return None
    tau = kendall_tau(values)
    if tau < TREND_TAU:
        return None
    span = f" (steps {steps[0]}–{steps[-1]})" if steps else ""
    return AlertSpec(
        kind="divergence",
        severity="warning",
        message=(
            f"{key} is trending up over its last {n} points{span}: median {_fmt(early)} → {_fmt(late)}; "
            "the run may be diverging"
        ),
        signature=f"divergence:{key}",
        choices=DEFAULT_CHOICES,
        data={"key": key, "early_median": early, "late_median": late, "tau": round(tau, 3)},
        ttl_s=ttl_s,
    )


def stall_alert(idle_s: float, stall_s: float, last_activity: float) -> AlertSpec | None:
    """No new metric and no new output for ``stall_s`` while the job lives (one alert per quiet spell)."""
    if stall_s <= 0 or idle_s < stall_s:
        return None
    return AlertSpec(
        kind="stall",
        severity="warning",
        message=(
            f"no new metrics or output for {idle_s:.0f} s while the job is still running; "
            "it may be hung (deadlock, stuck data loader, waiting on I/O)"
        ),
        signature=f"stall:{last_activity:.0f}",
        choices=DEFAULT_CHOICES,
        data={"idle_s": round(idle_s, 1), "threshold_s": stall_s},
        ttl_s=FOREVER_S,
    )
