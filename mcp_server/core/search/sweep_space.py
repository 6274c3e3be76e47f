"""A sweep's parameter space: validation, expansion into configurations, and commands.

Pure functions (no store): grid sweeps take lists and expand to their Cartesian product
in the order given; random sweeps sample lists, ranges ``{"min", "max"}`` and log-ranges
``{"min", "max", "log": true}`` with a seeded RNG, so the same seed gives the same runs.
TPE sweeps take the same space but are not expanded: ``core.search.adaptive`` asks for each
configuration when a slot frees.
"""

from __future__ import annotations

import itertools
import math
import random
import re
import shlex
from collections.abc import Mapping
from typing import Any, Literal

from mcp_server.core.errors import InvalidInput

Method = Literal["grid", "random", "tpe"]
METHODS: tuple[str, ...] = ("grid", "random", "tpe")
MAX_PARAMETERS = 16
MAX_VALUES = 1000
MAX_SWEEP_RUNS = 1000
MAX_VALUE_CHARS = 256
PARAM_NAME_PATTERN = r"^[A-Za-z_][A-Za-z0-9_.-]{0,63}$"
_PARAM_NAME_RE = re.compile(PARAM_NAME_PATTERN)
# ``{name}`` not preceded by ``$``; names follow PARAM_NAME_PATTERN.
_PLACEHOLDER = re.compile(r"(?<!\$)\{([A-Za-z_][A-Za-z0-9_.-]{0,63})\}")
_RANGE_KEYS = frozenset({"min", "max", "log"})
SIGNIFICANT_DIGITS = 6

Scalar = str | int | float | bool


def _is_number(value: object) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


def _check_scalar(name: str, value: object) -> None:
    if isinstance(value, bool) or _is_number(value):
        return
    if isinstance(value, str):
        if not value or len(value) > MAX_VALUE_CHARS or "\x00" in value or "\n" in value:
            raise InvalidInput(
                f"parameter {name!r}: value {value[:40]!r} must be 1-{MAX_VALUE_CHARS} characters "
                "on one line."
            )
        return
    raise InvalidInput(
        f"parameter {name!r}: value {value!r} is not allowed; values are strings, numbers or booleans "
        "(finite numbers; no nested lists or objects)."
    )


def _check_range(name: str, spec: Mapping[str, Any], method: str) -> None:
    if method == "grid":
        raise InvalidInput(
            f"parameter {name!r} is a range; grid sweeps need a list of values, e.g. [0.1, 0.01]. "
            "Ranges and log-ranges work with method='random' or 'tpe'."
        )
    unknown = set(spec) - _RANGE_KEYS
    if unknown or "min" not in spec or "max" not in spec:
        raise InvalidInput(
            f'parameter {name!r}: a range is {{"min": a, "max": b}} or a log-range '
            f'{{"min": a, "max": b, "log": true}}; got keys {sorted(spec)}.'
        )
    lo, hi, log = spec["min"], spec["max"], spec.get("log", False)
    if not _is_number(lo) or not _is_number(hi) or not isinstance(log, bool):
        raise InvalidInput(f"parameter {name!r}: min and max must be finite numbers and log true or false.")
    if not lo < hi:
        raise InvalidInput(f"parameter {name!r}: min ({lo}) must be less than max ({hi}).")
    if log and lo <= 0:
        raise InvalidInput(f"parameter {name!r}: a log-range needs min > 0 (got {lo}).")


def validate_space(parameters: Mapping[str, Any] | None, method: str) -> dict[str, Any]:
    """Check a parameter space; returns it as a plain dict, or raises naming what is wrong."""
    if method not in METHODS:
        raise InvalidInput(f"method {method!r} is not known; valid: {', '.join(METHODS)}.")
    space = dict(parameters or {})
    if len(space) > MAX_PARAMETERS:
        raise InvalidInput(f"{len(space)} parameters given; the limit is {MAX_PARAMETERS}.")
    for name, spec in space.items():
        if not isinstance(name, str) or not _PARAM_NAME_RE.match(name):
            raise InvalidInput(
                f"parameter name {name!r} is not allowed: use letters, digits, '_', '.', '-', "
                "starting with a letter or '_' (it becomes --name=value or fills {name})."
            )
        if isinstance(spec, list):
            if not spec:
                raise InvalidInput(f"parameter {name!r} has an empty list; give at least one value.")
            if len(spec) > MAX_VALUES:
                raise InvalidInput(f"parameter {name!r} has {len(spec)} values; the limit is {MAX_VALUES}.")
            for value in spec:
                _check_scalar(name, value)
        elif isinstance(spec, Mapping):
            _check_range(name, spec, method)
        else:
            raise InvalidInput(
                f"parameter {name!r}: give a list of values"
                + (", a range {\"min\", \"max\"} or a log-range {\"min\", \"max\", \"log\": true}"
                   if method != "grid" else "")
                + f"; got {type(spec).__name__}."
            )  # fmt: skip
    return space


def grid_size(space: Mapping[str, list[Any]]) -> int:
    return math.prod(len(values) for values in space.values()) if space else 0


def _round(value: float) -> float:
    return float(f"{value:.{SIGNIFICANT_DIGITS}g}")


def _sample(rng: random.Random, spec: Any) -> Scalar:
    if isinstance(spec, list):
        return spec[rng.randrange(len(spec))]  # type: ignore[no-any-return]
    lo, hi, log = spec["min"], spec["max"], spec.get("log", False)
    integer = isinstance(lo, int) and isinstance(hi, int)
    if log:
        value = math.exp(rng.uniform(math.log(lo), math.log(hi)))
        return min(hi, max(lo, round(value))) if integer else _round(value)
    if integer:
        return rng.randint(lo, hi)
    return _round(rng.uniform(lo, hi))


def expand(
    space: Mapping[str, Any], method: str, max_runs: int | None, seed: int | None
) -> list[dict[str, Any]]:
    """The configurations of a validated space: the whole grid, or ``max_runs`` random samples
    (none for TPE: its configurations are asked for one at a time)."""
    if not space or method == "tpe":
        return []
    if method == "grid":
        size = grid_size(space)
        limit = max_runs if max_runs is not None else MAX_SWEEP_RUNS
        if size > limit:
            raise InvalidInput(
                f"the grid has {size} combinations ("
                + " × ".join(f"{len(v)} {k}" for k, v in space.items())
                + f"), more than max_runs={limit}; raise max_runs (up to {MAX_SWEEP_RUNS}), drop values, "
                "or use method='random'."
            )
        names = list(space)
        return [dict(zip(names, combo, strict=True)) for combo in itertools.product(*space.values())]
    if max_runs is None:
        raise InvalidInput("a random sweep needs max_runs: how many configurations to sample.")
    rng = random.Random(seed)
    return [{name: _sample(rng, spec) for name, spec in space.items()} for _ in range(max_runs)]


def format_value(value: Scalar) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def render_command(base_command: str, values: Mapping[str, Scalar]) -> str:
    """Put each value into its ``{name}`` placeholders, else append ``--name=value``; all quoted.

    One pass over the template: a value is inserted once and never scanned again, so a value
    that looks like a placeholder (``"{b}"``) stays text and cannot pull another value's
    shell words into the command. ``${name}`` (a shell variable) is left alone, and so are
    placeholders naming no parameter.
    """
    quoted = {name: shlex.quote(format_value(value)) for name, value in values.items()}
    used: set[str] = set()

    def fill(match: re.Match[str]) -> str:
        name = match.group(1)
        if name not in quoted:
            return match.group(0)
        used.add(name)
        return quoted[name]

    command = _PLACEHOLDER.sub(fill, base_command)
    appended = [
        shlex.quote(f"--{name}={format_value(value)}") for name, value in values.items() if name not in used
    ]
    return " ".join([command.rstrip(), *appended]) if appended else command
