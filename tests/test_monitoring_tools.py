"""get_metrics, list_alerts and resolve_alert through the real MCP client over stdio."""

from __future__ import annotations

import textwrap
from pathlib import Path

import anyio
import pytest

from tests.helpers import PYTHON
from tests.mcp_client import MODES, call, call_error, client

pytestmark = pytest.mark.anyio

SCRIPT = """
import json, os, time
with open(os.environ["RESEARCH_METRICS_FILE"], "a") as f:
    for step in range(20):
        f.write(json.dumps({"step": step, "loss": 1.0 / (step + 1)}) + "\\n")
    f.write(json.dumps({"step": 20, "loss": float("nan")}) + "\\n")
print("waiting for someone to stop me", flush=True)
time.sleep(300)
"""


async def wait_alerts(c, run_id: str, timeout: float = 20) -> list[dict]:  # type: ignore[no-untyped-def]
    with anyio.fail_after(timeout):
        while True:
            page = await call(c, "list_alerts", run_id=run_id)
            if page["alerts"]:
                return page["alerts"]
            await anyio.sleep(0.1)


@pytest.mark.parametrize("mode", MODES)
async def test_alert_to_stop_over_stdio(state_dir: Path, workdir: Path, mode: str) -> None:
    (workdir / "train.py").write_text(textwrap.dedent(SCRIPT))
    async with client(state_dir, mode) as c:
        tools = {t.name: t for t in (await c.list_tools()).tools}
        for name in ("get_metrics", "list_alerts", "resolve_alert"):
            assert tools[name].annotations is not None
        assert tools["resolve_alert"].annotations.destructive_hint in (None, True)  # type: ignore[union-attr]
        assert tools["get_metrics"].annotations.read_only_hint is True  # type: ignore[union-attr]

        run = await call(c, "create_run", name="nan", command=f"{PYTHON} train.py", workdir=str(workdir))
        (alert,) = await wait_alerts(c, run["id"])
        assert alert["kind"] == "nonfinite" and alert["severity"] == "critical" and alert["status"] == "open"

        answer = await call(c, "get_metrics", run_ids=[run["id"]], keys=["loss", "val_loss"], max_points=50)
        (metrics,) = answer["runs"]
        (series,) = metrics["series"]
        assert series["key"] == "loss" and series["count"] == 21 and series["nonfinite"] == 1
        assert series["points"][0] == [0, 1.0] and series["points"][-1] == [20, None]
        assert series["best"] == pytest.approx(1 / 20) and series["best_step"] == 19
        (missing,) = metrics["missing"]
        assert missing["key"] == "val_loss" and missing["similar"] == ["loss"]

        detail = await call(c, "get_run", run_id=run["id"])
        assert [a["id"] for a in detail["open_alerts"]] == [alert["id"]]
        assert detail["metrics"][0]["key"] == "loss" and detail["monitor"]["alive"] is True

        bad = await call_error(c, "resolve_alert", alert_id=alert["id"], choice="Restart")
        assert "'Restart' is not one of this alert's choices: 'Ignore', 'Stop run'" in bad
        assert "no alert with id" in await call_error(
            c, "resolve_alert", alert_id="alert-20260101-000000-00000000", choice="Ignore"
        )
        assert (await call(c, "list_alerts", run_id=run["id"]))["total"] == 1  # the refusals changed nothing

        resolved = await call(c, "resolve_alert", alert_id=alert["id"], choice="Stop run")
        assert resolved["action"] == "stopped" and resolved["run"]["status"] == "stopped"
        assert resolved["alert"]["status"] == "resolved" and resolved["alert"]["resolution"] == "Stop run"
        assert (await call(c, "list_alerts", run_id=run["id"]))["alerts"] == []
        done = await call(c, "list_alerts", run_id=run["id"], status="resolved", severity=["critical"])
        assert [a["id"] for a in done["alerts"]] == [alert["id"]]
        again = await call_error(c, "resolve_alert", alert_id=alert["id"], choice="Ignore")
        assert "already resolved" in again

        too_few = await call_error(c, "get_metrics", run_ids=[run["id"]], max_points=3)
        assert "max_points" in too_few and "4" in too_few
        unknown = await call_error(c, "get_metrics", run_ids=["run-20260101-000000-00000000"])
        assert "list_runs" in unknown
