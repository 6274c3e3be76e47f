"""Ids and names that are safe as file names, tmux window names and Slurm job names.

Ids are generated here only; names come from users and are validated against a small
alphabet so they can never carry a path separator or a shell metacharacter.
"""

from __future__ import annotations

import re
import secrets
import time

from mcp_server.core.errors import InvalidInput

NAME_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$"
_NAME_RE = re.compile(NAME_PATTERN)
_ID_RE = re.compile(r"^[a-z]{1,8}-[0-9]{8}-[0-9]{6}-[0-9a-f]{8}$")
ENV_KEY_PATTERN = r"^[A-Za-z_][A-Za-z0-9_]{0,127}$"
_ENV_KEY_RE = re.compile(ENV_KEY_PATTERN)


def new_id(prefix: str) -> str:
    """Time-ordered so a directory listing reads chronologically; random tail for uniqueness."""
    stamp = time.strftime("%Y%m%d-%H%M%S", time.gmtime())
    return f"{prefix}-{stamp}-{secrets.token_hex(4)}"


def validate_name(value: str, what: str = "name") -> str:
    if not isinstance(value, str) or not _NAME_RE.match(value):
        raise InvalidInput(
            f"{what} {value!r} is not allowed: use 1-64 characters from letters, digits, '.', '_' "
            "and '-', starting with a letter or digit (no spaces, '/', or shell characters)."
        )
    return value


# Where an agent finds existing ids of each kind (an error names the lister that helps).
FIND_IDS = {
    "run": "list_runs",
    "alert": "list_alerts",
    "plan": "list_plans",
    "mem": "list_memories",
    "sweep": "experiment://context (or a run's sweep_id in list_runs)",
}


def validate_id(value: str, prefix: str, what: str = "id") -> str:
    if not isinstance(value, str) or not _ID_RE.match(value) or not value.startswith(prefix + "-"):
        raise InvalidInput(
            f"{what} {value!r} is not a valid {prefix} id; ids look like "
            f"'{prefix}-20260101-120000-1a2b3c4d'. Use {FIND_IDS.get(prefix, 'the matching list tool')} "
            "to find existing ids."
        )
    return value


def validate_env_key(key: str) -> str:
    if not isinstance(key, str) or not _ENV_KEY_RE.match(key):
        raise InvalidInput(
            f"environment variable name {key!r} is not valid: use letters, digits and '_', "
            "not starting with a digit."
        )
    return key
