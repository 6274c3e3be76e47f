"""The dashboard in a real browser: headless Chromium via selenium, against ``research-mcp ui``.

What a researcher does with it: open the login link, watch a run's curve grow while it
trains, compare a sweep's runs, stop a diverging run from its alert — on a laptop and on
a 390×844 phone screen. Screenshots of each view are kept (path printed; set
``RESEARCH_MCP_ARTIFACTS`` to choose it).
"""

from __future__ import annotations

import shlex
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from mcp_server.demo import train
from tests.browser import (
    LAPTOP,
    PHONE,
    Dashboard,
    artifacts,
    chromium,
    free_port,
    js_errors,
    need_browser,
    text_of,
)
from tests.helpers import wait_for
from tests.test_plans import plan_markdown

VIEWPORTS = {"laptop": LAPTOP, "phone": PHONE}
NAN_THEN_WAIT = (
    "import json, os, time\n"
    "f = open(os.environ['RESEARCH_METRICS_FILE'], 'a')\n"
    "for i in range(20):\n"
    "    f.write(json.dumps({'step': i, 'loss': 1.0 / (i + 1)}) + '\\n'); f.flush(); time.sleep(0.02)\n"
    'f.write(\'{"step": 20, "loss": NaN}\\n\'); f.flush()\n'
    "print('diverged; still holding the GPU', flush=True)\n"
    "time.sleep(300)\n"
)


def train_command(steps: int, step_time: float, lr: str = "0.05") -> str:
    return (
        f"{shlex.quote(sys.executable)} {shlex.quote(train.__file__)} --steps {steps} "
        f"--step-time {step_time} --lr {lr}"
    )


@pytest.fixture(scope="module")
def shots(tmp_path_factory: pytest.TempPathFactory) -> Path:
    need_browser()
    return artifacts(tmp_path_factory)


@pytest.fixture
def dashboard(state_dir: Path, services) -> Iterator[Dashboard]:  # type: ignore[no-untyped-def]
    need_browser()
    ui = Dashboard(state_dir, free_port())
    yield ui
    ui.close()


def drawn(driver: Any, key: str) -> dict[str, Any] | None:
    return driver.execute_script("return (window.rmcpDrawn || {})[arguments[0]] || null", key)


def click(driver: Any, css: str) -> None:
    """Click what the selector finds now (live blocks are swapped in, so no element handle is kept)."""
    script = "const e = document.querySelector(arguments[0]); if (e) e.click(); return !!e"
    assert driver.execute_script(script, css), f"nothing matches {css}"


def login(driver: Any, dashboard: Dashboard) -> None:
    driver.get(dashboard.url)
    # The token left the address bar: the login link set a cookie and redirected.
    wait_for(lambda: "token=" not in driver.current_url, what="redirect after login")
    assert driver.find_element("css selector", "header .brand").text == "research-mcp"


@pytest.mark.parametrize("viewport", ["laptop", "phone"])
def test_login_link_then_a_runs_curve_grows_while_it_trains(
    viewport: str,
    dashboard: Dashboard,
    services,
    workdir: Path,
    shots: Path,  # type: ignore[no-untyped-def]
) -> None:
    run = services.runs.create(
        name=f"live-{viewport}", command=train_command(3000, 0.03), workdir=str(workdir), params={"lr": 0.05}
    )
    with chromium(VIEWPORTS[viewport]) as driver:
        login(driver, dashboard)
        row = wait_for(
            lambda: driver.find_elements("css selector", f'tr[data-run="{run.id}"]'), what="run row"
        )
        assert f"live-{viewport}" in row[0].text
        click(driver, f'tr[data-run="{run.id}"] a')
        first = wait_for(lambda: drawn(driver, "loss"), timeout=30, what="the loss curve drawn")
        # The run keeps writing: the same chart grows without a reload.
        grown = wait_for(
            lambda: (d := drawn(driver, "loss")) and d["points"] >= first["points"] + 30 and d,
            timeout=60, what="the loss curve to grow",
        )  # fmt: skip
        assert grown["lastStep"] > first["lastStep"]
        assert driver.execute_script("return document.getElementById('live').className") == "live on"
        # The log tail follows too.
        wait_for(lambda: "step 40/3000" in text_of(driver, "#log"), timeout=60, what="log tail")
        width = driver.execute_script("return document.documentElement.scrollWidth")
        assert width <= VIEWPORTS[viewport][0] + 1, "the run page must not scroll sideways"
        driver.save_screenshot(str(shots / f"run-{viewport}.png"))
        driver.get(dashboard.base)
        wait_for(lambda: driver.find_elements("css selector", "svg.spark polyline"), what="a sparkline")
        driver.save_screenshot(str(shots / f"runs-{viewport}.png"))
        assert js_errors(driver) == []
    services.runs.stop(run.id)


@pytest.mark.parametrize("viewport", ["laptop", "phone"])
def test_compare_overlays_a_three_run_sweep_and_marks_the_agents_best_run(
    viewport: str,
    dashboard: Dashboard,
    services,
    workdir: Path,
    shots: Path,  # type: ignore[no-untyped-def]
) -> None:
    sweep = services.sweeps.create(
        name=f"lr-{viewport}",
        goal="which lr fits best",
        base_command=train_command(80, 0.005, "{lr}"),
        parameters={"lr": [0.03, 0.3, 1.6]},
        workdir=str(workdir),
    )
    ids = [r.id for r in sweep.runs]
    wait_for(
        lambda: all(services.runs.load(i).status == "finished" for i in ids), timeout=90, what="the sweep"
    )
    best = services.sweeps.get(sweep.id, metric="loss", direction="min").best  # what the agent reads
    assert best is not None
    with chromium(VIEWPORTS[viewport]) as driver:
        login(driver, dashboard)
        driver.get(f"{dashboard.base}/compare?sweep={sweep.id}")
        chart = wait_for(lambda: (d := drawn(driver, "loss")) and d["lines"] == 3 and d, what="3 curves")
        assert chart["lastStep"] == 80
        best_rows = driver.find_elements("css selector", "table.compare tr.best")
        assert [r.get_attribute("data-run") for r in best_rows] == [best.run_id]
        assert {
            r.get_attribute("data-run")
            for r in driver.find_elements("css selector", "table.compare tr[data-run]")
        } == set(ids)
        is_log = "return RMCP.Chart.all[0].opts.log"
        assert driver.execute_script(is_log)  # curves decades apart (one diverged): a log axis at first
        click(driver, "#log-scale")
        wait_for(lambda: driver.execute_script(is_log) is False, what="the linear axis")
        click(driver, "#log-scale")
        wait_for(lambda: driver.execute_script(is_log) is True, what="the log axis again")
        driver.save_screenshot(str(shots / f"compare-{viewport}.png"))
        assert js_errors(driver) == []


@pytest.mark.parametrize("viewport", ["laptop", "phone"])
def test_stop_run_button_on_an_alert_stops_the_run(
    viewport: str,
    dashboard: Dashboard,
    services,
    workdir: Path,
    shots: Path,  # type: ignore[no-untyped-def]
) -> None:
    script = workdir / "diverge.py"
    script.write_text(NAN_THEN_WAIT)
    run = services.runs.create(
        name=f"nan-{viewport}", command=f"{shlex.quote(sys.executable)} diverge.py", workdir=str(workdir)
    )
    alert = wait_for(
        lambda: next(iter(services.alerts.list(run_id=run.id).alerts), None), timeout=60, what="the NaN alert"
    )
    assert "Stop run" in alert.choices
    with chromium(VIEWPORTS[viewport]) as driver:
        login(driver, dashboard)
        driver.get(f"{dashboard.base}/alerts")
        card = wait_for(
            lambda: driver.find_elements("css selector", f'.alert[data-alert-id="{alert.id}"]'),
            what="alert card",
        )[0]
        driver.save_screenshot(str(shots / f"alerts-{viewport}.png"))
        driver.get(f"{dashboard.base}/runs/{run.id}")
        stop = f'button[data-alert="{alert.id}"][data-choice="Stop run"]'
        wait_for(lambda: driver.find_elements("css selector", stop), what="the Stop run button")
        assert card is not None
        click(driver, stop)
        wait_for(lambda: services.runs.get(run.id).status == "stopped", timeout=60, what="run stopped")
        assert services.alerts.load(alert.id).resolution == "Stop run"
        badge = "return document.querySelector('[data-fragment=head] .badge').textContent"
        wait_for(lambda: driver.execute_script(badge) == "stopped", timeout=30, what="the page to show it")
        assert js_errors(driver) == []


def test_plans_approve_and_memory_toggle_from_the_browser(
    dashboard: Dashboard,
    services,
    shots: Path,  # type: ignore[no-untyped-def]
) -> None:
    plan = services.plans.save(title="lr study", goal="find a good lr", raw_markdown=plan_markdown())
    rule = services.memory.add(title="smoke first", content="run 20 steps before a sweep", tags=["habit"])
    with chromium(PHONE) as driver:
        login(driver, dashboard)
        driver.get(f"{dashboard.base}/plans/{plan.id}")
        driver.save_screenshot(str(shots / "plan-phone.png"))
        click(driver, 'button[data-status="approved"]')
        wait_for(lambda: services.plans.get(plan.id).status == "approved", what="plan approved")
        driver.get(f"{dashboard.base}/memory")
        click(driver, f'button[data-memory="{rule.id}"]')
        wait_for(lambda: not services.memory.load(rule.id).active, what="rule turned off")
        wait_for(lambda: "Turn on" in text_of(driver, f'[data-memory-id="{rule.id}"]'))
        driver.save_screenshot(str(shots / "memory-phone.png"))
        assert js_errors(driver) == []
