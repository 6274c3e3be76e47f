"""The workflow surface over stdio in both protocol eras: sweeps, plans, memory, prompts,
resources, notifications and wait_for_events — real server processes, tmux and SQLite."""

from __future__ import annotations

import contextlib
import json
import re
import sqlite3
import sys
import time
import warnings
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import anyio
import pytest
from mcp import Client
from mcp.shared.exceptions import MCPDeprecationWarning
from mcp_types import ResourceUpdatedNotification

from tests.mcp_client import MODES, call, call_error, client, stdio_server
from tests.test_plans import plan_markdown
from tests.test_prompts import API_TOOLS, named_tools

pytestmark = pytest.mark.anyio

# loss = lr * bs, appended to the metrics file the way a training script does.
# Jobs wait for a `go` file in their workdir, so none ends before the test has looked.
METRIC_COMMAND = (
    "while [ ! -f go ]; do sleep 0.05; done; "
    'echo "{\\"step\\": 1, \\"loss\\": $(awk \'BEGIN{print {lr}*{bs}}\')}" >> "$RESEARCH_METRICS_FILE"'
)


def max_concurrency(state_dir: Path, sweep_id: str) -> int:
    """Replay the event feed in commit order: the most runs of the sweep ever submitted at once."""
    con = sqlite3.connect(state_dir / "research.db")
    try:
        ids = {r[0] for r in con.execute("SELECT id FROM runs WHERE sweep_id = ?", (sweep_id,))}
        rows = con.execute("SELECT run_id, data FROM events WHERE kind = 'run_status' ORDER BY id").fetchall()
    finally:
        con.close()
    active: set[str] = set()
    most = 0
    for run_id, data in rows:
        if run_id not in ids:
            continue
        status = json.loads(data)["status"]
        if status == "launching":
            active.add(run_id)
        elif status in ("finished", "failed", "stopped", "lost"):
            active.discard(run_id)
        most = max(most, len(active))
    return most


async def collect_endings(c: Client, run_ids: set[str], timeout: float = 60) -> list[dict[str, Any]]:
    """Chain wait_for_events calls by cursor until every run in ``run_ids`` has ended."""
    seen: list[dict[str, Any]] = []
    cursor = 0
    with anyio.fail_after(timeout):
        while {e["run_id"] for e in seen} < run_ids:
            batch = await call(c, "wait_for_events", cursor=cursor, timeout_s=10, kinds=["run_ended"])
            assert batch["cursor"] >= cursor
            cursor = batch["cursor"]
            seen += batch["events"]
    return seen


@pytest.mark.parametrize("mode", MODES)
async def test_grid_sweep_runs_under_its_cap_and_ranks_the_best_run(
    state_dir: Path, workdir: Path, mode: str
) -> None:
    async with client(state_dir, mode) as c:
        sweep = await call(
            c,
            "create_sweep",
            name="lr-bs",
            goal="lowest loss",
            base_command=METRIC_COMMAND,
            parameters={"lr": [0.1, 0.01], "bs": [16, 32, 64]},
            parallel=2,
            workdir=str(workdir),
        )
        assert sweep["status"] == "running" and sweep["id"].startswith("sweep-")
        assert (sweep["progress"]["total"], sweep["progress"]["active"], sweep["progress"]["waiting"]) == (
            6,
            2,
            4,
        )
        params = [r["params"] for r in sweep["runs"]]
        assert params == [{"lr": lr, "bs": bs} for lr in (0.1, 0.01) for bs in (16, 32, 64)]
        for row in sweep["runs"]:
            run = await call(c, "get_run", run_id=row["id"])
            lr, bs = row["params"]["lr"], row["params"]["bs"]
            assert run["command"] == METRIC_COMMAND.replace("{lr}", str(lr)).replace("{bs}", str(bs))
            assert run["sweep_id"] == sweep["id"]

        (workdir / "go").touch()
        endings = await collect_endings(c, {r["id"] for r in sweep["runs"]})
        assert len(endings) == 6 and len({e["id"] for e in endings}) == 6  # each once
        assert {e["status"] for e in endings} == {"finished"}
        assert max_concurrency(state_dir, sweep["id"]) == 2

        ranked = await call(c, "get_sweep", sweep_id=sweep["id"], metric="loss", direction="min")
        assert ranked["status"] == "completed" and ranked["progress"]["finished"] == 6
        assert ranked["best"]["params"] == {"lr": 0.01, "bs": 16}
        assert ranked["best"]["value"] == pytest.approx(0.16)
        worst = await call(c, "get_sweep", sweep_id=sweep["id"], metric="loss", direction="max")
        assert worst["best"]["params"] == {"lr": 0.1, "bs": 64}

        # random sweeps are reproducible from their seed
        space = {
            "lr": {"min": 1e-5, "max": 1e-2, "log": True},
            "layers": {"min": 2, "max": 8},
            "opt": ["a", "b"],
        }
        drawn = []
        for seed in (42, 42, 43):
            rnd = await call(
                c, "create_sweep", name=f"rnd-{seed}", goal="explore", base_command="true", parameters=space,
                method="random", max_runs=5, seed=seed, auto_start=False, workdir=str(workdir),
            )  # fmt: skip
            assert rnd["seed"] == seed and rnd["status"] == "pending"
            drawn.append([r["params"] for r in rnd["runs"]])
        assert drawn[0] == drawn[1] != drawn[2]
        assert "grid sweeps need a list" in await call_error(
            c, "create_sweep", name="bad", goal="g", base_command="x", parameters=space, workdir=str(workdir)
        )


@pytest.mark.parametrize("mode", MODES)
async def test_plans_and_memory_over_stdio(state_dir: Path, workdir: Path, mode: str) -> None:
    async with client(state_dir, mode) as c:
        error = await call_error(
            c,
            "save_plan",
            title="t",
            goal="g",
            raw_markdown=plan_markdown(skip=("Metrics", "Estimated Effort")),
        )
        assert "missing required section(s): Metrics, Estimated Effort" in error
        assert (await call(c, "list_plans"))["total"] == 0
        plan = await call(c, "save_plan", title="lr plan", goal="fastest lr", raw_markdown=plan_markdown())
        assert plan["status"] == "draft"
        error = await call_error(c, "update_plan", plan_id=plan["id"], status="executing")
        assert "cannot move to executing. Valid next statuses: approved, archived." in error
        for status in ("approved", "executing", "completed"):
            assert (await call(c, "update_plan", plan_id=plan["id"], status=status))["status"] == status
        assert (await call(c, "get_plan", plan_id=plan["id"]))["next_statuses"] == ["archived"]

        rule = await call(
            c, "add_memory", title="lr ceiling", content="lr above 1e-3 diverges", tags=["lr"], source="user"
        )
        context = (await c.read_resource("experiment://context")).contents[0].text  # type: ignore[union-attr]
        assert "**lr ceiling** — lr above 1e-3 diverges" in context
        await call(c, "update_memory", memory_id=rule["id"], active=False)
        context = (await c.read_resource("experiment://context")).contents[0].text  # type: ignore[union-attr]
        assert "lr ceiling" not in context
        listed = await call(c, "list_memories")
        assert [m["active"] for m in listed["memories"]] == [False]


@pytest.mark.parametrize("mode", MODES)
async def test_prompts_render_live_data_and_name_exactly_the_listed_tools(
    state_dir: Path, workdir: Path, mode: str
) -> None:
    async with client(state_dir, mode) as c:
        await call(c, "add_memory", title="bs 512 OOMs", content="on the 24 GB cards")
        run = await call(
            c, "create_run", name="probe", command="echo hi", workdir=str(workdir), auto_start=False
        )
        tools = (await c.list_tools()).tools
        for tool in tools:  # every tool is typed and annotated
            assert tool.annotations is not None and tool.description
        listed = {t.name for t in tools}
        read_only = {t.name for t in tools if t.annotations and t.annotations.read_only_hint}
        assert {"get_sweep", "list_plans", "get_plan", "list_memories", "wait_for_events"} <= read_only
        assert not {"create_sweep", "save_plan", "update_plan", "add_memory", "update_memory"} & read_only
        prompts = {p.name: p for p in (await c.list_prompts()).prompts}
        assert set(prompts) == {"agent_mode", "plan_mode", "wild_mode"}
        agent = (await c.get_prompt("agent_mode", {})).messages[0].content.text  # type: ignore[union-attr]
        catalog = agent.split("## Tools\n", 1)[1].split("\n## ", 1)[0]
        assert set(re.findall(r"^- `([a-z_]+)` — ", catalog, re.M)) == listed
        assert "**bs 512 OOMs**" in agent and run["id"] in agent
        assert "Cluster: not detected yet" in agent
        plan = (await c.get_prompt("plan_mode", {"goal": "beat the baseline"})).messages[0].content.text  # type: ignore[union-attr]
        wild = (await c.get_prompt("wild_mode", {"goal": "beat it", "max_iterations": "3"})).messages[0]
        wild_text = wild.content.text  # type: ignore[union-attr]
        assert "Goal from the user: **beat the baseline**" in plan and "\n## Risks & Mitigations" not in plan
        assert "`## Risks & Mitigations`" in plan and "iteration 2 of 3" in wild_text
        for text in (agent, plan, wild_text):
            assert named_tools(text) <= listed, named_tools(text) - listed
        with pytest.raises(Exception, match="max_iterations=0 is out of range"):
            await c.get_prompt("wild_mode", {"goal": "x", "max_iterations": "0"})
    assert listed <= API_TOOLS


@pytest.mark.parametrize("mode", MODES)
async def test_every_resource_reads(state_dir: Path, workdir: Path, mode: str) -> None:
    async with client(state_dir, mode) as c:
        sweep = await call(
            c, "create_sweep", name="res", goal="g", workdir=str(workdir),
            base_command='echo "{\\"step\\": 3, \\"acc\\": {acc}}" >> "$RESEARCH_METRICS_FILE"; echo logged',
            parameters={"acc": [0.75]},
        )  # fmt: skip
        run_id = sweep["runs"][0]["id"]
        await collect_endings(c, {run_id})
        plan = await call(c, "save_plan", title="p", goal="g", raw_markdown=plan_markdown())
        templates = {t.uri_template for t in (await c.list_resource_templates()).resource_templates}
        assert templates == {
            "runs://{run_id}", "runs://{run_id}/logs", "runs://{run_id}/metrics", "sweeps://{sweep_id}",
            "plans://{plan_id}", "runs://{run_id}/provenance", "runs://{run_id}/lineage",
        }  # fmt: skip
        assert "experiment://context" in {str(r.uri) for r in (await c.list_resources()).resources}

        async def read(uri: str) -> str:
            return (await c.read_resource(uri)).contents[0].text  # type: ignore[union-attr]

        run = json.loads(await read(f"runs://{run_id}"))
        assert run["status"] == "finished" and {m["key"]: m for m in run["metrics"]}["acc"]["last"] == 0.75
        assert await read(f"runs://{run_id}/logs") == "logged\n"
        metrics = json.loads(await read(f"runs://{run_id}/metrics"))
        assert metrics["metrics"]["acc"]["last_step"] == 3 and metrics["metrics"]["acc"]["max"] == 0.75
        assert metrics["recent"] == [{"key": "acc", "step": 3, "value": 0.75}]
        assert json.loads(await read(f"sweeps://{sweep['id']}"))["progress"]["finished"] == 1
        provenance = json.loads(await read(f"runs://{run_id}/provenance"))
        assert provenance["git"]["repo"] is None and provenance["job"]["program"] == ""  # builtins only
        assert json.loads(await read(f"runs://{run_id}/lineage"))["tree"]["id"] == run_id
        assert (await read(f"plans://{plan['id']}")).endswith(plan_markdown())
        assert "# Experiment context" in await read("experiment://context")
        with pytest.raises(Exception, match="no run with id"):
            await read("runs://run-20000101-000000-00000000")
        with pytest.raises(Exception, match="not a valid sweep id"):
            await read("sweeps://nope")


@contextlib.asynccontextmanager
async def subscribed(state_dir: Path, mode: str, uri: str) -> AsyncIterator[tuple[Client, Any]]:
    """A client of its own server process subscribed to ``uri``; yields it and a stream of updated URIs."""
    send, receive = anyio.create_memory_object_stream[str](16)

    async def on_message(message: object) -> None:
        if isinstance(message, ResourceUpdatedNotification):
            await send.send(message.params.uri)

    if mode == "legacy":
        async with Client(
            stdio_server(state_dir), mode="legacy", cache=None, message_handler=on_message
        ) as c:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", MCPDeprecationWarning)  # resources/subscribe: 2025-era API
                await c.session.subscribe_resource(uri)
            yield c, receive
        return
    async with (
        Client(stdio_server(state_dir), mode="auto", cache=None) as c,
        c.listen(resource_subscriptions=[uri]) as sub,
        anyio.create_task_group() as tg,
    ):

        async def pump() -> None:
            async for event in sub:
                await send.send(event.uri)  # type: ignore[union-attr]

        tg.start_soon(pump)
        yield c, receive
        tg.cancel_scope.cancel()


_RAISE_ALERT = "\n".join(
    [
        "import sys",
        "from mcp_server.core.monitoring.alerts import raise_alert",
        "from mcp_server.core.services import Services",
        "sv = Services(sys.argv[1])",
        "with sv.store.write() as s:",
        "    raise_alert(s, run_id=sys.argv[2], kind='rule', severity='warning', message='m', signature='s')",
    ]
)


@pytest.mark.parametrize("mode", MODES)
async def test_a_subscriber_hears_about_changes_made_by_other_processes(
    state_dir: Path, workdir: Path, mode: str
) -> None:
    async with client(state_dir, "legacy") as other:  # another server process launches the run
        run = await call(
            other, "create_run", name="gated", command="while [ ! -f gate ]; do sleep 0.02; done",
            workdir=str(workdir),
        )  # fmt: skip
        with anyio.fail_after(20):
            while (await call(other, "get_run", run_id=run["id"]))["status"] != "running":
                await anyio.sleep(0.05)
        uri = f"runs://{run['id']}"
        async with subscribed(state_dir, mode, uri) as (c, updates):
            (workdir / "gate").touch()
            with anyio.fail_after(15):
                assert await updates.receive() == uri
            doc = json.loads((await c.read_resource(uri)).contents[0].text)  # type: ignore[union-attr]
            assert doc["status"] == "finished"
            # a plain process writing the store (as a sidecar does) is heard too
            proc = await anyio.run_process(
                [sys.executable, "-c", _RAISE_ALERT, str(state_dir), run["id"]], check=False
            )
            assert proc.returncode == 0, proc.stderr.decode()
            with anyio.fail_after(15):
                assert await updates.receive() == uri


@pytest.mark.parametrize("mode", MODES)
async def test_wait_for_events_returns_soon_after_the_exit_and_never_repeats(
    state_dir: Path, workdir: Path, mode: str
) -> None:
    async with client(state_dir, mode) as c:
        run = await call(
            c, "create_run", name="gated", command="while [ ! -f gate ]; do sleep 0.01; done; echo out",
            workdir=str(workdir),
        )  # fmt: skip
        progress: list[tuple[float, float | None, str | None]] = []

        async def on_progress(done: float, total: float | None, message: str | None) -> None:
            progress.append((done, total, message))

        idle = await c.call_tool("wait_for_events", {"timeout_s": 1.2}, progress_callback=on_progress)
        assert idle.structured_content is not None
        assert idle.structured_content["timed_out"] and idle.structured_content["events"] == []
        assert progress and progress[0][1] == 1.2 and "waiting for run_ended, alert" in (progress[0][2] or "")
        cursor = idle.structured_content["cursor"]

        result: dict[str, Any] = {}

        async def wait() -> None:
            result.update(await call(c, "wait_for_events", cursor=cursor, timeout_s=30))
            result["returned_at"] = time.time()

        async with anyio.create_task_group() as tg:
            tg.start_soon(wait)
            await anyio.sleep(0.5)
            (workdir / "gate").touch()
        run_dir = (await call(c, "get_run", run_id=run["id"]))["run_dir"]
        exit_at = (Path(run_dir) / "exit_code").stat().st_mtime
        assert [(e["run_id"], e["status"], e["exit_code"]) for e in result["events"]] == [
            (run["id"], "finished", 0)
        ]
        assert result["returned_at"] - exit_at < 1.0, result["returned_at"] - exit_at
        again = await call(c, "wait_for_events", cursor=result["cursor"], timeout_s=1)
        assert again["timed_out"] and again["events"] == []
        # The limits are in the schema, so clients see them before calling; a call past them
        # is refused naming the argument and the limit.
        tools = {t.name: t for t in (await c.list_tools()).tools}
        schema = tools["wait_for_events"].input_schema["properties"]["timeout_s"]
        assert (schema["minimum"], schema["maximum"]) == (1, 240)
        error = await call_error(c, "wait_for_events", timeout_s=600)
        assert "timeout_s" in error and "less than or equal to 240" in error
        with contextlib.suppress(Exception):
            (workdir / "gate").unlink()


@pytest.mark.parametrize("mode", MODES)
async def test_a_first_wait_without_cursor_reports_a_run_that_already_ended(
    state_dir: Path, workdir: Path, mode: str
) -> None:
    async with client(state_dir, mode) as c:
        run = await call(c, "create_run", name="quick", command="true", workdir=str(workdir))
        with anyio.fail_after(20):
            while (await call(c, "get_run", run_id=run["id"]))["status"] != "finished":
                await anyio.sleep(0.05)
        # The agent's first wait, as the prompts tell it: no cursor, its run named.
        batch = await call(c, "wait_for_events", run_ids=[run["id"]], timeout_s=30)
        assert not batch["timed_out"] and batch["waited_s"] < 5
        assert [(e["run_id"], e["status"], e["exit_code"]) for e in batch["events"]] == [
            (run["id"], "finished", 0)
        ]
