"""The ``research-mcp`` command: serve MCP, and let humans look at runs.

Imports stay inside the subcommands so ``serve`` pays only for what it uses.
"""

from __future__ import annotations

import argparse
import os
import signal
import sys
from collections.abc import Sequence

from mcp_server import __version__


def _state_dir_arg(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--state-dir",
        default=None,
        help="where the store and run files live (default: $RESEARCH_MCP_HOME, else ./.research-mcp)",
    )


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="research-mcp", description="MCP server for ML experiments.")
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    sub = parser.add_subparsers(
        dest="command", metavar="COMMAND", help="what to do (COMMAND --help for more)"
    )

    serve = sub.add_parser("serve", help="run the MCP server (stdio, or HTTP/SSE with a bearer token)")
    _state_dir_arg(serve)
    serve.add_argument(
        "--transport",
        choices=["stdio", "http", "sse"],
        default="stdio",
        help="stdio for an agent that starts the server (default); http (/mcp) or sse (/sse) for a network",
    )
    serve.add_argument("--host", default="127.0.0.1", help="bind address for http/sse (default 127.0.0.1)")
    serve.add_argument("--port", type=int, default=8765, help="port for http/sse (default 8765)")
    serve.add_argument(
        "--allow-remote", action="store_true", help="permit a non-loopback --host (needs --allowed-host)"
    )
    serve.add_argument(
        "--allowed-host",
        action="append",
        default=[],
        metavar="NAME[:PORT]",
        help="Host header value clients use to reach a remote bind (repeatable)",
    )
    serve.add_argument(
        "--max-body",
        type=int,
        default=1024 * 1024,
        help="largest accepted request body in bytes (default 1 MiB)",
    )

    ui = sub.add_parser("ui", help="serve the live dashboard and print its login link")
    _state_dir_arg(ui)
    ui.add_argument("--host", default="127.0.0.1", help="bind address (default 127.0.0.1)")
    ui.add_argument("--port", type=int, default=8766, help="port (default 8766)")
    ui.add_argument(
        "--allow-remote", action="store_true", help="permit a non-loopback --host (needs --allowed-host)"
    )
    ui.add_argument(
        "--allowed-host",
        action="append",
        default=[],
        metavar="NAME[:PORT]",
        help="Host header value browsers use to reach a remote bind (repeatable)",
    )

    status = sub.add_parser("status", help="print a table of runs")
    _state_dir_arg(status)
    status.add_argument(
        "--limit", type=int, default=30, help="show at most this many runs, newest first (30)"
    )
    status.add_argument(
        "--status",
        action="append",
        metavar="STATUS",
        help="only runs in this status: ready, queued, launching, running, finished, failed, stopped or lost "
        "(repeatable)",
    )

    logs = sub.add_parser("logs", help="print a run's output")
    _state_dir_arg(logs)
    logs.add_argument("run_id", help="the run's id, as `research-mcp status` shows it")
    logs.add_argument("-n", "--lines", type=int, default=100, help="how many lines from the end (100)")
    logs.add_argument(
        "-f",
        "--follow",
        action="store_true",
        help="keep printing new output until the run ends; exit 0 if it finished, 1 otherwise",
    )
    logs.add_argument("--sidecar", action="store_true", help="show the sidecar's log instead")

    sidecar = sub.add_parser("sidecar", help="watch one run in the foreground (normally started for you)")
    _state_dir_arg(sidecar)
    sidecar.add_argument("run_id", help="the run to watch")

    doctor = sub.add_parser(
        "doctor",
        help="check the state dir (store, run dirs, sidecars, leases, permissions, disk); --repair fixes it",
    )
    _state_dir_arg(doctor)
    doctor.add_argument(
        "--repair",
        action="store_true",
        help="move a bad store aside and rebuild it from the run dirs, finish interrupted creates, "
        "reclaim stale leases, tighten permissions (never deletes)",
    )

    demo = sub.add_parser(
        "demo", help="a 3-run learning-rate sweep of a bundled CPU script: table, alert, dashboard link"
    )
    _state_dir_arg(demo)
    demo.add_argument("--steps", type=int, default=200, help="training steps each demo run takes (200)")
    demo.add_argument(
        "--timeout", type=float, default=60.0, help="seconds to wait for the sweep to finish (60)"
    )

    from mcp_server import cli_notify, cli_report

    cli_report.add_parser(sub, _state_dir_arg)
    cli_notify.add_parser(sub, _state_dir_arg)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help()
        return 0
    try:
        return _dispatch(args)
    except KeyboardInterrupt:  # Ctrl-C while following a log or waiting for the demo: no traceback
        print(file=sys.stderr)
        return 130


def _dispatch(args: argparse.Namespace) -> int:
    if args.command == "serve":
        return cmd_serve(args)
    if args.command == "sidecar":
        from sidecar.__main__ import main as sidecar_main

        state = ["--state-dir", args.state_dir] if args.state_dir else []
        return sidecar_main([*state, "--run-id", args.run_id])
    from mcp_server.core.errors import ResearchError

    try:
        if args.command == "status":
            return cmd_status(args)
        if args.command == "logs":
            return cmd_logs(args)
        if args.command == "demo":
            return cmd_demo(args)
        if args.command == "ui":
            return cmd_ui(args)
        if args.command == "report":
            from mcp_server.cli_report import run as run_report

            return run_report(args)
        if args.command == "notify":
            from mcp_server.cli_notify import run as run_notify

            return run_notify(args)
        if args.command == "doctor":
            return cmd_doctor(args)
    except ResearchError as err:
        print(f"research-mcp: {err}", file=sys.stderr)
        return 2
    raise AssertionError(args.command)


def _exit_on_interrupt(signum: int, _frame: object) -> None:
    """Ctrl-C ends a server started by hand at once, and quietly.

    Cancelling the server's tasks is not enough: the stdio reader is a thread blocked in
    read(), so the process would wait for the next line of input (and a second Ctrl-C would
    print a traceback). Nothing is lost by leaving at once: jobs outlive the server, the store
    is transactional, and the next server settles whatever happened meanwhile."""
    print("\nresearch-mcp: stopped; runs keep going (`research-mcp status` shows them)", file=sys.stderr)
    os._exit(128 + signum)


def cmd_serve(args: argparse.Namespace) -> int:
    if args.transport == "stdio":
        import anyio

        from mcp_server.server import create_server
        from mcp_server.stdio_transport import run_stdio

        # Installed before the event loop starts, so asyncio keeps it instead of its own.
        signal.signal(signal.SIGINT, _exit_on_interrupt)
        anyio.run(run_stdio, create_server(args.state_dir))
        return 0
    from mcp_server.core.errors import ResearchError
    from mcp_server.transports import serve_network

    try:
        serve_network(
            transport=args.transport,
            state_dir=args.state_dir,
            host=args.host,
            port=args.port,
            allow_remote=args.allow_remote,
            allowed_hosts=args.allowed_host,
            max_body=args.max_body,
        )
    except ResearchError as err:
        print(f"research-mcp: {err}", file=sys.stderr)
        return 2
    return 0


def cmd_ui(args: argparse.Namespace) -> int:
    from mcp_server.ui.serve import serve_ui

    serve_ui(
        state_dir=args.state_dir,
        host=args.host,
        port=args.port,
        allow_remote=args.allow_remote,
        allowed_hosts=args.allowed_host,
    )
    return 0


def _services(args: argparse.Namespace):  # type: ignore[no-untyped-def]
    from mcp_server.core.services import Services

    return Services(args.state_dir)


def _existing_services(args: argparse.Namespace):  # type: ignore[no-untyped-def]
    """The services of a state dir that exists: commands that only look never create one (a
    mistyped --state-dir would otherwise leave an empty store behind and report 'no runs')."""
    from mcp_server.core.errors import NotFound
    from mcp_server.core.paths import resolve_state_dir

    root = resolve_state_dir(args.state_dir)
    if not (root / "research.db").is_file():
        raise NotFound(
            f"no research-mcp state dir at {root}: nothing has run from here. Pass --state-dir (or set "
            "RESEARCH_MCP_HOME) to the dir the server uses, or start a run (`research-mcp demo`)."
        )
    return _services(args)


def shorten(text: str, width: int = 72) -> str:
    """``text`` cut at a word boundary, so an id or a path in it is shown whole or not at all."""
    if len(text) <= width:
        return text
    cut = text.rfind(" ", 0, width)
    return (text[:cut] if cut > 0 else text) + " …"


def format_table(rows: Sequence[object]) -> str:
    headers = ("ID", "NAME", "STATUS", "EXIT", "STARTED", "DURATION", "REASON")
    lines = []
    for r in rows:
        duration = f"{r.duration_s:.1f}s" if r.duration_s is not None else "-"  # type: ignore[attr-defined]
        lines.append(
            (
                r.id,  # type: ignore[attr-defined]
                r.name,  # type: ignore[attr-defined]
                r.status,  # type: ignore[attr-defined]
                "-" if r.exit_code is None else str(r.exit_code),  # type: ignore[attr-defined]
                (r.started_at or "-").replace("T", " ").rstrip("Z"),  # type: ignore[attr-defined]
                duration,
                shorten(r.status_reason),  # type: ignore[attr-defined]
            )
        )
    widths = [
        max(len(h), *(len(row[i]) for row in lines)) if lines else len(h) for i, h in enumerate(headers)
    ]
    out = ["  ".join(h.ljust(w) for h, w in zip(headers, widths, strict=True))]
    out += ["  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)) for row in lines]
    return "\n".join(line.rstrip() for line in out)


def cmd_status(args: argparse.Namespace) -> int:
    sv = _existing_services(args)
    page = sv.runs.list(status=args.status, limit=args.limit)
    print(f"state dir: {sv.state.root}   runs: {page.total}")
    if page.runs:
        print(format_table(page.runs))
    elif args.status:
        everything = sv.runs.list(limit=1).total
        print(
            f"no run is {' or '.join(args.status)} ({everything} run(s) in all; leave out --status for them)"
        )
    else:
        print("no runs yet — try `research-mcp demo`")
    return 0


def cmd_logs(args: argparse.Namespace) -> int:
    sv = _existing_services(args)
    source = "sidecar" if args.sidecar else "output"
    chunk = sv.runs.logs(args.run_id, lines=args.lines, source=source)
    sys.stdout.write(chunk.text)
    if not args.follow:
        return 0
    sys.stdout.flush()
    from mcp_server.core.execution.log_follow import follow

    return follow(sv, args.run_id, source, chunk.end_offset, sys.stdout, sys.stderr)


def cmd_doctor(args: argparse.Namespace) -> int:
    from mcp_server.core.paths import StateDir
    from mcp_server.core.storage.doctor import check, repair

    state = StateDir.open(args.state_dir)
    print(f"state dir: {state.root}")
    if args.repair:
        for action in repair(state) or ["nothing to repair"]:
            print(f"repair: {action}")
    findings = check(state)
    for finding in findings:
        print(finding.line())
    return 0 if all(f.ok for f in findings) else 1


def cmd_demo(args: argparse.Namespace) -> int:
    from mcp_server.demo.sweep import run_demo
    from mcp_server.transports import load_or_create_token
    from mcp_server.ui.serve import DEFAULT_PORT, login_url

    sv = _services(args)
    token = load_or_create_token(sv.state.root)
    url = login_url("127.0.0.1", DEFAULT_PORT, token.value)
    return run_demo(sv, steps=args.steps, timeout_s=args.timeout, workdir=os.getcwd(), dashboard_url=url)
