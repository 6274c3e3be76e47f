"""The tool surface as a client sees it: lean schemas, short descriptions, compact answers.

Every agent session pays for ``tools/list`` before it does anything and again for every
answer (README "Context budget": tools/list ≤ 16 KB, a default answer ≤ 8 KB). pydantic's
schemas are written for validators, not for a model's context: a title on every property,
``anyOf [X, null]`` for every optional argument, ``$defs`` trees repeated in every tool that
returns the same model. This module rewrites what is advertised without changing what is
accepted: arguments are still validated by the same pydantic models, answers by the same
output models.

- Input schemas keep every type, bound, enum, default and description; they lose the
  generated titles, the ``null`` alternative of optional arguments (leaving one out is how
  an agent says "default") and ``$ref`` indirection.
- No output schema is advertised: every answer is one object, sent identically as text and
  structured content, built from the tool's pydantic model (which validates it).
- Answers carry their data once as compact JSON, in the text block and the structured copy
  alike (clients forward one or the other to the model), without null or default fields.
"""

from __future__ import annotations

import functools
import inspect
import typing
from collections.abc import Callable, Sequence
from typing import Any, ParamSpec

from mcp.server.mcpserver import MCPServer
from mcp_types import CallToolResult, Icon, TextContent, ToolAnnotations
from mcp_types import Tool as ToolInfo
from pydantic import BaseModel
from pydantic_core import to_json

from mcp_server.app import tool_errors

P = ParamSpec("P")

JsonSchema = dict[str, Any]
_SCHEMA_MAPS = ("properties", "patternProperties")


def _resolve(node: Any, defs: dict[str, Any]) -> Any:
    """The schema with every ``$ref`` replaced by its definition and generated titles dropped."""
    if isinstance(node, list):
        return [_resolve(x, defs) for x in node]
    if not isinstance(node, dict):
        return node
    if "$ref" in node:
        target = defs[node["$ref"].rsplit("/", 1)[-1]]
        # The property's own description wins over the referenced model's docstring.
        node = {**target, **{k: v for k, v in node.items() if k != "$ref"}}
    out: dict[str, Any] = {}
    for key, value in node.items():
        if key in ("title", "$defs") or (key == "default" and value is None):
            continue
        if key == "additionalProperties" and value is True:
            continue
        if key in _SCHEMA_MAPS:
            out[key] = {name: _resolve(sub, defs) for name, sub in value.items()}
        else:
            out[key] = _resolve(value, defs)
    return out


def _not_null(schema: JsonSchema) -> JsonSchema:
    """``anyOf [X, null]`` → X: an optional value is left out, never sent as null."""
    options = schema.get("anyOf")
    if not isinstance(options, list) or {"type": "null"} not in options:
        return schema
    rest = [o for o in options if o != {"type": "null"}]
    base = {k: v for k, v in schema.items() if k != "anyOf"}
    if len(rest) == 1:
        return {**rest[0], **base}
    return {**base, "anyOf": rest}


def input_schema(schema: JsonSchema) -> JsonSchema:
    """A tool's arguments as advertised: as precise as pydantic's, without its overhead."""
    lean = _resolve(schema, schema.get("$defs", {}))
    return _nullless(lean)


def _nullless(node: Any) -> Any:
    if isinstance(node, list):
        return [_nullless(x) for x in node]
    if not isinstance(node, dict):
        return node
    out = {}
    for key, value in node.items():
        if key in _SCHEMA_MAPS:
            out[key] = {name: _nullless(_not_null(sub)) for name, sub in value.items()}
        else:
            out[key] = _nullless(value)
    return _type_union(out)


def _type_union(schema: JsonSchema) -> JsonSchema:
    """``anyOf`` of bare types (``str | int | float | bool``) → one ``type`` list, same meaning."""
    options = schema.get("anyOf")
    if isinstance(options, list) and all(isinstance(o, dict) and set(o) == {"type"} for o in options):
        kinds = [o["type"] for o in options]
        if all(isinstance(k, str) for k in kinds):
            rest = {k: v for k, v in schema.items() if k != "anyOf"}
            return {"type": kinds, **rest}
    return schema


def describe(text: str | None) -> str:
    """A docstring as a tool description: no leaked indentation, no hard wraps inside a
    paragraph (the source's line length is not the reader's), paragraphs kept."""
    paragraphs = inspect.cleandoc(text or "").split("\n\n")
    return "\n\n".join(" ".join(p.split()) for p in paragraphs if p.strip())


def lean_tool(tool: ToolInfo) -> ToolInfo:
    """The tool as listed; its output schema stays with the server.

    Output schemas were 68% of an 86 KB tools/list, paid by every session; reduced to
    ``{"type": "object"}`` they still cost 32 bytes a tool and said nothing a client needs: an
    answer's compact JSON is the same in its text block and its structured content (so a
    client that reads either gives the model the same data), and it is built from the tool's
    pydantic model, which validates it. A model picks a tool by its name, description and
    input schema; the answers' fields are in the README."""
    return tool.model_copy(
        update={
            "input_schema": input_schema(tool.input_schema),
            "output_schema": None,
            "description": describe(tool.description),
        }
    )


class LeanServer(MCPServer):
    """An MCPServer whose ``tools/list`` advertises the lean schemas (computed once per tool)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._lean: dict[tuple[str, int], ToolInfo] = {}

    def add_tool(
        self,
        fn: Callable[..., Any],
        name: str | None = None,
        title: str | None = None,
        description: str | None = None,
        annotations: ToolAnnotations | None = None,
        icons: list[Icon] | None = None,
        meta: dict[str, Any] | None = None,
        structured_output: bool | None = None,
    ) -> None:
        """Register ``fn`` without deriving its answer model's JSON schema.

        The SDK would derive each answer model's full JSON schema at start-up (a third of a
        server's start-up cost, for a schema the listing does not show: ``lean_tool``) and
        validate every answer against it again. An answer is the dump of that model
        (``answer``), so it matches it by construction."""
        super().add_tool(
            fn, name=name, title=title, description=description, annotations=annotations, icons=icons,
            meta=meta, structured_output=False,
        )  # fmt: skip

    async def list_tools(self) -> list[ToolInfo]:
        tools = await super().list_tools()
        out = []
        for tool in tools:
            key = (tool.name, id(tool.input_schema))
            if key not in self._lean:
                self._lean[key] = lean_tool(tool)
            out.append(self._lean[key])
        return out


def compact(data: Any) -> str:
    """Compact JSON (no spaces, non-ASCII kept), written by pydantic's serializer: 5× faster than
    the json module on a page of rows, which is most of what a list answer costs. NaN and
    ±Inf (never meant to reach an answer: values go through ``views.Value``) become null, as
    they do in the SDK's own JSON."""
    return to_json(data, inf_nan_mode="null").decode()


def answer_of(result: BaseModel, model: type[BaseModel]) -> CallToolResult:
    """One compact copy of the answer as ``model``, in the text block and the structured content.

    ``result`` may be a richer model than the tool advertises (a core ``RunRecord`` where
    create_run answers a ``RunBrief``): only ``model``'s fields are sent."""
    if type(result) is not model:
        result = model.model_validate(result.model_dump())
    data = result.model_dump(mode="json", exclude_none=True, exclude_defaults=True)
    return CallToolResult(content=[TextContent(type="text", text=compact(data))], structured_content=data)


def answer(fn: Callable[P, Any]) -> Callable[P, Any]:
    """A tool body's model becomes a compact answer; core errors become ToolErrors.

    The wrapper keeps ``fn``'s signature (``functools.wraps``), so the SDK still derives the
    input and output schemas from it and validates the structured answer against the model.
    """
    model = typing.get_type_hints(fn)["return"]
    guarded = tool_errors(fn)
    if inspect.iscoroutinefunction(fn):

        @functools.wraps(fn)
        async def async_wrapper(*args: P.args, **kwargs: P.kwargs) -> CallToolResult:
            return answer_of(await guarded(*args, **kwargs), model)

        return async_wrapper

    @functools.wraps(fn)
    def wrapper(*args: P.args, **kwargs: P.kwargs) -> CallToolResult:
        return answer_of(guarded(*args, **kwargs), model)

    return wrapper


# Room for a page's rows in a default answer (the rest of the 8 KB is the page's envelope).
ROWS_BUDGET = 6 * 1024


def fitting(rows: Sequence[BaseModel], budget: int = ROWS_BUDGET, *, limit: int = 0, default: int = 0) -> int:
    """How many leading rows fit in ``budget`` bytes of compact JSON (always at least one).

    A default-size page (``limit == default``) is cut here, with a next_offset, when its rows
    are unusually long (a long status_reason, an alert with a traceback), so a default answer
    stays within the budget; a caller who chose the page size gets the rows it asked for."""
    if limit != default:
        return len(rows)
    used = 0
    for i, row in enumerate(rows):
        used += len(row.model_dump_json(exclude_none=True, exclude_defaults=True)) + 1
        if used > budget and i > 0:
            return i
    return len(rows)
