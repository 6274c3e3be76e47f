"""Experiment plans in the plan-mode format, and their approval lifecycle.

A plan is Markdown with one heading per required section (any heading level, case and
numbering ignored, "and" equal to "&"), so a human can review it before compute is spent.
Its status moves draft → approved → executing → completed, and any status but archived
can be archived; an approved plan can go back to draft for changes. The content of a plan
is frozen once it leaves draft, so what was approved is what runs.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence

from sqlmodel import col, select

from mcp_server.core.errors import Conflict, InvalidInput, NotFound
from mcp_server.core.ids import new_id, validate_id
from mcp_server.core.run_views import iso
from mcp_server.core.storage import sqlpage
from mcp_server.core.storage.models import Plan, Run, Sweep
from mcp_server.core.storage.store import Store, now
from mcp_server.core.workflow.workflow_views import PlanDetail, PlanList, PlanRow

REQUIRED_SECTIONS: tuple[str, ...] = (
    "Objective",
    "Compute Setup",
    "Approach",
    "Metrics",
    "Success Criteria",
    "Risks & Mitigations",
    "Estimated Effort",
)
OPTIONAL_SECTIONS: tuple[str, ...] = ("Parameters to Sweep",)
PLAN_STATUSES: tuple[str, ...] = ("draft", "approved", "executing", "completed", "archived")
NEXT_STATUSES: dict[str, tuple[str, ...]] = {
    "draft": ("approved", "archived"),
    "approved": ("executing", "draft", "archived"),
    "executing": ("completed", "archived"),
    "completed": ("archived",),
    "archived": (),
}
MAX_TITLE_CHARS = 200
MAX_GOAL_CHARS = 4000
MAX_MARKDOWN_CHARS = 200_000
MAX_LINKS = 500

_HEADING = re.compile(r"^ {0,3}(#{1,6})\s+(.*?)\s*#*\s*$")
_FENCE = re.compile(r"^ {0,3}(```|~~~)")
_NUMBERING = re.compile(r"^(\d+[.)]|[ivx]+[.)])\s*")


def _normalize(title: str) -> str:
    text = _NUMBERING.sub("", title.strip().lower()).rstrip(":").strip()
    text = re.sub(r"\s+and\s+", " & ", text)
    text = re.sub(r"\s*&\s*", " & ", text)
    return re.sub(r"\s+", " ", text).strip("*_ ")


def sections(markdown: str) -> dict[str, str]:
    """Heading (normalized) → the text under it, up to the next heading of the same or higher level."""
    found: dict[str, str] = {}
    open_: list[tuple[str, int, list[str]]] = []  # (key, level, lines) of headings still collecting
    in_fence = False
    for line in markdown.splitlines():
        if _FENCE.match(line):
            in_fence = not in_fence
        match = None if in_fence else _HEADING.match(line)
        if match:
            level = len(match.group(1))
            while open_ and open_[-1][1] >= level:
                key, _, body = open_.pop()
                found.setdefault(key, "\n".join(body).strip())
            for _, _, body in open_:
                body.append(line)
            open_.append((_normalize(match.group(2)), level, []))
            continue
        for _, _, body in open_:
            body.append(line)
    while open_:
        key, _, body = open_.pop()
        found.setdefault(key, "\n".join(body).strip())
    return found


def check_structure(markdown: str) -> None:
    """Refuse a plan that lacks a required section or leaves one empty, naming each."""
    found = sections(markdown)
    missing = [s for s in REQUIRED_SECTIONS if _normalize(s) not in found]
    if missing:
        raise InvalidInput(
            f"the plan is missing required section(s): {', '.join(missing)}. A plan needs one heading "
            f"(e.g. '## Objective') for each of: {', '.join(REQUIRED_SECTIONS)}; "
            f"optional: {', '.join(OPTIONAL_SECTIONS)}."
        )
    empty = [s for s in REQUIRED_SECTIONS if not found[_normalize(s)]]
    if empty:
        raise InvalidInput(
            f"the plan's section(s) {', '.join(empty)} have a heading but no content; fill them in."
        )


def _check_text(value: str, what: str, limit: int) -> str:
    if not isinstance(value, str) or not value.strip() or len(value) > limit or "\x00" in value:
        raise InvalidInput(f"{what} must be 1-{limit} characters of text.")
    return value.strip()


def _detail(plan: Plan) -> PlanDetail:
    return PlanDetail(
        **_row(plan).model_dump(),
        next_statuses=list(NEXT_STATUSES[plan.status]),
        raw_markdown=plan.raw_markdown,
        session_id=plan.session_id,
        created_at=iso(plan.created_at) or "",
    )


def _row(plan: Plan) -> PlanRow:
    return PlanRow(
        id=plan.id,
        title=plan.title,
        goal=plan.goal,
        status=plan.status,  # type: ignore[arg-type]
        sweep_ids=plan.sweep_ids,
        run_ids=plan.run_ids,
        updated_at=iso(plan.updated_at) or "",
    )


# One PlanRow as JSON, written by SQLite (list is read in plain SQL: core.storage.sqlpage).
ROW_JSON = (
    "json_object('id', id, 'title', title, 'goal', goal, 'status', status, 'sweep_ids', json(sweep_ids), "
    f"'run_ids', json(run_ids), 'updated_at', {sqlpage.ISO.format('updated_at')})"
)


class PlanService:
    def __init__(self, store: Store) -> None:
        self.store = store

    def load(self, plan_id: str) -> Plan:
        validate_id(plan_id, "plan", "plan_id")
        with self.store.read() as s:
            plan = s.exec(select(Plan).where(Plan.id == plan_id)).first()
        if plan is None:
            raise NotFound(f"no plan with id {plan_id!r}; use list_plans to see saved plans.")
        return plan

    def save(self, *, title: str, goal: str, raw_markdown: str, session_id: str | None = None) -> PlanDetail:
        title = _check_text(title, "title", MAX_TITLE_CHARS)
        goal = _check_text(goal, "goal", MAX_GOAL_CHARS)
        _check_text(raw_markdown, "raw_markdown", MAX_MARKDOWN_CHARS)
        check_structure(raw_markdown)
        if session_id is not None:
            _check_text(session_id, "session_id", 128)
        t = now()
        plan = Plan(
            id=new_id("plan"),
            title=title,
            goal=goal,
            raw_markdown=raw_markdown,
            status="draft",
            session_id=session_id,
            created_at=t,
            updated_at=t,
        )
        with self.store.write() as s:
            s.add(plan)
        return _detail(plan)

    def get(self, plan_id: str) -> PlanDetail:
        return _detail(self.load(plan_id))

    def list(self, status: list[str] | None = None, limit: int = 50, offset: int = 0) -> PlanList:
        for value in status or []:
            if value not in PLAN_STATUSES:
                raise InvalidInput(
                    f"status {value!r} is not a plan status; valid: {', '.join(PLAN_STATUSES)}."
                )
        if not 1 <= limit <= 500 or offset < 0:
            raise InvalidInput("limit must be 1-500 and offset ≥ 0.")
        clauses = [f"status IN ({', '.join('?' * len(status))})"] if status else []
        with self.store.sql.snapshot() as conn:
            return sqlpage.page(
                conn, PlanList, "plans", ROW_JSON, "plans", clauses, list(status or []), limit=limit,
                offset=offset,
            )  # fmt: skip

    def _check_links(self, sweep_ids: Iterable[str], run_ids: Iterable[str]) -> None:
        sweep_ids, run_ids = list(sweep_ids), list(run_ids)
        for sid in sweep_ids:
            validate_id(sid, "sweep", "sweep id")
        for rid in run_ids:
            validate_id(rid, "run", "run id")
        with self.store.read() as s:
            known_sweeps = set(s.exec(select(Sweep.id).where(col(Sweep.id).in_(sweep_ids))).all())
            known_runs = set(s.exec(select(Run.id).where(col(Run.id).in_(run_ids))).all())
        unknown = [i for i in sweep_ids if i not in known_sweeps] + [
            i for i in run_ids if i not in known_runs
        ]
        if unknown:
            raise NotFound(f"cannot link unknown id(s): {', '.join(unknown)}; nothing was changed.")

    def update(
        self,
        plan_id: str,
        *,
        status: str | None = None,
        title: str | None = None,
        goal: str | None = None,
        raw_markdown: str | None = None,
        link_sweep_ids: Sequence[str] | None = None,
        link_run_ids: Sequence[str] | None = None,
    ) -> PlanDetail:
        plan = self.load(plan_id)
        values: dict[str, object] = {}
        edits = {"title": title, "goal": goal, "raw_markdown": raw_markdown}
        if any(v is not None for v in edits.values()):
            if plan.status != "draft":
                raise Conflict(
                    f"plan {plan_id} is {plan.status}; its content is frozen once it leaves draft. "
                    + (
                        "Move it back with update_plan(status='draft'), edit it, and get it approved again."
                        if "draft" in NEXT_STATUSES[plan.status]
                        else "Save a new plan with save_plan instead."
                    )
                )
            if title is not None:
                values["title"] = _check_text(title, "title", MAX_TITLE_CHARS)
            if goal is not None:
                values["goal"] = _check_text(goal, "goal", MAX_GOAL_CHARS)
            if raw_markdown is not None:
                _check_text(raw_markdown, "raw_markdown", MAX_MARKDOWN_CHARS)
                check_structure(raw_markdown)
                values["raw_markdown"] = raw_markdown
        if status is not None and status != plan.status:
            if status not in PLAN_STATUSES:
                raise InvalidInput(
                    f"status {status!r} is not a plan status; valid: {', '.join(PLAN_STATUSES)}."
                )
            allowed = NEXT_STATUSES[plan.status]
            if status not in allowed:
                raise Conflict(
                    f"plan {plan_id} is {plan.status}; it cannot move to {status}. "
                    + (
                        f"Valid next statuses: {', '.join(allowed)}."
                        if allowed
                        else "Archived plans are final."
                    )
                )
            values["status"] = status
        if link_sweep_ids or link_run_ids:
            if plan.status == "archived":
                raise Conflict(f"plan {plan_id} is archived; it takes no new links.")
            self._check_links(link_sweep_ids or [], link_run_ids or [])
            sweeps = list(dict.fromkeys([*plan.sweep_ids, *(link_sweep_ids or [])]))
            runs = list(dict.fromkeys([*plan.run_ids, *(link_run_ids or [])]))
            if len(sweeps) + len(runs) > MAX_LINKS:
                raise InvalidInput(f"a plan links at most {MAX_LINKS} sweeps and runs.")
            values["sweep_ids"], values["run_ids"] = sweeps, runs
        if not values:
            return _detail(plan)
        values["updated_at"] = now()
        with self.store.write() as s:
            current = s.exec(select(Plan).where(Plan.id == plan_id)).one()
            if current.status != plan.status:
                raise Conflict(f"plan {plan_id} changed to {current.status} meanwhile; read it and retry.")
            for key, value in values.items():
                setattr(current, key, value)
            s.add(current)
        return _detail(self.load(plan_id))
