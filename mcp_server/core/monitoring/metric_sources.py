"""Which sources a run's sidecar reads metrics from, as the store records them.

The sidecar writes its progress per source (the sidecars row for metrics.jsonl and
output.log, a metric_files row per framework log file) and each series' owning source;
readers — get_run's monitor, the "never logged" hints of get_metrics and get_sweep — read
them here, so they all name the same sources.
"""

from __future__ import annotations

from sqlmodel import Session, col, func, select

from mcp_server.core.run_views import MetricSource
from mcp_server.core.storage.models import MetricFile, MetricSeries, Sidecar

MAX_LISTED = 20  # a run writing hundreds of event files is summarised, not listed


def sources_of(session: Session, row: Sidecar) -> list[MetricSource]:
    """Every source the run's sidecar has read (or is reading), metrics.jsonl and output.log first."""
    owned = dict(
        session.exec(  # type: ignore[call-overload]
            select(MetricSeries.source, func.count())
            .where(MetricSeries.run_id == row.run_id)
            .group_by(col(MetricSeries.source))
        ).all()
    )
    out = []
    if row.metrics_offset or owned.get("jsonl"):
        out.append(
            MetricSource(
                kind="jsonl", path="metrics.jsonl", records=row.metrics_records, keys=owned.get("jsonl", 0)
            )
        )
    if row.log_parsing or row.output_records:
        out.append(
            MetricSource(kind="log", path="output.log", records=row.output_records, keys=owned.get("log", 0))
        )
    files = session.exec(
        select(MetricFile)
        .where(MetricFile.run_id == row.run_id)
        .order_by(col(MetricFile.found_at))
        .limit(MAX_LISTED)
    ).all()
    for f in files:
        out.append(
            MetricSource(kind=f.kind, path=f.path, records=f.records, keys=owned.get(f.kind, 0), bad=f.bad)
        )
    return out


def describe(sources: list[MetricSource]) -> str:
    """'metrics.jsonl, output.log, runs/x/events.out.tfevents.1 (tfevents)' — for hints."""
    if not sources:
        return "no source yet"
    return ", ".join(s.path if s.kind in ("jsonl", "log") else f"{s.path} ({s.kind})" for s in sources)


def describe_runs(session: Session, run_ids: list[str]) -> str:
    """What the sidecars of several runs read, by kind: 'output.log (3 runs), tfevents (2 files)'."""
    runs: dict[str, int] = {}
    files: dict[str, int] = {}
    for row in session.exec(select(Sidecar).where(col(Sidecar.run_id).in_(run_ids))).all():
        for source in sources_of(session, row):
            if source.kind in ("jsonl", "log"):
                runs[source.path] = runs.get(source.path, 0) + 1
            else:
                files[source.kind] = files.get(source.kind, 0) + 1
    parts = [f"{path} ({n} run{'s' * (n > 1)})" for path, n in runs.items()]
    parts += [f"{kind} ({n} file{'s' * (n > 1)})" for kind, n in files.items()]
    return ", ".join(parts) or "no source yet"
