"""Plans: the plan-mode structure check and the approval lifecycle."""

import pytest

from mcp_server.core.errors import Conflict, InvalidInput, NotFound
from mcp_server.core.services import Services
from mcp_server.core.workflow.plans import REQUIRED_SECTIONS, check_structure, sections

SECTION_TEXT = {
    "Objective": "Find the lr that converges fastest.",
    "Compute Setup": "1 GPU per run, parallel 2, .venv/bin/python.",
    "Approach": "Smoke run, then a grid over lr.",
    "Parameters to Sweep": "lr: 1e-4, 3e-4, 1e-3",
    "Metrics": "loss per step; rank by min loss.",
    "Success Criteria": "loss < 0.1 within 200 steps.",
    "Risks & Mitigations": "Divergence at high lr: stop early.",
    "Estimated Effort": "3 runs × 5 min = 15 GPU-minutes.",
}


def plan_markdown(skip: tuple[str, ...] = ()) -> str:
    parts = ["# Plan: lr sweep"]
    for title, body in SECTION_TEXT.items():
        if title not in skip:
            parts += [f"## {title}", body, ""]
    return "\n".join(parts)


def test_sections_are_found_by_heading_whatever_the_style() -> None:
    md = (
        "# Title\n## 1. OBJECTIVE\nx\n### Compute setup:\ny\n## Approach ##\nz\n"
        "## Metrics\n```\n## Success Criteria\n```\nm\n"
        "## Risks and Mitigations\nr\n## Estimated Effort\ne\n"
    )
    found = sections(md)
    assert found["objective"].startswith("x") and found["compute setup"] == "y"
    assert "success criteria" not in found  # a heading inside a code block is not a heading
    assert found["risks & mitigations"] == "r"


def test_a_plan_missing_two_sections_is_refused_naming_both() -> None:
    with pytest.raises(InvalidInput) as err:
        check_structure(plan_markdown(skip=("Metrics", "Risks & Mitigations")))
    text = str(err.value)
    assert "missing required section(s): Metrics, Risks & Mitigations." in text
    assert "Objective" in text and "optional: Parameters to Sweep" in text


def test_an_empty_section_is_refused() -> None:
    md = plan_markdown().replace(SECTION_TEXT["Approach"], "  ")
    with pytest.raises(InvalidInput, match="Approach have a heading but no content"):
        check_structure(md)


def test_parameters_to_sweep_is_optional() -> None:
    check_structure(plan_markdown(skip=("Parameters to Sweep",)))
    assert len(REQUIRED_SECTIONS) == 7


def test_plans_move_draft_approved_executing_completed(services: Services, workdir) -> None:  # type: ignore[no-untyped-def]
    plans = services.plans
    plan = plans.save(title="lr sweep", goal="fastest lr", raw_markdown=plan_markdown(), session_id="s1")
    assert plan.status == "draft" and plan.next_statuses == ["approved", "archived"]
    with pytest.raises(
        Conflict, match=r"cannot move to completed\. Valid next statuses: approved, archived\."
    ):
        plans.update(plan.id, status="completed")
    with pytest.raises(InvalidInput, match="valid: draft, approved, executing, completed, archived"):
        plans.update(plan.id, status="done")
    assert plans.update(plan.id, status="approved").status == "approved"
    with pytest.raises(Conflict, match="content is frozen once it leaves draft"):
        plans.update(plan.id, goal="something else")
    sweep = services.sweeps.create(name="s", goal="g", workdir=str(workdir))
    executing = plans.update(plan.id, status="executing", link_sweep_ids=[sweep.id])
    assert executing.status == "executing" and executing.sweep_ids == [sweep.id]
    with pytest.raises(NotFound, match="cannot link unknown id"):
        plans.update(plan.id, link_run_ids=["run-20000101-000000-00000000"])
    assert plans.update(plan.id, status="completed").next_statuses == ["archived"]
    archived = plans.update(plan.id, status="archived")
    with pytest.raises(Conflict, match="Archived plans are final"):
        plans.update(plan.id, status="draft")
    assert archived.sweep_ids == [sweep.id]
    listed = plans.list(status=["archived"])
    assert listed.total == 1 and listed.plans[0].id == plan.id


def test_an_approved_plan_goes_back_to_draft_to_be_revised(services: Services) -> None:
    plan = services.plans.save(title="t", goal="g", raw_markdown=plan_markdown())
    services.plans.update(plan.id, status="approved")
    services.plans.update(plan.id, status="draft")
    with pytest.raises(InvalidInput, match="missing required section"):
        services.plans.update(plan.id, raw_markdown=plan_markdown(skip=("Objective",)))
    revised = services.plans.update(plan.id, raw_markdown=plan_markdown() + "\nMore detail.")
    assert revised.raw_markdown.endswith("More detail.") and revised.status == "draft"


def test_bad_plans_change_nothing(services: Services) -> None:
    with pytest.raises(InvalidInput, match="title must be"):
        services.plans.save(title=" ", goal="g", raw_markdown=plan_markdown())
    with pytest.raises(InvalidInput, match="missing required"):
        services.plans.save(title="t", goal="g", raw_markdown="just text")
    with pytest.raises(InvalidInput, match="not a valid plan id"):
        services.plans.get("plan-1")
    assert services.plans.list().total == 0
