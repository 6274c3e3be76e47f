"""Lineage: a rerun with overrides records its parent and what changed; a run's family tree.

``rerun(run_id, overrides={params, args, env, command})`` builds the new run's spec from
its parent's: ``command`` replaces the command; ``params`` are merged into the params and
put into the command (a sweep run's command is rendered again from the sweep's base
command, so ``{name}`` placeholders work; another run's ``--name value`` / ``--name=value``
option gets the new value, or ``--name=value`` is appended); ``args`` set, add (``true``:
a bare flag) or remove (``null``) command-line options without recording them as params;
``env`` sets or (``null``) removes variables, whose values stay private. What changed is
kept in the new run's ``options["lineage"]`` (env as names only), so the tree of a run's
ancestors and descendants can say what each edge changed.
"""

from __future__ import annotations

import re
import shlex
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from sqlmodel import col, select

from mcp_server.core.backends import registry
from mcp_server.core.errors import InvalidInput
from mcp_server.core.execution.launch import read_env
from mcp_server.core.execution.run_inputs import (
    _validate_command,
    _validate_env,
    _validate_params,
    _validate_workdir,
)
from mcp_server.core.ids import validate_env_key
from mcp_server.core.search.sweep_space import format_value, render_command
from mcp_server.core.storage.models import Run, Sweep
from mcp_server.core.workflow.compare_views import Lineage, LineageNode

if TYPE_CHECKING:
    from mcp_server.core.execution.runs import RunService

OVERRIDE_KEYS = ("params", "args", "env", "command")
MAX_NODES = 200
MAX_OPTIONS = 64
_OPTION_NAME = re.compile(r"^-{0,2}[A-Za-z_][A-Za-z0-9_.-]{0,63}$")
_VALUE = r"""(?:'[^']*'|"(?:[^"\\]|\\.)*"|[^\s;&|'"]+)"""


def _flag(name: str) -> str:
    if not isinstance(name, str) or not _OPTION_NAME.match(name):
        raise InvalidInput(
            f"option {name!r} is not allowed: give a name like 'lr', '--lr' or '-n' (letters, digits, _ . -)."
        )
    return name if name.startswith("-") else f"--{name}"


def set_option(command: str, name: str, value: Any) -> str:
    """``command`` with option ``name`` set to ``value``: replaced where it is, appended as
    ``--name=value`` where it is not; ``True`` is a bare flag, ``None``/``False`` remove it."""
    flag = _flag(name)
    pattern = re.compile(
        r"(\s*)(?<![\w-])"
        + re.escape(flag)
        + r"(?:(=)("
        + _VALUE
        + r")|(\s+)(?!-)("
        + _VALUE
        + r"))?(?![\w=-])"
    )
    match = pattern.search(command)
    if value is None or value is False:
        return command if match is None else command[: match.start()] + command[match.end() :]
    if value is True:
        return command if match is not None else f"{command.rstrip()} {flag}"
    text = shlex.quote(format_value(value))
    if match is None:
        return f"{command.rstrip()} {shlex.quote(f'{flag}={format_value(value)}')}"
    sep = match.group(2) or match.group(4) or "="
    return command[: match.start()] + f"{match.group(1)}{flag}{sep}{text}" + command[match.end() :]


def _check(overrides: Mapping[str, Any]) -> None:
    unknown = set(overrides) - set(OVERRIDE_KEYS)
    if unknown:
        raise InvalidInput(f"unknown overrides {sorted(unknown)}; valid: {', '.join(OVERRIDE_KEYS)}.")
    for key in ("params", "args", "env"):
        value = overrides.get(key)
        if value is not None and not isinstance(value, Mapping):
            raise InvalidInput(f"overrides.{key} must be an object of name → value.")
        if value is not None and len(value) > MAX_OPTIONS:
            raise InvalidInput(f"overrides.{key} has {len(value)} entries; the limit is {MAX_OPTIONS}.")
    if overrides.get("command") is not None and not isinstance(overrides["command"], str):
        raise InvalidInput("overrides.command must be a string: the whole new command.")


def derive(
    parent: Run, base_command: str | None, overrides: Mapping[str, Any] | None
) -> tuple[str, dict[str, Any], dict[str, str | None], dict[str, Any]]:
    """(command, params, env changes, the change record) of a rerun of ``parent``."""
    overrides = overrides or {}
    _check(overrides)
    changes: dict[str, Any] = {}
    command = parent.command
    if overrides.get("command") is not None and overrides["command"] != parent.command:
        command = overrides["command"]
        changes["command"] = True
    params = dict(parent.params or {})
    new_params = dict(overrides.get("params") or {})
    changed_params = {k: v for k, v in new_params.items() if params.get(k, object()) != v}
    if changed_params:
        changes["params"] = {k: [params.get(k), v] for k, v in changed_params.items()}
        params.update(changed_params)
        params = {k: v for k, v in params.items() if v is not None}
        if base_command and "command" not in changes:
            command = render_command(base_command, params)
        else:
            for name, value in changed_params.items():
                _flag(name)
                command = set_option(command, name, value)
    args = dict(overrides.get("args") or {})
    if args:
        changes["args"] = {}
        for name, value in args.items():
            command = set_option(command, name, value)
            changes["args"][_flag(name)] = value
    env: dict[str, str | None] = dict(overrides.get("env") or {})
    for key, value in env.items():
        validate_env_key(key)
        if value is not None and not isinstance(value, str):
            raise InvalidInput(f"overrides.env[{key!r}] must be a string, or null to remove the variable.")
    if env:
        changes["env"] = sorted(env)
    return command, params, env, changes


def rerun_spec(
    runs: RunService, old: Run, overrides: Mapping[str, Any] | None
) -> tuple[dict[str, Any], dict[str, str]]:
    """The row fields and env of a rerun of ``old`` with ``overrides``, all validated."""
    base = None
    if old.sweep_id is not None:
        with runs.store.read() as s:
            base = s.exec(select(Sweep.base_command).where(Sweep.id == old.sweep_id)).first()
    command, params, env_changes, changes = derive(old, base, overrides)
    _validate_command(command)
    params = _validate_params(params)
    kept = {k: v for k, v in read_env(runs.files(old.id)).items() if env_changes.get(k, "") is not None}
    env = _validate_env({**kept, **{k: v for k, v in env_changes.items() if v is not None}})
    kept_options = registry.backend_class(old.backend).options_of_run(old.options or {})
    plan = runs._plan(old.backend, old.gpus, kept_options, command, env)
    options = {k: v for k, v in (old.options or {}).items() if k not in ("trial", "lineage")}
    if kept_options:
        options[old.backend] = kept_options
    fields = dict(
        name=old.name,
        command=command,
        workdir=_validate_workdir(old.workdir),
        sweep_id=old.sweep_id,
        gpus=old.gpus,
        params=params,
        env_keys=sorted(env),
        options={**options, "gpuwrap": plan.record, "queue": plan.pool, "lineage": {"changes": changes}},
        parent_run_id=old.id,
        backend=old.backend,
    )
    return fields, env


def describe(changes: Mapping[str, Any] | None) -> str:
    """A change record in words: "lr 0.1→0.01; --epochs →3; env WANDB_MODE; command replaced"."""
    if not changes:
        return ""
    parts = []
    for name, (old, new) in (changes.get("params") or {}).items():
        before = "" if old is None else format_value(old)
        parts.append(f"{name} {before}→{'unset' if new is None else format_value(new)}")
    for flag, value in (changes.get("args") or {}).items():
        parts.append(f"{flag} {'removed' if value is None or value is False else '→' + format_value(value)}")
    if changes.get("env"):
        parts.append("env " + ", ".join(changes["env"]))
    if changes.get("command"):
        parts.append("command replaced")
    return "; ".join(parts)


def _edge(run: Run, parent: Run | None) -> str:
    record = (run.options or {}).get("lineage")
    if record is not None:
        return describe(record.get("changes")) or "same spec"
    if parent is None:
        return ""
    keys = sorted(set(run.params or {}) | set(parent.params or {}))
    diffs = [
        f"{k} {format_value((parent.params or {}).get(k, ''))}→{format_value((run.params or {}).get(k, ''))}"
        for k in keys
        if (run.params or {}).get(k) != (parent.params or {}).get(k)
    ]
    if run.command != parent.command and not diffs:
        diffs.append("command changed")
    return "; ".join(diffs)


def lineage(runs: RunService, run_id: str) -> Lineage:
    """Ancestors (root first) and descendants of a run, each node with its edge's change."""
    run = runs.load(run_id)
    seen = {run.id: run}
    chain: list[Run] = []
    note = ""
    with runs.store.read() as s:
        cursor = run
        while cursor.parent_run_id and len(chain) < MAX_NODES:
            parent = s.exec(select(Run).where(Run.id == cursor.parent_run_id)).first()
            if parent is None or parent.id in seen:
                break
            chain.append(parent)
            seen[parent.id] = parent
            cursor = parent
        children: dict[str, list[Run]] = {}
        level = [run.id]
        count = 0
        while level and count < MAX_NODES:
            rows = s.exec(
                select(Run).where(col(Run.parent_run_id).in_(level)).order_by(col(Run.pk)).limit(MAX_NODES)
            ).all()
            level = []
            for child in rows:
                if child.id in seen or count >= MAX_NODES:
                    continue
                seen[child.id] = child
                children.setdefault(child.parent_run_id or "", []).append(child)
                level.append(child.id)
                count += 1
        if count >= MAX_NODES:
            note = f"descendants cut at {MAX_NODES}"
    chain.reverse()

    def node(r: Run, with_children: bool = True) -> LineageNode:
        parent = seen.get(r.parent_run_id or "")
        kids = [node(c) for c in children.get(r.id, [])] if with_children else []
        return LineageNode(id=r.id, name=r.name, status=r.status, change=_edge(r, parent), children=kids)

    return Lineage(
        run_id=run.id,
        ancestors=[node(r, with_children=False) for r in chain],
        tree=node(run),
        note=note,
    )
