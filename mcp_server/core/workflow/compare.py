"""compare_runs: what differs between runs — params, code, other settings — and their metric.

Compact by construction: only the params and settings that differ are named, code as a
diffstat of each run's snapshot against the first run's (``core.execution.code_diff``; the patch
itself only on request, bounded), and one metric's best and last value per run with the
deltas from the first run.
"""

from __future__ import annotations

import json
import shlex
from typing import TYPE_CHECKING, Any

from mcp_server.core.errors import InvalidInput
from mcp_server.core.execution import provenance
from mcp_server.core.execution.code_diff import diff_snapshots
from mcp_server.core.execution.sidecars import wait_drained
from mcp_server.core.monitoring.metric_keys import goal
from mcp_server.core.monitoring.metrics import best_of, finite, series_of
from mcp_server.core.workflow.compare_views import CodeChange, ComparedRun, FileChange, RunComparison

if TYPE_CHECKING:
    from mcp_server.core.execution.runs import RunService
    from mcp_server.core.storage.models import Run

MIN_RUNS, MAX_RUNS = 2, 8
MAX_KEYS_LISTED = 20
COMMAND_SHOWN = 300
# A default answer stays within the agent's 8 KB per answer (README "Context budget"), the
# envelope included: eight runs that each touch hundreds of files or carry long param values
# are listed less fully, each cut said in a note (patch=true and get_run have the rest).
ANSWER_MAX = 7 * 1024
# (files listed per run, differing params listed, characters shown of a value), tried in turn
_LEVELS = ((24, 24, 200), (8, 12, 80), (3, 6, 40), (0, 3, 16))


def _differing(values: list[Any]) -> bool:
    return any(v != values[0] for v in values[1:])


def _words(command: str) -> list[str]:
    try:
        return shlex.split(command)
    except ValueError:
        return command.split()


def _command_differs(runs: list[Run], differing_params: dict[str, list[Any]]) -> bool:
    """Whether the commands differ in more than the values of the params that differ."""
    explained = {str(v).lower() for values in differing_params.values() for v in values if v is not None}
    first = set(_words(runs[0].command))
    for run in runs[1:]:
        words = set(_words(run.command))
        for word in first ^ words:
            if not any(value in word.lower() for value in explained):
                return True
    return False


def _other(runs: list[Run], params: dict[str, list[Any]]) -> dict[str, list[Any]]:
    out: dict[str, list[Any]] = {}
    for name in ("workdir", "gpus", "backend", "env_keys"):
        values = [getattr(r, name) for r in runs]
        if _differing(values):
            out[name] = values
    if _command_differs(runs, params):
        out["command"] = [r.command[:COMMAND_SHOWN] for r in runs]
    return out


def compare_runs(
    runs_service: RunService,
    run_ids: list[str],
    metric: str | None = None,
    direction: str | None = None,
    patch: bool = False,
) -> RunComparison:
    if not MIN_RUNS <= len(run_ids) <= MAX_RUNS or len(set(run_ids)) != len(run_ids):
        raise InvalidInput(f"give {MIN_RUNS} to {MAX_RUNS} different run ids (got {len(run_ids)}).")
    if direction not in (None, "min", "max"):
        raise InvalidInput(f"direction {direction!r} is not valid; choose 'min' or 'max'.")
    if metric is not None and not 1 <= len(metric) <= 128:
        raise InvalidInput("metric must be a metric name of 1-128 characters, e.g. 'val_loss'.")
    runs = [runs_service.load(rid) for rid in run_ids]
    store = runs_service.store
    wait_drained(store, run_ids)
    with store.sql.snapshot() as conn:
        series = series_of(conn, run_ids)
    direction = direction or goal(metric or "") or "min"
    out = RunComparison(metric=metric, direction=direction, runs=[])  # type: ignore[arg-type]
    by_run = {(row.run_id, row.key): row for row in series}
    for run in runs:
        row = by_run.get((run.id, metric)) if metric else None
        found = best_of(row, direction) if row is not None else None
        out.runs.append(
            ComparedRun(
                id=run.id,
                name=run.name,
                status=run.status,
                best=found[0] if found else None,
                best_step=found[1] if found else None,
                last=finite(row.last_value) if row is not None else None,
            )
        )
    first = out.runs[0]
    for cmp in out.runs[1:]:
        if cmp.best is not None and first.best is not None:
            cmp.d_best = cmp.best - first.best
        if cmp.last is not None and first.last is not None:
            cmp.d_last = cmp.last - first.last
    notes = []
    if metric is None:
        keys = [set(k for rid, k in by_run if rid == run.id) for run in runs]
        common = sorted(set.intersection(*keys)) if keys else []
        out.metric_keys = common[:MAX_KEYS_LISTED]
        if common:
            notes.append("pass metric (one of metric_keys) for each run's best and last value and the deltas")
    elif all(r.best is None for r in out.runs):
        notes.append(f"no run logged {metric!r}")
    names = sorted({k for r in runs for k in (r.params or {})})
    for name in names:
        values = [(r.params or {}).get(name) for r in runs]
        if _differing(values):
            out.params[name] = values
    out.other = _other(runs, out.params)
    out.code = _code(runs_service, runs, patch)
    out.note = "; ".join(notes)
    return out if patch else _fit(out)


def _size(out: RunComparison) -> int:
    return len(out.model_dump_json(exclude_none=True, exclude_defaults=True))


def _shown(value: Any, chars: int) -> Any:
    """A value as listed: itself when short, else the start of its text with an ellipsis."""
    text = value if isinstance(value, str) else json.dumps(value, default=str)
    if len(text) <= chars:
        return value
    return text[: chars - 1] + "…"


def _fit(full: RunComparison) -> RunComparison:
    """The comparison cut to ANSWER_MAX: fewer files per run, fewer params, shorter values."""
    if _size(full) <= ANSWER_MAX:
        return full
    out = full
    for files_max, params_max, chars in _LEVELS:
        out = full.model_copy(deep=True)
        for change in out.code:
            if len(change.files) > files_max:
                rest = change.files[files_max:]
                added, removed = sum(f.added or 0 for f in rest), sum(f.removed or 0 for f in rest)
                cut = f"{len(rest)} more file(s), +{added} -{removed}: patch=true has the diff"
                change.files = change.files[:files_max]
                change.note = "; ".join(x for x in (change.note, cut) if x)
        names = list(out.params)
        out.params = {k: [_shown(v, chars) for v in out.params[k]] for k in names[:params_max]}
        out.other = {k: [_shown(v, chars) for v in values] for k, values in out.other.items()}
        cuts = []
        if len(names) > params_max:
            more = ", ".join(names[params_max:])[:200]
            cuts.append(f"{len(names) - params_max} more differing param(s): {more}")
        if out.params != {k: full.params[k] for k in names[:params_max]} or out.other != full.other:
            cuts.append(f"values cut at {chars} characters (get_run has a run's own)")
        out.note = "; ".join(x for x in (out.note, *cuts) if x)
        if _size(out) <= ANSWER_MAX:
            break
    return out


def _code(runs_service: RunService, runs: list[Run], patch: bool) -> list[CodeChange]:
    dirs = [runs_service.files(r.id).run_dir for r in runs]
    docs = [provenance.load(d) for d in dirs]
    first = docs[0]
    changes = []
    for i in range(1, len(runs)):
        doc = docs[i]
        if first is None or doc is None:
            changes.append(CodeChange(run_id=runs[i].id, note="code not compared: a run was never launched"))
            continue
        found = diff_snapshots((dirs[0], first.get("git") or {}), (dirs[i], doc.get("git") or {}), patch)
        files = [FileChange(**f) for f in found.get("files", [])]
        changes.append(
            CodeChange(
                run_id=runs[i].id,
                same="files" in found and not files,
                files=files,
                commits=found.get("commits", []),
                patch=found.get("patch"),
                note=found.get("note", ""),
            )
        )
    return changes
