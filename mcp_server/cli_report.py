"""``research-mcp report``: the ``write_report`` tool for a person at a shell (same code path)."""

from __future__ import annotations

import argparse


def add_parser(sub: argparse._SubParsersAction, state_dir_arg) -> None:  # type: ignore[type-arg,no-untyped-def]
    report = sub.add_parser("report", help="write a Markdown report with charts for a sweep, runs or a plan")
    state_dir_arg(report)
    what = report.add_mutually_exclusive_group(required=True)
    what.add_argument("--sweep", metavar="SWEEP_ID", help="report on this sweep's runs")
    what.add_argument("--runs", metavar="RUN_ID", nargs="+", help="report on these runs")
    what.add_argument("--plan", metavar="PLAN_ID", help="report on a plan's sweeps and runs")
    report.add_argument(
        "--metric", action="append", default=None, help="metric to show (repeatable; the first ranks runs)"
    )
    report.add_argument("--direction", choices=["min", "max"], help="is the best value the min or the max")
    report.add_argument("--name", help="write reports/NAME/report.md (default: the sweep's or plan's name)")
    report.add_argument("--out", metavar="PATH", help="or this .md path inside the project")


def run(args: argparse.Namespace) -> int:
    from mcp_server.core.services import Services
    from mcp_server.core.workflow.reports.service import write_report

    services = Services(args.state_dir)
    try:
        answer = write_report(
            services,
            sweep_id=args.sweep,
            run_ids=args.runs,
            plan_id=args.plan,
            metrics=args.metric,
            direction=args.direction,
            name=args.name,
            path=args.out,
        )
    finally:
        services.close()
    print(answer.path)
    print(answer.summary)
    return 0
