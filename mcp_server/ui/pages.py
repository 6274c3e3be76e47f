"""One method per dashboard page, data endpoint and action; each a thin call into the core.

Actions go through the very service methods the MCP tools call (``alerts.resolve`` is
``resolve_alert``; ``plans.update`` is ``update_plan``; ``memory.update`` is
``update_memory``), so a button in the browser does exactly what the agent's tool does.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from starlette.requests import Request

from mcp_server.core.errors import InvalidInput
from mcp_server.core.monitoring.metrics import MAX_POINTS, MAX_RUNS
from mcp_server.core.workflow.overview import run_names
from mcp_server.ui.render import render
from mcp_server.ui.views import STATUSES, compare_view, runs_view

if TYPE_CHECKING:
    from mcp_server.core.services import Services
    from mcp_server.ui.app import Dashboard

LOG_LINES = 200
LOG_WINDOW = 256 * 1024
POINTS_PER_SERIES = 2000


def _ids(raw: str | None, what: str, limit: int) -> list[str]:
    ids = [x for x in (raw or "").split(",") if x]
    if len(ids) > limit:
        raise InvalidInput(f"give at most {limit} {what}.")
    return ids


class Pages:
    def __init__(self, ui: Dashboard) -> None:
        self.ui = ui

    @property
    def sv(self) -> Services:
        return self.ui.sv

    def _page(self, request: Request, sid: str, template: str, **values: Any) -> str:
        fragment = request.query_params.get("fragment")
        open_alerts = self.sv.alerts.list(status="open", limit=1).total
        ctx = self.ui.context(sid, open_alerts=open_alerts, path=request.url.path, **values)
        return render(template, ctx, fragment)

    # ---- pages ---------------------------------------------------------------------------

    def runs(self, request: Request, sid: str) -> str:
        q = request.query_params
        view = runs_view(
            self.sv,
            metric=q.get("metric"),
            sort=q.get("sort", "newest"),
            status=q.get("status", ""),
            q=q.get("q", "")[:100],
            sweep=q.get("sweep") or None,
        )
        return self._page(request, sid, "runs.html", view=view, statuses=STATUSES, nav="runs")

    def run(self, request: Request, sid: str) -> str:
        run_id = request.path_params["run_id"]
        detail = self.sv.runs.get(run_id)
        logs = self.sv.runs.logs(run_id, lines=LOG_LINES)
        from mcp_server.core.workflow.lineage import lineage

        family = lineage(self.sv.runs, run_id)
        return self._page(
            request, sid, "run.html", run=detail, logs=logs, family=family, nav="runs", page="run"
        )

    def compare(self, request: Request, sid: str) -> str:
        q = request.query_params
        view = compare_view(
            self.sv,
            sweep=q.get("sweep") or None,
            runs=_ids(q.get("runs"), "runs", MAX_RUNS),
            key=q.get("key"),
        )
        return self._page(request, sid, "compare.html", view=view, nav="compare")

    def alerts(self, request: Request, sid: str) -> str:
        status = request.query_params.get("status", "open")
        page = self.sv.alerts.list(status=status if status in ("open", "all") else "open", limit=100)
        names = run_names(self.sv.store, [a.run_id for a in page.alerts if a.run_id])
        return self._page(request, sid, "alerts.html", page=page, names=names, status=status, nav="alerts")

    def plans(self, request: Request, sid: str) -> str:
        return self._page(request, sid, "plans.html", plans=self.sv.plans.list(limit=200), nav="plans")

    def plan(self, request: Request, sid: str) -> str:
        plan = self.sv.plans.get(request.path_params["plan_id"])
        return self._page(request, sid, "plan.html", plan=plan, nav="plans")

    def memory(self, request: Request, sid: str) -> str:
        return self._page(request, sid, "memory.html", memories=self.sv.memory.list(limit=500), nav="memory")

    # ---- data ----------------------------------------------------------------------------

    def metrics_data(self, request: Request) -> dict[str, Any]:
        """``get_metrics``'s own answer (the charts' one data source, here and in MCP Apps)."""
        q = request.query_params
        run_ids = _ids(q.get("run_ids"), "run ids", MAX_RUNS)
        keys = _ids(q.get("keys"), "keys", 50) or None
        try:
            per_series = int(q.get("points", POINTS_PER_SERIES))
        except ValueError:
            raise InvalidInput("points must be a whole number.") from None
        series = len(run_ids) * (len(keys) if keys else 8)
        budget = max(10, min(MAX_POINTS, per_series * max(1, series)))
        return self.sv.metrics.get(run_ids, keys, budget).model_dump(mode="json")

    def logs_data(self, request: Request) -> dict[str, Any]:
        run_id = request.path_params["run_id"]
        offset = request.query_params.get("offset")
        if offset is None:
            return self.sv.runs.logs(run_id, lines=LOG_LINES).model_dump()
        try:
            start = int(offset)
        except ValueError:
            raise InvalidInput("offset must be a whole number of bytes.") from None
        return self.sv.runs.logs(run_id, offset=start, length=LOG_WINDOW, max_bytes=LOG_WINDOW).model_dump()

    # ---- actions -------------------------------------------------------------------------

    def resolve_alert(self, request: Request, body: dict[str, Any]) -> dict[str, Any]:
        choice = body.get("choice")
        if not isinstance(choice, str):
            raise InvalidInput('give the alert\'s choice, e.g. {"choice": "Stop run"}.')
        return self.sv.alerts.resolve(request.path_params["alert_id"], choice).model_dump(mode="json")

    def update_plan(self, request: Request, body: dict[str, Any]) -> dict[str, Any]:
        status = body.get("status")
        if not isinstance(status, str):
            raise InvalidInput('give the plan\'s new status, e.g. {"status": "approved"}.')
        return self.sv.plans.update(request.path_params["plan_id"], status=status).model_dump(mode="json")

    def update_memory(self, request: Request, body: dict[str, Any]) -> dict[str, Any]:
        active = body.get("active")
        if not isinstance(active, bool):
            raise InvalidInput('give {"active": true} or {"active": false}.')
        return self.sv.memory.update(request.path_params["memory_id"], active=active).model_dump(mode="json")
