"""``write_report``: gather, rank, draw, write — and answer with the path and one short line.

The agent's context is a budget, so the answer is the file's path and a summary, never the
report. The Markdown is written last and atomically (a reader never sees half a report);
images a previous report in the same file linked, and this one does not, are removed.
"""

from __future__ import annotations

import os
import re
import tempfile
import time
from pathlib import Path
from typing import TYPE_CHECKING

from mcp_server.core.workflow.reports import charts, markdown
from mcp_server.core.workflow.reports.answer import ReportAnswer
from mcp_server.core.workflow.reports.gather import gather
from mcp_server.core.workflow.reports.location import project_dir, report_path
from mcp_server.core.workflow.reports.markdown import Image
from mcp_server.core.workflow.reports.ranking import rank

if TYPE_CHECKING:
    from mcp_server.core.services import Services

MAX_OVERLAY_RUNS = 20
MAX_RUN_IMAGES = 24
_OURS = re.compile(r"\]\(((?:curves|run)-[A-Za-z0-9._-]+\.png)\)")
_UNSAFE = re.compile(r"[^A-Za-z0-9._-]+")


def _file_name(prefix: str, text: str, taken: set[str]) -> str:
    stem = f"{prefix}-{_UNSAFE.sub('-', text).strip('-.') or 'x'}"[:80]
    name, n = f"{stem}.png", 2
    while name in taken:
        name, n = f"{stem}-{n}.png", n + 1
    taken.add(name)
    return name


def _write_atomic(path: Path, text: str) -> None:
    fd, tmp = tempfile.mkstemp(prefix=".report-", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            fh.write(text)
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def write_report(
    services: Services,
    *,
    sweep_id: str | None = None,
    run_ids: list[str] | None = None,
    plan_id: str | None = None,
    metrics: list[str] | None = None,
    direction: str | None = None,
    name: str | None = None,
    path: str | None = None,
    project: Path | None = None,
) -> ReportAnswer:
    data = gather(
        services, sweep_id=sweep_id, run_ids=run_ids, plan_id=plan_id, metrics=metrics, direction=direction
    )
    root = project or project_dir(services.state.root)
    target = report_path(root, name or data.default_name, path)
    folder = target.parent
    folder.mkdir(parents=True, exist_ok=True)
    previous = set(_OURS.findall(target.read_text(encoding="utf-8"))) if target.exists() else set()

    verdict = rank(data.runs, data.metrics[0] if data.metrics else None, data.direction, data.curves)
    images: list[Image] = []
    taken: set[str] = set()
    order = [s.run for s in verdict.ranked] + [
        r for r in data.runs if r.id not in {s.run.id for s in verdict.ranked}
    ]
    for key in data.metrics:
        lines = [
            (run.name, series.points)
            for run in order[:MAX_OVERLAY_RUNS]
            if (series := data.curves.get(run.id, {}).get(key)) is not None and series.points
        ]
        if lines:
            file = _file_name("curves", key, taken)
            charts.overlay(key, lines, folder / file)
            more = f" (the best {MAX_OVERLAY_RUNS} of {len(order)})" if len(order) > MAX_OVERLAY_RUNS else ""
            images.append(Image(file, f"{key} of every run{more}", per_run=False))
    for run in order[:MAX_RUN_IMAGES]:
        panels = [
            (key, s.points)
            for key in data.metrics
            if (s := data.curves.get(run.id, {}).get(key)) and s.points
        ]
        if panels:
            file = _file_name("run", f"{run.name}-{run.id[-8:]}", taken)
            charts.per_run(f"{run.name} ({run.status})", panels, folder / file)
            images.append(Image(file, f"{run.name}: {', '.join(k for k, _ in panels)}", per_run=True))
    for stale in previous - taken:
        (folder / stale).unlink(missing_ok=True)
    _write_atomic(target, markdown.render(data, verdict, images, time.time()))
    return ReportAnswer(path=str(target), summary=markdown.summary_line(data, verdict, len(images)))
