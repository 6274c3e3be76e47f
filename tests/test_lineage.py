"""Lineage: reruns with overrides record their parent and what changed; the tree of a run's family."""

from __future__ import annotations

from pathlib import Path

import pytest

from mcp_server.core.errors import InvalidInput
from mcp_server.core.services import Services
from mcp_server.core.workflow.lineage import describe, lineage, set_option
from tests.helpers import wait_for
from tests.test_provenance import ended

SHOW = 'echo "args=$* secret=$TOKEN mode=${MODE:-none}"'


def test_a_rerun_with_overrides_changes_only_what_it_says_and_records_it(
    services: Services, workdir: Path
) -> None:
    (workdir / "show.sh").write_text(SHOW + "\n")
    root = services.runs.create(
        name="base",
        command="bash show.sh --lr 0.1 --epochs 3 --fp16",
        workdir=str(workdir),
        params={"lr": 0.1},
        env={"TOKEN": "s3cret", "MODE": "a"},
    )
    wait_for(lambda: ended(services, root.id), 20, what="the first run")
    child = services.runs.rerun(
        root.id,
        overrides={"params": {"lr": 0.01}, "args": {"epochs": 5, "fp16": None}, "env": {"MODE": None}},
    )
    wait_for(lambda: ended(services, child.id), 20, what="the rerun")
    record = services.runs.load(child.id)
    assert record.parent_run_id == root.id
    assert record.command == "bash show.sh --lr 0.01 --epochs 5"
    assert record.params == {"lr": 0.01} and record.env_keys == ["TOKEN"]
    assert services.runs.logs(child.id).text == "args=--lr 0.01 --epochs 5 secret=s3cret mode=none\n"
    assert record.options["lineage"]["changes"] == {
        "params": {"lr": [0.1, 0.01]},
        "args": {"--epochs": 5, "--fp16": None},
        "env": ["MODE"],
    }
    plain = services.runs.rerun(root.id)  # no overrides: the same spec, recorded as such
    grandchild = services.runs.rerun(child.id, overrides={"command": "echo replaced"})

    tree = lineage(services.runs, child.id)
    assert [a.id for a in tree.ancestors] == [root.id]
    assert tree.tree.change == "lr 0.1→0.01; --epochs →5; --fp16 removed; env MODE"
    assert [(n.id, n.change) for n in tree.tree.children] == [(grandchild.id, "command replaced")]
    family = lineage(services.runs, root.id).tree
    assert [(n.id, n.change) for n in family.children] == [
        (child.id, "lr 0.1→0.01; --epochs →5; --fp16 removed; env MODE"),
        (plain.id, "same spec"),
    ]
    assert family.children[0].children[0].id == grandchild.id


def test_a_sweep_run_is_rendered_again_from_its_base_command(services: Services, workdir: Path) -> None:
    sweep = services.sweeps.create(
        name="s", goal="lr", base_command="echo lr={lr} bs={bs}", parameters={"lr": [0.1], "bs": [8]},
        workdir=str(workdir), auto_start=False,
    )  # fmt: skip
    run = services.runs.rerun(sweep.runs[0].id, overrides={"params": {"bs": 16}}, auto_start=False)
    assert services.runs.load(run.id).command == "echo lr=0.1 bs=16"
    assert services.runs.load(run.id).sweep_id == sweep.id


def test_bad_overrides_are_refused_and_create_nothing(services: Services, workdir: Path) -> None:
    run = services.runs.create(name="x", command="true", workdir=str(workdir), auto_start=False)
    for overrides, message in (
        ({"paramz": {}}, "unknown overrides"),
        ({"args": {"bad name": 1}}, "is not allowed"),
        ({"env": {"RESEARCH_X": "1"}}, "reserved"),
        ({"command": ""}, "command is empty"),
    ):
        with pytest.raises(InvalidInput, match=message):
            services.runs.rerun(run.id, overrides=overrides)
    assert services.runs.list().total == 1


def test_options_are_set_where_they_are_and_appended_where_they_are_not() -> None:
    assert set_option("t.py --lr=0.1 --lr-decay 2", "lr", 5) == "t.py --lr=5 --lr-decay 2"
    assert set_option("t.py --name 'a b' && x", "name", "c d") == "t.py --name 'c d' && x"
    assert set_option("t.py", "fp16", True) == "t.py --fp16"
    assert set_option("t.py", "tag", "a b") == "t.py '--tag=a b'"
    assert describe({"params": {"lr": [None, 0.1]}}) == "lr →0.1"


def test_the_dashboard_run_page_shows_the_parent_the_reruns_and_what_changed(
    services: Services, workdir: Path
) -> None:
    from starlette.testclient import TestClient

    from mcp_server.ui.app import create_ui_app
    from tests.test_ui_security import BASE, GATE, logged_in

    root = services.runs.create(
        name="base", command="true --lr 0.1", workdir=str(workdir), params={"lr": 0.1}, auto_start=False
    )
    child = services.runs.rerun(root.id, overrides={"params": {"lr": 0.01}}, auto_start=False)
    with TestClient(create_ui_app(services, GATE), base_url=BASE) as client:
        logged_in(client)
        page = client.get(f"/ui/runs/{child.id}").text
        assert f'rerun of <a href="/ui/runs/{root.id}">base</a>: lr 0.1→0.01' in page
        page = client.get(f"/ui/runs/{root.id}").text
        assert f'rerun <a href="/ui/runs/{child.id}">base</a> (ready): lr 0.1→0.01' in page
