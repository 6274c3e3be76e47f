"""Report images, drawn server-side with matplotlib's Agg canvas.

matplotlib costs about 0.7 s to import, so it is imported inside these functions: only a
process that writes a report pays for it. The object API (``Figure`` + ``FigureCanvasAgg``)
touches no global pyplot state, so reports written from two tool calls at once do not
draw into each other's figures.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

Points = Sequence[tuple[int, float | None]]
MAX_LEGEND = 12
DPI = 90


def _figure(width: float, height: float) -> Any:
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    # Fixed margins: a layout engine would draw every figure twice (half the cost of a report).
    fig = Figure(figsize=(width, height), dpi=DPI)
    FigureCanvasAgg(fig)
    return fig


def _xy(points: Points) -> tuple[list[int], list[float]]:
    return [s for s, _ in points], [math.nan if v is None else v for _, v in points]


def _scale(ax: Any, values: list[float]) -> None:
    finite = [v for v in values if math.isfinite(v)]
    if finite and min(finite) > 0 and max(finite) / min(finite) > 50:
        ax.set_yscale("log")


def overlay(metric: str, lines: Sequence[tuple[str, Points]], path: Path) -> None:
    """One metric, every run on the same axes."""
    fig = _figure(7.5, 4.0)
    ax = fig.add_subplot()
    every: list[float] = []
    for label, points in lines:
        xs, ys = _xy(points)
        every += ys
        ax.plot(xs, ys, linewidth=1.3, label=label)
    _scale(ax, every)
    ax.set_title(f"{metric}: all runs")
    ax.set_xlabel("step")
    ax.set_ylabel(metric)
    ax.grid(alpha=0.3)
    if 0 < len(lines) <= MAX_LEGEND:
        ax.legend(fontsize="small", loc="best")
    fig.subplots_adjust(left=0.1, right=0.97, top=0.91, bottom=0.13)
    fig.savefig(path, format="png")


def per_run(title: str, series: Sequence[tuple[str, Points]], path: Path) -> None:
    """One run, one panel per metric."""
    rows = max(1, len(series))
    fig = _figure(7.5, 1.2 + 2.0 * rows)  # keep in step with the margins below
    axes = fig.subplots(rows, 1, squeeze=False)[:, 0]
    for ax, (key, points) in zip(axes, series, strict=False):
        xs, ys = _xy(points)
        ax.plot(xs, ys, linewidth=1.3)
        bad = [s for s, v in points if v is None]
        if bad:
            ax.axvline(
                bad[0], color="red", linestyle="--", linewidth=1, label=f"first NaN/Inf (step {bad[0]})"
            )
            ax.legend(fontsize="small")
        _scale(ax, ys)
        ax.set_ylabel(key)
        ax.grid(alpha=0.3)
    axes[-1].set_xlabel("step")
    fig.suptitle(title)
    height = 1.2 + 2.0 * rows
    fig.subplots_adjust(left=0.11, right=0.97, top=1 - 0.45 / height, bottom=0.5 / height, hspace=0.3)
    fig.savefig(path, format="png")
