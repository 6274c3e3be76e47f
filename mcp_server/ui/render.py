"""HTML rendering: Jinja2 templates (autoescaped), number formats and server-drawn sparklines.

A page can be asked for one of its live blocks only (``?fragment=runs``): the page's
script swaps that block in when the feed says something changed, so the HTML is written
once, here, and never again in JavaScript.
"""

from __future__ import annotations

import functools
import math
from pathlib import Path
from typing import Any

from jinja2 import Environment, FileSystemLoader, select_autoescape
from markupsafe import Markup

TEMPLATES = Path(__file__).parent / "templates"


def fmt(value: Any) -> str:
    """A metric for a table: 4 significant digits; NaN/Inf and missing as readers expect."""
    if value is None:
        return "–"
    if isinstance(value, bool) or not isinstance(value, int | float):
        return str(value)
    if isinstance(value, float) and not math.isfinite(value):
        return "NaN" if math.isnan(value) else ("+Inf" if value > 0 else "-Inf")
    return f"{value:.4g}"


def spark_svg(values: list[float | None], width: int = 96, height: int = 22) -> Markup:
    """An inline SVG polyline of ``values``; NaN points break the line and show as a red mark."""
    finite = [v for v in values if v is not None]
    if len(finite) < 2:
        return Markup(f'<svg class="spark" width="{width}" height="{height}"></svg>')
    lo, hi = min(finite), max(finite)
    span = (hi - lo) or 1.0
    step = (width - 2) / max(1, len(values) - 1)
    segments: list[list[str]] = [[]]
    marks = []
    for i, v in enumerate(values):
        x = 1 + i * step
        if v is None:
            marks.append(f'<line x1="{x:.1f}" y1="1" x2="{x:.1f}" y2="{height - 1}" class="nan"/>')
            segments.append([])
            continue
        y = height - 1 - (v - lo) / span * (height - 2)
        segments[-1].append(f"{x:.1f},{y:.1f}")
    lines = "".join(f'<polyline points="{" ".join(s)}"/>' for s in segments if len(s) > 1)
    return Markup(
        f'<svg class="spark" width="{width}" height="{height}" viewBox="0 0 {width} {height}">'
        f"{lines}{''.join(marks)}</svg>"
    )


@functools.cache
def environment() -> Environment:
    env = Environment(
        loader=FileSystemLoader(TEMPLATES),
        autoescape=select_autoescape(default=True, default_for_string=True),
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.filters["fmt"] = fmt
    env.globals["spark"] = spark_svg
    # Macros as globals, not per-template imports: a block rendered alone (a fragment)
    # does not run its template's top-level imports.
    macros = env.get_template("macros.html").module
    env.globals.update(badge=macros.badge, params=macros.params, alert_card=macros.alert_card)  # type: ignore[attr-defined]
    return env


def render(name: str, context: dict[str, Any], fragment: str | None = None) -> str:
    """The whole page, or only its block named ``fragment`` (a live part the page swaps in)."""
    template = environment().get_template(name)
    if fragment is None:
        return template.render(context)
    for owner in (template, environment().get_template("base.html")):  # a page's blocks, then the frame's
        block = owner.blocks.get(fragment)
        if block is not None:
            return "".join(block(owner.new_context(context)))
    raise KeyError(fragment)
