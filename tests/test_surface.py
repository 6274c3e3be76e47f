"""The tool surface a client sees: pinned by a snapshot, within its byte budget, compact answers."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from mcp import Client
from pydantic import BaseModel, ConfigDict, Field

from mcp_server.server import create_server
from mcp_server.tools.surface import describe, input_schema
from tests.tool_surface import SNAPSHOT, compact_bytes, listing, render

pytestmark = pytest.mark.anyio

TOOLS_BUDGET = 16 * 1024


async def test_the_tool_surface_matches_its_snapshot(tmp_path: Path) -> None:
    got = render(await listing(tmp_path / "state"))
    if got != SNAPSHOT.read_text():
        (tmp_path / "tools.json").write_text(got)
        pytest.fail(
            "the tool surface (names, descriptions, schemas, annotations) changed: if that is intended, "
            f"run `python -m tests.tool_surface` and commit the diff of {SNAPSHOT.name} "
            f"(new listing: {tmp_path / 'tools.json'})"
        )


async def test_tools_list_fits_its_budget_and_reads_cleanly(tmp_path: Path) -> None:
    data = await listing(tmp_path / "state")
    assert compact_bytes(data) <= TOOLS_BUDGET
    for tool in data["tools"]:
        text = tool["description"]
        assert text and len(text) <= 200, tool["name"]
        assert "\n" not in text and "  " not in text, f"{tool['name']}: leaked docstring layout"
        assert "outputSchema" not in tool  # answers are objects, the same JSON as text and structured
        assert tool["annotations"].get("openWorldHint") is False
        flat = json.dumps(tool["inputSchema"])
        assert '"title": "' not in flat and "$ref" not in flat and '{"type": "null"}' not in flat


def test_descriptions_lose_the_docstring_layout() -> None:
    doc = """Launch a command as a tracked run
        that outlives this session.

        A second paragraph,
        wrapped.
        """
    assert (
        describe(doc)
        == "Launch a command as a tracked run that outlives this session.\n\nA second paragraph, wrapped."
    )


class Options(BaseModel):
    model_config = ConfigDict(extra="forbid")

    cpus: int | None = Field(None, ge=1, le=64)


class Arguments(BaseModel):
    name: str = Field(description="letters and digits")
    kind: str | None = Field(None, description="which one")
    mode: str = Field("fast", json_schema_extra={"enum": ["fast", "slow"]})
    values: list[str | int | float | bool] | None = None
    options: Options | None = Field(None, description="tuning")


def test_input_schemas_stay_as_precise_without_pydantic_overhead() -> None:
    lean = input_schema(Arguments.model_json_schema())
    assert lean == {
        "properties": {
            "name": {"description": "letters and digits", "type": "string"},
            "kind": {"description": "which one", "type": "string"},
            "mode": {"default": "fast", "enum": ["fast", "slow"], "type": "string"},
            "values": {"items": {"type": ["string", "integer", "number", "boolean"]}, "type": "array"},
            "options": {
                "additionalProperties": False,
                "description": "tuning",
                "properties": {"cpus": {"maximum": 64, "minimum": 1, "type": "integer"}},
                "type": "object",
            },
        },
        "required": ["name"],
        "type": "object",
    }


async def answer(client: Client, tool: str, **args: Any) -> dict[str, Any]:
    result = await client.call_tool(tool, args)
    assert not result.is_error, result.content
    (block,) = result.content
    text = block.text  # type: ignore[union-attr]
    # One compact copy of the data: clients forward either the text or the structured content.
    assert text == json.dumps(result.structured_content, separators=(",", ":"), ensure_ascii=False)
    assert result.structured_content is not None
    return result.structured_content


def nulls(value: Any, path: str = "") -> list[str]:
    """Paths of null fields (list items may be null: a NaN point is [step, null])."""
    if isinstance(value, dict):
        return [
            p for k, v in value.items() for p in ([f"{path}.{k}"] if v is None else nulls(v, f"{path}.{k}"))
        ]
    if isinstance(value, list):
        return [p for i, v in enumerate(value) for p in nulls(v, f"{path}{i}.")]
    return []


async def test_answers_are_compact_and_leave_out_nulls_and_defaults(state_dir: Path, workdir: Path) -> None:
    async with Client(create_server(state_dir)) as c:
        run = await answer(c, "create_run", name="r", command="true", workdir=str(workdir), auto_start=False)
        assert set(run) == {"id", "name", "status", "status_reason"}  # a lifecycle answer is brief
        detail = await answer(c, "get_run", run_id=run["id"])
        assert "exit_code" not in detail and "metrics" not in detail and detail["command"] == "true"
        page = await answer(c, "list_runs")
        assert page == {"runs": [page["runs"][0]], "total": 1} and "next_offset" not in page
        for tool, args in (
            ("get_cluster", {}),
            ("list_alerts", {}),
            ("list_plans", {}),
            ("list_memories", {}),
        ):
            assert nulls(await answer(c, tool, **args)) == [], tool


async def test_default_pages_stay_within_the_answer_budget(state_dir: Path, workdir: Path) -> None:
    async with Client(create_server(state_dir)) as c:
        for i in range(3):
            await answer(c, "add_memory", title=f"rule {i}", content="evidence " * 400)  # 3.6 KB each
        page = await answer(c, "list_memories")
        assert len(page["memories"]) == 1 and page["next_offset"] == 1 and page["total"] == 3
        asked = await answer(c, "list_memories", limit=3)  # a caller who chose the page size gets it
        assert len(asked["memories"]) == 3 and "next_offset" not in asked

        sweep = await answer(
            c, "create_sweep", name="wide", goal="g", base_command="true", parameters={"i": list(range(30))},
            workdir=str(workdir), auto_start=False,
        )  # fmt: skip
        assert len(sweep["runs"]) == 20 and sweep["next_offset"] == 20 and "30 runs in all" in sweep["note"]
        rest = await answer(c, "get_sweep", sweep_id=sweep["id"], offset=20)
        assert [r["name"] for r in rest["runs"]] == [f"wide-{i:02d}" for i in range(21, 31)]
        assert "next_offset" not in rest
