"""Checks of a run's input: every one runs before anything is written.

A rejected call therefore leaves the store and the state dir as they were; each message
says what was wrong and what would be valid.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from mcp_server.core.errors import InvalidInput
from mcp_server.core.execution.run_status import RunStatus
from mcp_server.core.ids import validate_env_key

MAX_COMMAND_CHARS = 64 * 1024
MAX_GPUS = 64
MAX_PARAMS_BYTES = 64 * 1024
MAX_ENV_VALUE_CHARS = 32 * 1024
MAX_LOG_LINES = 5000
MAX_LOG_BYTES = 1024 * 1024
MAX_PAGE = 500
STATUS_CHOICES = ", ".join(s.value for s in RunStatus)


def _validate_command(command: str) -> str:
    if not isinstance(command, str) or not command.strip():
        raise InvalidInput(
            "command is empty: give the shell command to run, e.g. 'python train.py --lr 0.1'."
        )
    if len(command) > MAX_COMMAND_CHARS:
        raise InvalidInput(
            f"command is {len(command)} characters; the limit is {MAX_COMMAND_CHARS}. Put it in a script."
        )
    if "\x00" in command:
        raise InvalidInput("command contains a NUL byte; remove it.")
    return command


def _validate_workdir(workdir: str | None) -> str:
    path = Path(workdir).expanduser() if workdir else Path.cwd()
    if "\x00" in str(path):
        raise InvalidInput("workdir contains a NUL byte.")
    path = path.absolute()
    try:
        return _checked_workdir(path)
    except OSError as err:  # a name too long, a loop of symlinks...
        raise InvalidInput(f"workdir {str(path)[:200]!r} cannot be used: {err.strerror}.") from None


def _checked_workdir(path: Path) -> str:
    if not path.exists():
        raise InvalidInput(
            f"workdir {str(path)!r} does not exist; give an existing directory (default: the server's cwd)."
        )
    if not path.is_dir():
        raise InvalidInput(f"workdir {str(path)!r} is not a directory.")
    if not os.access(path, os.R_OK | os.X_OK):
        raise InvalidInput(f"workdir {str(path)!r} is not accessible (needs read and execute permission).")
    return str(path)


def _validate_env(env: Mapping[str, str] | None) -> dict[str, str]:
    out: dict[str, str] = {}
    for key, value in (env or {}).items():
        validate_env_key(key)
        if key.startswith("RESEARCH_"):
            raise InvalidInput(f"env key {key!r} is reserved: research-mcp sets RESEARCH_* variables itself.")
        if not isinstance(value, str):
            raise InvalidInput(f"env value for {key!r} must be a string.")
        if "\x00" in value or len(value) > MAX_ENV_VALUE_CHARS:
            raise InvalidInput(f"env value for {key!r} is too long or contains a NUL byte.")
        out[key] = value
    return out


def _validate_params(params: Mapping[str, Any] | None) -> dict[str, Any]:
    if not params:
        return {}
    try:
        encoded = json.dumps(params, allow_nan=False)
    except (TypeError, ValueError) as err:
        raise InvalidInput(
            f"params must be JSON (strings, numbers, booleans, lists, objects): {err}."
        ) from None
    if len(encoded) > MAX_PARAMS_BYTES:
        raise InvalidInput(f"params are {len(encoded)} bytes as JSON; the limit is {MAX_PARAMS_BYTES}.")
    return dict(params)


def _validate_gpus(gpus: int) -> int:
    if not isinstance(gpus, int) or isinstance(gpus, bool) or not 0 <= gpus <= MAX_GPUS:
        raise InvalidInput(f"gpus={gpus!r} is out of range; give a whole number from 0 to {MAX_GPUS}.")
    return gpus
