"""experiment://context: what it shows and that it stays bounded whatever the history."""

from pathlib import Path

from mcp_server.core.monitoring.alerts import raise_alert
from mcp_server.core.services import Services
from resources.context import MAX_CHARS, experiment_context


def test_context_shows_active_rules_runs_sweeps_alerts_and_plans(services: Services, workdir: Path) -> None:
    on = services.memory.add(title="lr ceiling", content="lr > 1e-3 diverges", tags=["lr"])
    off = services.memory.add(title="stale rule", content="old")
    services.memory.update(off.id, active=False)
    run = services.runs.create(name="waiting", command="true", workdir=str(workdir), auto_start=False)
    services.sweeps.create(name="lr-sweep", goal="find lr", workdir=str(workdir))
    with services.store.write() as s:
        raise_alert(
            s, run_id=run.id, kind="rule", severity="critical", message="loss is NaN", signature="nan"
        )
    from tests.test_plans import plan_markdown

    plan = services.plans.save(title="the plan", goal="g", raw_markdown=plan_markdown())
    text = experiment_context(services, can_detect=False)
    assert f"- **lr ceiling** — lr > 1e-3 diverges [lr] ({on.id})" in text
    assert "stale rule" not in text
    assert f"| {run.id} | waiting | ready |" in text
    assert "- lr-sweep (sweep-" in text and "empty; 0/0 done" in text
    assert f"- [critical] {run.id}: loss is NaN" in text
    assert f"- the plan ({plan.id}): draft" in text
    assert "Cluster: not detected yet — ask the user" in text


def test_context_stays_bounded(services: Services, workdir: Path) -> None:
    for i in range(60):
        services.memory.add(title=f"rule {i}", content="x" * 4000)
        services.runs.create(name=f"r{i}", command="true", workdir=str(workdir), auto_start=False)
    text = experiment_context(services, can_detect=False)
    assert len(text) <= MAX_CHARS
    assert "… 45 more: list_runs" in text
    assert text.count("- **rule") <= 20
