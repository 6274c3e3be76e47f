"""Prompt templates: the strict renderer, the cluster guidance, and prompts naming only real tools."""

import re

import pytest

from mcp_server.core.errors import InvalidInput
from prompts import build
from prompts.render import RenderError, load, render
from resources.cluster import cluster_section

# Every tool of the public API (DESIGN.md). A prompt may name only those the server has.
API_TOOLS = frozenset(
    {
        *("detect_cluster", "get_cluster", "create_run", "start_run", "stop_run", "rerun", "list_runs"),
        *("get_run", "get_logs", "get_metrics", "list_alerts", "resolve_alert", "create_sweep", "get_sweep"),
        *("save_plan", "list_plans", "get_plan", "update_plan", "add_memory", "list_memories"),
        *("update_memory", "wait_for_events", "stop_sweep", "write_report", "compare_runs", "extend_sweep"),
    }
)


def named_tools(text: str) -> set[str]:
    return {name for name in API_TOOLS if re.search(rf"\b{name}\b", text)}


def live(tools: frozenset[str], cluster_type: str | None = None) -> build.Live:
    return build.Live(
        tools=tuple((name, f"{name} does a thing.\nMore detail.") for name in sorted(tools)),
        cluster_type=cluster_type,
        cluster_state=f"Cluster type: **{cluster_type}**",
        memory_rules="- **lr ceiling** — lr > 1e-3 diverges",
        experiment_context="## Runs not ended yet (0)\nnone",
        recent_plans="none",
    )


def test_render_fills_variables_once_and_keeps_tool_blocks_for_tools_that_exist() -> None:
    text = "a {{x}} {{#tool t1}}has t1{{/tool}}{{^tool t1}}no t1{{/tool}} {{#tool t2}}has t2{{/tool}}"
    assert render(text, {"x": "{{y}}"}, {"t1"}) == "a {{y}} has t1 "
    assert render(text, {"x": "1"}, set()) == "a 1 no t1 "


@pytest.mark.parametrize(
    ("template", "variables", "message"),
    [
        ("{{missing}}", {}, "without a value: missing"),
        ("plain", {"extra": "1"}, "does not use: extra"),
        ("{{ Bad-Name }}", {}, "unknown template syntax"),
        ("{{#tool a}}{{#tool b}}x{{/tool}}{{/tool}}", {}, "unknown template syntax"),
    ],
)
def test_render_fails_loudly(template: str, variables: dict, message: str) -> None:
    with pytest.raises(RenderError, match=message):
        render(template, variables, set())


def test_templates_are_packaged_resources() -> None:
    assert "{{tool_catalog}}" in load("agent_mode")
    with pytest.raises(RenderError, match="no prompt template named"):
        load("nope")


@pytest.mark.parametrize(
    "tools",
    [API_TOOLS, API_TOOLS - {"detect_cluster", "get_cluster", "get_metrics", "list_alerts", "resolve_alert"}],
)
@pytest.mark.parametrize("cluster_type", ["local_gpu", "slurm", "cpu_only", None])
def test_every_prompt_names_only_tools_the_server_has(
    tools: frozenset[str], cluster_type: str | None
) -> None:
    data = live(tools, cluster_type)
    for text in (
        build.agent_mode(data),
        build.plan_mode(data, "find the best lr"),
        build.wild_mode(data, "find the best lr", 4),
    ):
        assert "{{" not in text and "}}" not in text
        assert named_tools(text) <= tools, named_tools(text) - tools
    catalog = build.agent_mode(data).split("## Tools\n", 1)[1].split("\n## ", 1)[0]
    assert set(re.findall(r"^- `([a-z_]+)` — ", catalog, re.M)) == set(tools)
    assert "- `create_run` — create_run does a thing.\n" in catalog


def test_cluster_guidance_follows_the_cluster_type() -> None:
    assert "gpuwrap" in build.cluster_guidance(live(API_TOOLS, "local_gpu"))
    assert "partition" in build.cluster_guidance(live(API_TOOLS, "slurm"))
    assert "`gpus=0`" in build.cluster_guidance(live(API_TOOLS, "cpu_only"))
    unknown = build.cluster_guidance(live(API_TOOLS, None))
    assert "call `detect_cluster` first" in unknown and "cpu_only" in unknown
    assert "detect_cluster" not in build.cluster_guidance(live(API_TOOLS - {"detect_cluster"}, None))


def test_cpu_guidance_names_the_machines_run_limit_not_a_guess() -> None:
    one = build.Live(**{**live(API_TOOLS, "cpu_only").__dict__, "cpu_run_limit": 1})
    text = build.cluster_guidance(one)
    assert "at most 1 run at once" in text and "2-4" not in text
    unknown = build.cluster_guidance(build.Live(**{**one.__dict__, "cluster_type": None}))
    assert "at most 1 run at once" in unknown and "2-4" not in unknown
    four = build.Live(**{**one.__dict__, "cpu_run_limit": 4})
    assert "at most 4 runs at once" in build.cluster_guidance(four)


@pytest.mark.anyio
async def test_the_served_prompt_uses_the_servers_run_limit(state_dir, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    from mcp import Client

    from mcp_server.server import create_server

    monkeypatch.setenv("RESEARCH_MCP_CPU_RUN_LIMIT", "1")  # and cpu_only, pinned by conftest
    async with Client(create_server(state_dir)) as c:
        await c.call_tool("detect_cluster", {})
        for name, args in (("agent_mode", {}), ("plan_mode", {"goal": "tune lr"})):
            text = (await c.get_prompt(name, args)).messages[0].content.text  # type: ignore[union-attr]
            assert "at most 1 run at once" in text and "2-4" not in text, name


def test_cluster_section_renders_the_detected_machine(fake_gpus, services, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    assert (
        cluster_section(None, can_detect=True).markdown == "Cluster: not detected yet — call detect_cluster."
    )
    assert cluster_section(None, can_detect=False).type is None
    monkeypatch.setenv("RESEARCH_MCP_CLUSTER_TYPE", "local_gpu")
    section = cluster_section(services.cluster.detect(), can_detect=True)
    assert section.type == "local_gpu"
    assert "GPUs: 4" in section.markdown
    assert "- GPU 0, NVIDIA A100-SXM4-80GB, 0/81920 MiB used" in section.markdown
    assert (
        "GPU 1, NVIDIA A100-SXM4-80GB, 5000/81920 MiB used, 97% busy, 1 foreign process(es)"
        in section.markdown
    )


def test_prompt_arguments_are_checked() -> None:
    with pytest.raises(InvalidInput, match="max_iterations=0 is out of range"):
        build.wild_mode(live(API_TOOLS), "goal", 0)
    with pytest.raises(InvalidInput, match="goal must be"):
        build.plan_mode(live(API_TOOLS), "   ")
    text = build.wild_mode(live(API_TOOLS), "beat  the\nbaseline", 7)
    assert "Goal: **beat the baseline**" in text and "iteration 2 of 7" in text
