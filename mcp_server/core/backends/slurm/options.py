"""A Slurm run's options: checked strictly, since every value ends up on sbatch's command line."""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from mcp_server.core.errors import InvalidInput

if TYPE_CHECKING:
    from pydantic import BaseModel

_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")
_TIME = re.compile(r"^(\d+|\d+:\d{2}|\d+:\d{2}:\d{2}|\d+-\d+|\d+-\d+:\d{2}|\d+-\d+:\d{2}:\d{2})$")
_MEM = re.compile(r"^\d+[KMGT]?$")
_FLAG = re.compile(r"^--[a-z][a-z0-9-]*(=[A-Za-z0-9._,:=/@%+-]+)?$")
# Flags research-mcp sets itself; letting extra_args override them would break tracking.
_RESERVED_FLAGS = {
    "output", "error", "input", "job-name", "chdir", "wrap", "parsable", "export", "open-mode", "comment",
    "gres", "gpus", "array", "wait", "test-only", "uid", "gid", "get-user-env",
}  # fmt: skip
OPTION_KEYS = ("partition", "time", "account", "qos", "cpus_per_task", "mem", "extra_args")


def validate_slurm_options(raw: Mapping[str, Any] | None) -> dict[str, Any]:
    """Check scheduler options; every value ends up on sbatch's command line, so be strict."""
    opts = dict(raw or {})
    unknown = sorted(set(opts) - set(OPTION_KEYS))
    if unknown:
        raise InvalidInput(f"unknown slurm option(s) {unknown}; valid: {', '.join(OPTION_KEYS)}.")
    out: dict[str, Any] = {}
    for key in ("partition", "account", "qos"):
        value = opts.get(key)
        if value is None:
            continue
        if not isinstance(value, str) or not _NAME.match(value):
            raise InvalidInput(f"slurm.{key}={value!r} is not a valid name (letters, digits, '.', '_', '-').")
        out[key] = value
    if (value := opts.get("time")) is not None:
        if not isinstance(value, str) or not _TIME.match(value):
            raise InvalidInput(
                f"slurm.time={value!r} is not a Slurm time limit; use minutes, 'HH:MM:SS' or 'D-HH:MM:SS'."
            )
        out["time"] = value
    if (value := opts.get("mem")) is not None:
        if not isinstance(value, str) or not _MEM.match(value):
            raise InvalidInput(f"slurm.mem={value!r} is not a memory size; use e.g. '16G' or '4000M'.")
        out["mem"] = value
    if (value := opts.get("cpus_per_task")) is not None:
        if not isinstance(value, int) or isinstance(value, bool) or not 1 <= value <= 4096:
            raise InvalidInput(f"slurm.cpus_per_task={value!r} must be a whole number from 1 to 4096.")
        out["cpus_per_task"] = value
    extra = opts.get("extra_args") or []
    if not isinstance(extra, list) or len(extra) > 32:
        raise InvalidInput(
            "slurm.extra_args must be a list of at most 32 '--flag' or '--flag=value' strings."
        )
    for flag in extra:
        if not isinstance(flag, str) or not _FLAG.match(flag):
            raise InvalidInput(
                f"slurm.extra_args item {flag!r} is not allowed: use '--flag' or '--flag=value' with "
                "letters, digits and . _ , : = / @ % + - only (no spaces or shell characters)."
            )
        name = flag[2:].split("=", 1)[0]
        # sbatch (getopt_long) takes any unambiguous prefix of a long option: --outp is --output.
        hits = sorted(r for r in _RESERVED_FLAGS if r.startswith(name))
        if hits:
            spelled = "" if hits == [name] else f" (sbatch reads it as {' or '.join('--' + h for h in hits)})"
            raise InvalidInput(
                f"slurm.extra_args may not set --{name}{spelled}: research-mcp sets "
                f"{', '.join('--' + r for r in sorted(_RESERVED_FLAGS))} itself "
                "(use the gpus, slurm.* options or env instead; spell other sbatch flags out in full)."
            )
    if extra:
        out["extra_args"] = list(extra)
    return out


def options_model() -> type[BaseModel]:
    """The options as the tools advertise them (validated again, strictly, by ``validate_slurm_options``)."""
    from pydantic import BaseModel, ConfigDict, Field

    class SlurmOptions(BaseModel):
        model_config = ConfigDict(extra="forbid")

        partition: str | None = None
        time: str | None = Field(None, description="minutes or [D-]HH:MM:SS")
        account: str | None = None
        qos: str | None = None
        cpus_per_task: int | None = Field(None, ge=1, le=4096)
        mem: str | None = Field(None, description="e.g. 32G")
        extra_args: list[str] = Field(default_factory=list, description="--flag or --flag=value")

    return SlurmOptions
