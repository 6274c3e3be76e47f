"""Alert rules as pure functions over a metric's recent values."""

import math

from sidecar.rules import (
    TREND_WINDOW,
    RecentWindow,
    divergence_alert,
    kendall_tau,
    nonfinite_alert,
    spike_alert,
    stall_alert,
)


def window_of(values: list[float]) -> RecentWindow:
    w = RecentWindow()
    for v in values:
        w.push(v)
    return w


def test_window_median_tracks_the_last_values() -> None:
    w = RecentWindow(size=5)
    for v in [9, 1, 2, 3, 4, 5]:  # 9 falls out of the window
        w.push(v)
    assert list(w.values) == [1, 2, 3, 4, 5] and w.ordered == [1, 2, 3, 4, 5] and w.median() == 3
    w.push(0)
    assert w.ordered == [0, 2, 3, 4, 5] and w.median() == 3
    even = window_of([4.0, 1.0])
    assert even.median() == 2.5


def test_nan_and_inf_are_critical_and_signed_once_per_run() -> None:
    nan = nonfinite_alert("loss", 50, math.nan)
    inf = nonfinite_alert("grad_norm", 51, -math.inf)
    assert nan.severity == "critical" and "NaN at step 50" in nan.message and "-Inf" in inf.message
    assert nan.signature == inf.signature == "nonfinite"
    assert nan.choices == ("Ignore", "Stop run")


def test_a_spike_is_relative_to_the_recent_median() -> None:
    w = window_of([1.0, 1.1, 0.9, 1.0])
    spike = spike_alert("loss", 10, 5.0, w, ttl_s=60)
    assert spike is not None and spike.severity == "warning" and spike.signature == "spike:loss"
    assert spike.data["ratio"] == 5.0 and "5.0×" in spike.message
    assert spike_alert("loss", 10, 2.9, w, ttl_s=60) is None  # under 3×
    # The same rule on a tiny-scale loss: no absolute threshold anywhere.
    tiny = window_of([1e-4, 1.2e-4, 0.9e-4])
    assert spike_alert("loss", 3, 4e-4, tiny, ttl_s=60) is not None
    assert spike_alert("loss", 3, 2e-4, tiny, ttl_s=60) is None
    # A huge but steady loss never spikes.
    assert spike_alert("loss", 3, 5000.0, window_of([4900.0, 5100.0, 5000.0]), ttl_s=60) is None


def test_a_spike_needs_three_previous_points_and_a_positive_baseline() -> None:
    assert spike_alert("loss", 2, 100.0, window_of([1.0, 1.0]), ttl_s=60) is None
    assert spike_alert("nll", 9, 5.0, window_of([-2.0, -1.0, -1.5]), ttl_s=60) is None


def test_divergence_needs_a_consistent_rise() -> None:
    rising = [1.0 + 0.05 * i for i in range(TREND_WINDOW)]  # 1.0 → 2.45
    alert = divergence_alert("loss", list(range(TREND_WINDOW)), window_of(rising), ttl_s=60)
    assert alert is not None and alert.signature == "divergence:loss" and "trending up" in alert.message
    falling = list(reversed(rising))
    assert divergence_alert("loss", [], window_of(falling), ttl_s=60) is None
    # Noisy but flat: medians close, no alert.
    flat = [1.0 + (0.3 if i % 2 else -0.3) for i in range(TREND_WINDOW)]
    assert divergence_alert("loss", [], window_of(flat), ttl_s=60) is None
    # Too few points to call a trend.
    assert divergence_alert("loss", [], window_of(rising[:10]), ttl_s=60) is None


def test_kendall_tau() -> None:
    assert kendall_tau([1, 2, 3, 4]) == 1.0 and kendall_tau([4, 3, 2, 1]) == -1.0 and kendall_tau([1]) == 0.0


def test_stall_fires_after_the_threshold_once_per_quiet_spell() -> None:
    assert stall_alert(idle_s=5, stall_s=10, last_activity=1000.0) is None
    first = stall_alert(idle_s=12, stall_s=10, last_activity=1000.0)
    later = stall_alert(idle_s=50, stall_s=10, last_activity=1000.0)
    other_spell = stall_alert(idle_s=12, stall_s=10, last_activity=2000.0)
    assert first is not None and later is not None and other_spell is not None
    assert first.signature == later.signature != other_spell.signature
    assert stall_alert(idle_s=1e9, stall_s=0, last_activity=0) is None  # 0 turns the rule off
