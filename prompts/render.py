"""A small, strict renderer for the prompt templates (Markdown with ``{{variables}}``).

Syntax: ``{{name}}`` inserts a variable; ``{{#tool NAME}}…{{/tool}}`` keeps its text only
when the server has a tool NAME, and ``{{^tool NAME}}…{{/tool}}`` only when it has not, so a
prompt never names a tool the client cannot call. Strict both ways: a template variable
with no value, or a value no template uses, raises ``RenderError`` (a typo fails loudly).
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from importlib import resources

_VAR = re.compile(r"\{\{\s*([a-z_][a-z0-9_]*)\s*\}\}")
_TOOL_BLOCK = re.compile(r"\{\{([#^])tool\s+([a-z_][a-z0-9_]*)\s*\}\}(.*?)\{\{/tool\}\}", re.DOTALL)
_LEFTOVER = re.compile(r"\{\{.*?\}\}", re.DOTALL)


class RenderError(ValueError):
    """A template and its variables do not fit together."""


def load(name: str) -> str:
    """The text of ``prompts/templates/<name>.md`` (works from a wheel too)."""
    path = resources.files("prompts").joinpath("templates", *f"{name}.md".split("/"))
    if not path.is_file():
        raise RenderError(f"no prompt template named {name!r}")
    return path.read_text(encoding="utf-8")


def render(template: str, variables: Mapping[str, str], tools: Iterable[str]) -> str:
    check_syntax(template)
    have = frozenset(tools)

    def block(match: re.Match[str]) -> str:
        wanted = (match.group(2) in have) == (match.group(1) == "#")
        return match.group(3) if wanted else ""

    text = _TOOL_BLOCK.sub(block, template)
    used = set(_VAR.findall(text))
    missing = sorted(used - set(variables))
    if missing:
        raise RenderError(f"template variables without a value: {', '.join(missing)}")
    unused = sorted(set(variables) - used)
    if unused:
        raise RenderError(f"values given for variables the template does not use: {', '.join(unused)}")
    # One pass: braces inside inserted values are never expanded.
    return _VAR.sub(lambda m: variables[m.group(1)], text)


def check_syntax(template: str) -> None:
    """Refuse a template with template syntax the renderer does not understand."""
    stripped = _VAR.sub("", _TOOL_BLOCK.sub("", template))
    leftover = _LEFTOVER.search(stripped)
    if leftover:
        raise RenderError(f"unknown template syntax {leftover.group(0)!r}")
