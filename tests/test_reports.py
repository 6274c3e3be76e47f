"""Reports: a real 3-run sweep (tmux runs of a tiny CPU script) written up as Markdown with images.

Set ``RESEARCH_MCP_REPORT_EXAMPLE=DIR`` to keep the sweep report in DIR (the README's
example under docs/ was made that way).
"""

from __future__ import annotations

import json
import math
import os
import re
from pathlib import Path

import pytest
from PIL import Image

from mcp_server.core.errors import InvalidInput
from mcp_server.core.workflow.reports.location import report_path
from mcp_server.core.workflow.reports.service import write_report
from tests.helpers import PYTHON

TRAIN = """
\"\"\"A toy training run: fit w to 3.0 by gradient descent; a big lr overfits the held-out loss.\"\"\"

import argparse
import json
import math
import os
import time

parser = argparse.ArgumentParser()
parser.add_argument("--lr", type=float, required=True)
parser.add_argument("--steps", type=int, default=40)
parser.add_argument("--fail-at", type=int, default=-1)
args = parser.parse_args()
w, target = 0.0, 3.0
with open(os.environ["RESEARCH_METRICS_FILE"], "a", buffering=1) as out:
    for step in range(args.steps):
        if step == args.fail_at:
            raise RuntimeError("loss exploded: the data loader returned garbage")
        w -= args.lr * 2 * (w - target)
        loss = (w - target) ** 2 + 0.05 * math.sin(step) ** 2
        val_loss = (w - target) ** 2 + 0.2 * args.lr + 0.01 * math.cos(step) ** 2
        out.write(json.dumps({"step": step, "loss": loss, "val_loss": val_loss}) + "\\n")
        time.sleep(0.01)
print("done", args.lr)
"""

LINK = re.compile(r"!\[[^\]]*\]\(([^)]+)\)")


@pytest.fixture
def project(tmp_path: Path) -> Path:
    example = os.environ.get("RESEARCH_MCP_REPORT_EXAMPLE")
    path = Path(example).resolve() if example else tmp_path / "project"
    path.mkdir(parents=True, exist_ok=True)
    (path / "train.py").write_text(TRAIN.lstrip())
    return path


def _true_best(services, run_ids: list[str]) -> tuple[str, float]:  # type: ignore[no-untyped-def]
    """From the metrics files the jobs wrote, not from the store: the lowest val_loss of any run."""
    best = {}
    for run_id in run_ids:
        lines = services.runs.files(run_id).metrics.read_text().splitlines()
        best[run_id] = min(json.loads(line)["val_loss"] for line in lines)
    winner = min(best, key=best.__getitem__)
    return winner, best[winner]


def _section(text: str, title: str) -> str:
    return text.split(f"## {title}\n", 1)[1].split("\n## ", 1)[0]


def test_a_sweep_report_lists_every_run_names_the_true_best_and_links_real_images(
    services, project: Path
) -> None:  # type: ignore[no-untyped-def]
    sweep = services.sweeps.create(
        name="lr-sweep",
        goal="which learning rate reaches the lowest validation loss",
        base_command=f"{PYTHON} train.py --lr {{lr}}",
        parameters={"lr": [0.05, 0.2, 0.45]},
        workdir=str(project),
    )
    services.cluster.get()  # detect the machine, as an agent does first: the compute setup names it
    ids = [r.id for r in sweep.runs]
    for run_id in ids:
        assert services.runs.wait(run_id, 120).status == "finished"
    winner, value = _true_best(services, ids)

    answer = write_report(services, sweep_id=sweep.id, project=project)

    report = Path(answer.path)
    assert report == project / "reports" / "lr-sweep" / "report.md"
    assert len(answer.model_dump_json()) < 2048 and "lr-sweep" in answer.summary
    text = report.read_text()
    table = _section(text, "Runs")
    for run in sweep.runs:
        row = next(line for line in table.splitlines() if run.id in line)
        assert f"| {run.params['lr']} |" in row and "finished" in row
        cells = [c.strip() for c in row.strip("|").split("|")]
        val_best = float(cells[5])  # rank, run, status, duration, lr, val_loss best, ...
        truth = min(
            json.loads(x)["val_loss"] for x in services.runs.files(run.id).metrics.read_text().splitlines()
        )
        assert math.isclose(val_best, truth, rel_tol=1e-3)
    best = _section(text, "Best run")
    assert best.split("(`", 1)[1].startswith(winner), best
    assert f"{value:.4g}" in best and "Margin over the runner-up" in best and "How sure:" in best
    assert "which learning rate" in _section(text, "Objective")
    assert "- Machine: `cpu_only`" in _section(text, "Compute setup")

    links = LINK.findall(text)
    assert len(links) == 2 + 3  # val_loss and loss overlays, one image per run
    for link in links:
        image = report.parent / link
        assert image.is_file() and image.parent == report.parent
        with Image.open(image) as img:
            img.verify()
            assert img.format == "PNG"
        import matplotlib.image

        assert matplotlib.image.imread(image).shape[0] > 100  # decodes to pixels


def test_a_report_explains_failures_with_their_cause_and_shows_memory_rules(services, project: Path) -> None:  # type: ignore[no-untyped-def]
    services.memory.add(title="lr above 0.4 overfits", content="keep lr ≤ 0.3 on this toy task")
    ok = services.runs.create(name="good", command=f"{PYTHON} train.py --lr 0.1", workdir=str(project))
    bad = services.runs.create(
        name="broken", command=f"{PYTHON} train.py --lr 0.1 --fail-at 5", workdir=str(project)
    )
    assert services.runs.wait(ok.id, 120).status == "finished"
    assert services.runs.wait(bad.id, 120).status == "failed"

    answer = write_report(services, run_ids=[ok.id, bad.id], name="two-runs", project=project)

    text = Path(answer.path).read_text()
    failures = _section(text, "Alerts and failures")
    assert "broken" in failures and "exit 1" in failures
    assert "RuntimeError: loss exploded" in failures  # the classified cause and its evidence lines
    assert "lr above 0.4 overfits" in _section(text, "Memory rules")
    assert "1 failed" in answer.summary


def test_rewriting_a_report_removes_the_images_it_no_longer_links(services, project: Path) -> None:  # type: ignore[no-untyped-def]
    run = services.runs.create(name="solo", command=f"{PYTHON} train.py --lr 0.1", workdir=str(project))
    assert services.runs.wait(run.id, 120).status == "finished"
    first = write_report(services, run_ids=[run.id], name="solo", project=project)
    folder = Path(first.path).parent
    before = {p.name for p in folder.glob("*.png")}
    assert "curves-loss.png" in before
    write_report(services, run_ids=[run.id], name="solo", metrics=["val_loss"], project=project)
    after = {p.name for p in folder.glob("*.png")}
    assert "curves-loss.png" not in after and "curves-val_loss.png" in after
    with pytest.raises(InvalidInput, match="logged 'val_los'; did you mean 'val_loss'"):
        write_report(services, run_ids=[run.id], name="solo", metrics=["val_los"], project=project)
    assert {p.name for p in folder.glob("*.png")} == after  # a refused report changes nothing


def test_report_paths_stay_inside_the_project(tmp_path: Path) -> None:
    project = tmp_path / "proj"
    project.mkdir()
    (project / "escape").symlink_to(tmp_path)
    assert report_path(project, "lr") == project / "reports" / "lr" / "report.md"
    assert report_path(project, "x", "docs/r.md") == project / "docs" / "r.md"
    for bad in ("../outside.md", "/etc/report.md", "escape/report.md", "notes.txt", ""):
        with pytest.raises(InvalidInput):
            report_path(project, "x", bad)
    for bad_name in ("../up", "a/b", " ", "x" * 65):
        with pytest.raises(InvalidInput, match="report name"):
            report_path(project, bad_name)


def test_a_report_needs_exactly_one_subject(services, project: Path) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(InvalidInput, match="exactly one of sweep_id, run_ids or plan_id"):
        write_report(services, project=project)
    with pytest.raises(InvalidInput, match="exactly one"):
        write_report(services, sweep_id="sweep-20260101-000000-00000000", plan_id="x", project=project)
    assert not (project / "reports").exists()


async def _tool_roundtrip(state_dir: Path, run_id: str, project: Path) -> tuple[dict, str]:  # type: ignore[type-arg]
    from mcp import Client

    from mcp_server.server import create_server

    async with Client(create_server(state_dir), mode="auto") as c:
        ok = await c.call_tool("write_report", {"run_ids": [run_id], "name": "via-tool"})
        bad = await c.call_tool("write_report", {"run_ids": [run_id], "path": "../../escape.md"})
    assert not ok.is_error and bad.is_error
    assert ok.structured_content is not None
    return ok.structured_content, bad.content[0].text  # type: ignore[union-attr]


def test_the_write_report_tool_answers_with_a_path_and_a_short_summary(
    services, state_dir: Path, project: Path, monkeypatch: pytest.MonkeyPatch
) -> None:  # type: ignore[no-untyped-def]
    import anyio

    monkeypatch.setenv("RESEARCH_MCP_PROJECT_DIR", str(project))
    run = services.runs.create(name="one", command=f"{PYTHON} train.py --lr 0.1", workdir=str(project))
    assert services.runs.wait(run.id, 120).status == "finished"
    answer, error = anyio.run(_tool_roundtrip, state_dir, run.id, project)
    assert set(answer) == {"path", "summary"} and len(json.dumps(answer)) < 1024
    assert answer["path"] == str(project / "reports" / "via-tool" / "report.md")
    assert Path(answer["path"]).is_file()
    assert "leaves the project" in error and not (project.parent.parent / "escape.md").exists()


def test_research_mcp_report_writes_the_same_report_from_a_shell(
    services, state_dir: Path, project: Path
) -> None:  # type: ignore[no-untyped-def]
    import subprocess
    import sys

    run = services.runs.create(name="shell", command=f"{PYTHON} train.py --lr 0.2", workdir=str(project))
    assert services.runs.wait(run.id, 120).status == "finished"
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "mcp_server",
            "report",
            "--runs",
            run.id,
            "--metric",
            "val_loss",
            "--name",
            "cli",
        ],
        cwd=project,
        capture_output=True,
        text=True,
        timeout=180,
        env={k: v for k, v in os.environ.items() if k != "RESEARCH_MCP_PROJECT_DIR"},  # the project is cwd
    )
    assert proc.returncode == 0, proc.stderr
    path = project / "reports" / "cli" / "report.md"
    assert proc.stdout.splitlines()[0] == str(path) and "best shell val_loss=" in proc.stdout
    assert "![val_loss of every run](curves-val_loss.png)" in path.read_text()
    refused = subprocess.run(
        [sys.executable, "-m", "mcp_server", "report", "--runs", run.id, "--out", "/tmp/x.md"],
        cwd=project,
        capture_output=True,
        text=True,
        timeout=180,
        env={k: v for k, v in os.environ.items() if k != "RESEARCH_MCP_PROJECT_DIR"},  # the project is cwd
    )
    assert refused.returncode == 2 and "leaves the project" in refused.stderr


PLAN = """# Does warm-up help?

## Objective
Find out whether 100 warm-up steps lower the final validation loss.

## Compute Setup
One CPU box; runs of a few seconds each.

## Approach
Two runs, with and without warm-up.

## Metrics
val_loss (lower is better).

## Success Criteria
A margin larger than the noise.

## Risks & Mitigations
Noise: rerun with seeds.

## Estimated Effort
Minutes.
"""


def test_a_plan_report_takes_its_objective_and_compute_setup_from_the_plan(services, project: Path) -> None:  # type: ignore[no-untyped-def]
    run = services.runs.create(name="planned", command="true", workdir=str(project), auto_start=False)
    plan = services.plans.save(title="warm-up", goal="does warm-up help", raw_markdown=PLAN)
    services.plans.update(plan.id, link_run_ids=[run.id])

    answer = write_report(services, plan_id=plan.id, project=project)

    text = Path(answer.path).read_text()
    assert Path(answer.path) == project / "reports" / plan.id / "report.md"
    assert (
        _section(text, "Objective").strip()
        == "Find out whether 100 warm-up steps lower the final validation loss."
    )
    assert "> One CPU box; runs of a few seconds each." in _section(text, "Compute setup")
    assert "| – | planned (`" in _section(text, "Runs") and "ready" in _section(text, "Runs")
    assert "No metric curves to draw." in text and "no loss- or accuracy-like metric" in answer.summary


def test_plotting_and_apprise_stay_off_server_start_up() -> None:
    import subprocess

    code = (
        "import anyio, json, os, sys\n"
        "from pathlib import Path\n"
        "from mcp_server.server import create_server\n"
        "tools = anyio.run(create_server(Path(os.devnull)).list_tools)\n"
        "loaded = sorted({m.split('.')[0] for m in sys.modules})\n"
        "print(json.dumps({'tools': [t.name for t in tools], 'loaded': loaded}))"
    )
    proc = subprocess.run([PYTHON, "-c", code], capture_output=True, text=True, timeout=120, check=True)
    report = json.loads(proc.stdout)
    assert "write_report" in report["tools"]
    assert not {"matplotlib", "apprise", "PIL", "sqlmodel"} & set(report["loaded"])
