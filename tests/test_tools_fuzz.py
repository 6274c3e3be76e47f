"""Every tool fuzzed from its own input schema: only validation errors or ToolErrors come back,
the server stays up, and a rejected call writes nothing to the store or the state dir.

The arguments are drawn from each tool's published ``inputSchema``, so
a new tool or parameter is fuzzed without touching this file. Id fields are sometimes swapped
for ids that exist, so calls reach past the "unknown id" check into the services.
"""

from __future__ import annotations

import os
import sqlite3
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import anyio
import pytest
from anyio.from_thread import BlockingPortal, start_blocking_portal
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from mcp import Client

from mcp_server.app import UNEXPECTED
from mcp_server.core.monitoring.alerts import raise_alert
from mcp_server.core.services import Services
from mcp_server.server import create_server
from tests.helpers import kill_state_dir_jobs, sidecar_pids, wait_for
from tests.schema_strategy import from_schema

EXAMPLES = 300
FUZZ = settings(
    max_examples=EXAMPLES,
    deadline=None,
    database=None,
    derandomize=bool(os.environ.get("CI")),  # CI replays the same examples; local runs explore
    suppress_health_check=[
        HealthCheck.too_slow,
        HealthCheck.function_scoped_fixture,
        HealthCheck.filter_too_much,
    ],
)

# Fields whose value names something in the store, and the kind of object it names.
ID_FIELDS = {
    "run_id": "run",
    "parent_run_id": "run",
    "run_ids": "run",
    "sweep_id": "sweep",
    "plan_id": "plan",
    "memory_id": "memory",
    "alert_id": "alert",
}
ANY_JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=20),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=8), inner, max_size=3),
    max_leaves=8,
)


@dataclass
class Target:
    """A live in-process server over a state dir holding one of everything."""

    portal: BlockingPortal
    client: Client
    state_dir: Path
    schemas: dict[str, dict[str, Any]]
    ids: dict[str, list[str]] = field(default_factory=dict)
    calls: dict[str, int] = field(default_factory=dict)
    writes: Writes | None = None
    last_look: tuple[object, ...] = ()  # the state dir as the previous call left it
    read_only: set[str] = field(default_factory=set)

    def call(self, tool: str, args: dict[str, Any]) -> Any:
        self.calls[tool] = self.calls.get(tool, 0) + 1
        return self.portal.call(self._call, tool, args)

    async def _call(self, tool: str, args: dict[str, Any]) -> Any:
        with anyio.fail_after(30):  # a hang is a failure too
            return await self.client.call_tool(tool, args)


class Writes:
    """Whether anything was written to the state dir since the last look, cheaply enough to
    ask after every call: SQLite's data_version moves whenever another connection commits a
    change, and a directory's mtime whenever an entry is added to or removed from it."""

    def __init__(self, state_dir: Path) -> None:
        self.state_dir = state_dir
        self.con = sqlite3.connect(
            f"file:{state_dir / 'research.db'}?mode=ro", uri=True, check_same_thread=False
        )

    def look(self) -> tuple[object, ...]:
        (version,) = self.con.execute("PRAGMA data_version").fetchone()
        runs = self.state_dir / "runs"
        dirs = [self.state_dir, runs, *(e for e in os.scandir(runs) if e.is_dir())]
        return version, tuple((str(d), os.stat(d).st_mtime_ns) for d in dirs)


def seed_store(state_dir: Path, workdir: Path) -> dict[str, list[str]]:
    """One ready run, one run with an open alert, a sweep, a plan and a memory rule."""
    sv = Services(state_dir)
    try:
        ready = sv.runs.create(name="ready", command="true", workdir=str(workdir), auto_start=False)
        alerted = sv.runs.create(name="alerted", command="true", workdir=str(workdir), auto_start=False)
        with sv.store.write() as s:
            alert = raise_alert(
                s,
                run_id=alerted.id,
                kind="rule",
                severity="warning",
                message="loss spiked",
                signature="spike",
            )
        sweep = sv.sweeps.create(name="empty", goal="hold runs")
        plan = sv.plans.save(title="t", goal="g", raw_markdown=PLAN)
        memory = sv.memory.add(title="lr", content="lr above 1e-3 diverges", tags=["lr"], source="user")
        return {
            "run": [ready.id, alerted.id],
            "sweep": [sweep.id],
            "plan": [plan.id],
            "memory": [memory.id],
            "alert": [alert.id],
        }
    finally:
        sv.close()


PLAN = "\n".join(
    f"## {section}\n{section} text.\n"
    for section in [
        "Objective", "Compute Setup", "Approach", "Metrics", "Success Criteria", "Risks & Mitigations",
        "Estimated Effort",
    ]
)  # fmt: skip


@pytest.fixture(scope="module")
def target(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Target]:
    root = tmp_path_factory.mktemp("fuzz")
    state_dir = (root / "state").resolve()
    workdir = root / "work"
    workdir.mkdir()
    ids = seed_store(state_dir, workdir)
    try:
        with (
            start_blocking_portal() as portal,
            portal.wrap_async_context_manager(Client(create_server(state_dir))) as client,
        ):
            tools = portal.call(client.list_tools).tools
            t = Target(portal, client, state_dir, {tool.name: tool.input_schema for tool in tools}, ids)
            t.read_only = {
                tool.name for tool in tools if tool.annotations and tool.annotations.read_only_hint
            }
            t.writes = Writes(state_dir)
            yield t
            t.writes.con.close()
            # The server is still up and answers after everything thrown at it.
            assert not portal.call(client.call_tool, "list_runs", {}).is_error
    finally:
        kill_state_dir_jobs(state_dir)


def tool_names() -> list[str]:
    """The registered tools, listed without starting the server (nothing is opened)."""
    return [t.name for t in anyio.run(create_server(Path(os.devnull)).list_tools)]


TOOLS = tool_names()


def arguments(schema: dict[str, Any], ids: dict[str, list[str]]) -> st.SearchStrategy[dict[str, Any]]:
    """Schema-valid arguments (some ids swapped for real ones), or schema-shaped garbage."""
    names = list(schema.get("properties", {}))

    @st.composite
    def valid(draw: st.DrawFn) -> dict[str, Any]:
        args = draw(from_schema(schema))
        for key, kind in ID_FIELDS.items():
            if key in args and ids.get(kind) and draw(st.booleans()):
                real = draw(st.sampled_from(ids[kind]))
                args[key] = [real] if isinstance(args[key], list) else real
        if "choice" in args and draw(st.booleans()):
            args["choice"] = draw(st.sampled_from(["Ignore", "Stop run", "Rerun"]))
        return args

    garbage = st.dictionaries(st.sampled_from(names) if names else st.text(max_size=8), ANY_JSON, max_size=4)
    return st.one_of(valid(), valid(), garbage)


def tame(tool: str, args: dict[str, Any]) -> dict[str, Any]:
    """Keep fuzzing from launching random shell commands or blocking for minutes."""
    if tool in {"create_run", "rerun", "create_sweep"}:
        args["auto_start"] = False  # always: pydantic would read a fuzzed 1 or "yes" as true
    return args


def check(target: Target, tool: str, args: dict[str, Any]) -> None:
    assert target.writes is not None
    before = target.last_look or target.writes.look()
    result = target.call(tool, args)
    text = result.content[0].text if result.content else ""  # type: ignore[union-attr]
    if result.is_error:
        # A ToolError or a validation error carries its reason after the prefix; a crash does not.
        prefix = f"Error executing tool {tool}: "
        assert text.startswith(prefix) and text[len(prefix) :].strip(), f"{tool}({args!r}) crashed: {text!r}"
        assert UNEXPECTED not in text, f"{tool}({args!r}) hit a bug: {text!r}"
        after = target.writes.look()
        assert after == before, f"rejected {tool}({args!r}) changed the store"
    else:
        assert result.structured_content is not None, f"{tool}({args!r}) answered without a typed result"
        if tool not in target.read_only:
            quiesce(target.state_dir)
        after = target.writes.look()
    target.last_look = after


def quiesce(state_dir: Path) -> None:
    """Let a run that a successful call launched (start_run, a "Rerun" choice) end and be settled,
    so the next rejected call is judged against a store that nothing else is writing."""

    def quiet() -> bool:
        con = sqlite3.connect(f"file:{state_dir / 'research.db'}?mode=ro", uri=True)
        try:
            (active,) = con.execute(
                "SELECT COUNT(*) FROM runs WHERE status IN ('queued', 'launching', 'running')"
            ).fetchone()
        finally:
            con.close()
        return active == 0 and not sidecar_pids(state_dir)

    wait_for(quiet, 30, interval=0.05, what="launched runs and their sidecars to finish")


@pytest.mark.parametrize("tool", [t for t in TOOLS if t != "wait_for_events"])
def test_tool_survives_its_own_schema(target: Target, tool: str) -> None:
    schema = target.schemas[tool]

    @FUZZ
    @given(args=arguments(schema, target.ids))
    def fuzz(args: dict[str, Any]) -> None:
        check(target, tool, tame(tool, args))

    fuzz()
    assert target.calls[tool] >= EXAMPLES


def test_wait_for_events_survives_its_own_schema(target: Target) -> None:
    """A valid wait blocks for up to timeout_s, so the drawn calls are made 25 at a time."""
    schema = target.schemas["wait_for_events"]
    drawn: list[dict[str, Any]] = []

    @FUZZ
    @given(args=arguments(schema, target.ids))
    def collect(args: dict[str, Any]) -> None:
        # Valid timeouts are shortened to the 1 s minimum so the whole batch ends in seconds.
        timeout = args.get("timeout_s", 60)  # the default waits a minute
        if isinstance(timeout, int | float) and not isinstance(timeout, bool) and 1 <= timeout <= 240:
            args["timeout_s"] = 1
        drawn.append(args)

    collect()
    assert len(drawn) >= EXAMPLES
    assert target.writes is not None
    before = target.writes.look()

    async def call_all() -> list[tuple[dict[str, Any], Any]]:
        results: list[tuple[dict[str, Any], Any]] = []

        limiter = anyio.CapacityLimiter(25)

        async def one(args: dict[str, Any]) -> None:
            async with limiter:
                results.append((args, await target.client.call_tool("wait_for_events", args)))

        with anyio.fail_after(120):
            async with anyio.create_task_group() as tg:
                for args in drawn:
                    tg.start_soon(one, args)
        return results

    results = target.portal.call(call_all)
    assert len(results) == len(drawn)
    prefix = "Error executing tool wait_for_events: "
    for args, result in results:
        if result.is_error:
            text = result.content[0].text
            assert text.startswith(prefix) and text[len(prefix) :].strip(), (
                f"wait_for_events({args!r}): {text!r}"
            )
            assert UNEXPECTED not in text, f"wait_for_events({args!r}) hit a bug: {text!r}"
        else:
            assert set(result.structured_content) >= {"events", "cursor", "timed_out"}
    assert target.writes.look() == before  # waiting only reads
