"""compare_runs: params, code and metrics that differ, from runs launched in a real git repository."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from mcp_server.core.errors import InvalidInput
from mcp_server.core.services import Services
from mcp_server.core.workflow.compare import compare_runs
from tests.helpers import PYTHON, wait_for
from tests.test_provenance import ended, git

TRAIN = """import json, os, sys
lr = float(sys.argv[sys.argv.index('--lr') + 1])
scale = 1.0
with open(os.environ['RESEARCH_METRICS_FILE'], 'a') as f:
    for step in range(3):
        f.write(json.dumps({'step': step, 'loss': scale * lr * (3 - step)}) + '\\n')
"""


@pytest.fixture
def repo(workdir: Path) -> Path:
    git(workdir, "init", "-q", "-b", "main")
    (workdir / "train.py").write_text(TRAIN)
    (workdir / "README").write_text("readme\n")
    git(workdir, "add", ".")
    git(workdir, "commit", "-q", "-m", "first")
    return workdir


def launch(services: Services, repo: Path, name: str, lr: float) -> str:
    run = services.runs.create(
        name=name, command=f"{PYTHON} train.py --lr {lr}", workdir=str(repo), params={"lr": lr, "bs": 32}
    )
    wait_for(lambda: ended(services, run.id), 30, what=f"{name} to end")
    return run.id


def test_two_runs_differing_in_one_param_and_one_edited_line_name_exactly_those(
    services: Services, repo: Path
) -> None:
    first = launch(services, repo, "base", 0.1)
    (repo / "train.py").write_text(TRAIN.replace("scale = 1.0", "scale = 2.0"))
    second = launch(services, repo, "edited", 0.01)

    cmp = compare_runs(services.runs, [first, second], metric="loss")
    assert cmp.params == {"lr": [0.1, 0.01]}
    assert cmp.other == {}
    [code] = cmp.code
    assert code.run_id == second and not code.same and code.commits == []
    assert [(f.path, f.added, f.removed) for f in code.files] == [("train.py", 1, 1)]
    assert code.patch is None  # only on request
    assert [r.best for r in cmp.runs] == pytest.approx([0.1, 0.02])
    assert cmp.runs[1].d_best == pytest.approx(-0.08) and cmp.runs[1].d_last == pytest.approx(-0.08)
    assert len(cmp.model_dump_json(exclude_defaults=True)) < 1024  # compact

    cmp = compare_runs(services.runs, [first, second], metric="loss", patch=True)
    patch = cmp.code[0].patch or ""
    assert "-scale = 1.0" in patch and "+scale = 2.0" in patch and "README" not in patch

    # A commit between the runs: the diff spans it (the committed edit and a new one).
    git(repo, "commit", "-qam", "scale 2")
    (repo / "README").write_text("readme\nmore\n")
    third = launch(services, repo, "committed", 0.01)
    cmp = compare_runs(services.runs, [first, third])
    assert {f.path for f in cmp.code[0].files} == {"train.py", "README"}
    assert len(cmp.code[0].commits) == 2 and cmp.metric_keys == ["loss"]
    assert cmp.params == {"lr": [0.1, 0.01]}

    # Without the repository, runs of one commit are still compared through their patches.
    fourth = launch(services, repo, "again", 0.01)
    shutil.rmtree(repo / ".git")
    cmp = compare_runs(services.runs, [third, fourth])
    assert cmp.code[0].same and cmp.params == {}
    cmp = compare_runs(services.runs, [first, third])
    assert "cannot diff them" in cmp.code[0].note


def test_bad_input_is_a_clear_error(services: Services, repo: Path) -> None:
    run = launch(services, repo, "one", 0.1)
    with pytest.raises(InvalidInput, match="2 to 8 different run ids"):
        compare_runs(services.runs, [run, run])
    assert json.loads(
        compare_runs(services.runs, [run, launch(services, repo, "two", 0.1)]).model_dump_json()
    )


def test_eight_runs_that_differ_everywhere_still_compare_within_the_answer_budget(
    services: Services, repo: Path
) -> None:
    for i in range(40):  # a refactor touching many files between runs
        (repo / f"mod{i}.py").write_text(f"X = {i}\n")
    git(repo, "add", ".")
    git(repo, "commit", "-q", "-m", "modules")
    ids = []
    for n in range(8):
        for i in range(40):
            (repo / f"mod{i}.py").write_text(f"X = {i}\n" + f"Y = {n}\n" * n)
        params = {f"p{k}": f"{n}-" + "v" * 300 for k in range(30)}
        run = services.runs.create(
            name=f"r{n}", command=f"true {n} # " + "long comment " * 40, workdir=str(repo), params=params
        )
        ids.append(run.id)
    for run_id in ids:
        wait_for(lambda run_id=run_id: ended(services, run_id), 60, what="the runs to end")

    cmp = compare_runs(services.runs, ids)
    answer = cmp.model_dump_json(exclude_none=True, exclude_defaults=True)
    assert len(answer.encode()) <= 7 * 1024  # the envelope stays within the 8 KB default answer
    assert len(cmp.params) < 30 and "more differing param(s): p" in cmp.note
    assert "values cut at" in cmp.note
    assert all(c.note.endswith("patch=true has the diff") for c in cmp.code[1:])
    assert len(cmp.code[1].files) < 40 and cmp.code[1].note.startswith(f"{40 - len(cmp.code[1].files)} more")

    full = compare_runs(services.runs, ids[:2], patch=True)  # detail on request is not cut
    assert len(full.params) == 30 and len(full.code[0].files) == 40 and full.code[0].patch
