"""The ``research-mcp`` command: serve MCP, and let humans look at runs.

Imports stay inside the subcommands so ``serve`` pays only for what it uses.
"""

from __future__ import annotations

import argparse
import os
import shlex
import sys
import time
from collections.abc import Sequence


def _state_dir_arg(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--state-dir",
        default=None,
        help="where the store and run files live (default: $RESEARCH_MCP_HOME, else ./.research-mcp)",
    )


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="research-mcp", description="MCP server for ML experiments.")
    sub = parser.add_subparsers(dest="command", required=True)

    serve = sub.add_parser("serve", help="run the MCP server (stdio, or HTTP/SSE with a bearer token)")
    _state_dir_arg(serve)
    serve.add_argument("--transport", choices=["stdio", "http", "sse"], default="stdio")
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

    status = sub.add_parser("status", help="print a table of runs")
    _state_dir_arg(status)
    status.add_argument("--limit", type=int, default=30)
    status.add_argument("--status", action="append", help="only runs in this status (repeatable)")

    logs = sub.add_parser("logs", help="print a run's output")
    _state_dir_arg(logs)
    logs.add_argument("run_id")
    logs.add_argument("-n", "--lines", type=int, default=100)
    logs.add_argument(
        "-f", "--follow", action="store_true", help="keep printing new output until the run ends"
    )
    logs.add_argument("--sidecar", action="store_true", help="show the sidecar's log instead")

    sidecar = sub.add_parser("sidecar", help="watch one run in the foreground (normally started for you)")
    _state_dir_arg(sidecar)
    sidecar.add_argument("run_id")

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

    demo = sub.add_parser("demo", help="launch the bundled CPU training script as a run and show the result")
    _state_dir_arg(demo)
    demo.add_argument("--steps", type=int, default=200)
    demo.add_argument("--timeout", type=float, default=120.0)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
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
        if args.command == "doctor":
            return cmd_doctor(args)
    except ResearchError as err:
        print(f"research-mcp: {err}", file=sys.stderr)
        return 2
    raise AssertionError(args.command)


def cmd_serve(args: argparse.Namespace) -> int:
    if args.transport == "stdio":
        import anyio

        from mcp_server.server import create_server
        from mcp_server.stdio_transport import run_stdio

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


def _services(args: argparse.Namespace):  # type: ignore[no-untyped-def]
    from mcp_server.core.services import Services

    return Services(args.state_dir)


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
                r.status_reason[:60],  # type: ignore[attr-defined]
            )
        )
    widths = [
        max(len(h), *(len(row[i]) for row in lines)) if lines else len(h) for i, h in enumerate(headers)
    ]
    out = ["  ".join(h.ljust(w) for h, w in zip(headers, widths, strict=True))]
    out += ["  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)) for row in lines]
    return "\n".join(line.rstrip() for line in out)


def cmd_status(args: argparse.Namespace) -> int:
    sv = _services(args)
    page = sv.runs.list(status=args.status, limit=args.limit)
    print(f"state dir: {sv.state.root}   runs: {page.total}")
    print(format_table(page.runs) if page.runs else "no runs yet — try `research-mcp demo`")
    return 0


def cmd_logs(args: argparse.Namespace) -> int:
    sv = _services(args)
    source = "sidecar" if args.sidecar else "output"
    chunk = sv.runs.logs(args.run_id, lines=args.lines, source=source)
    sys.stdout.write(chunk.text)
    if not args.follow:
        return 0
    pos = chunk.end_offset
    while True:
        piece = sv.runs.logs(
            args.run_id, source=source, offset=pos, length=1024 * 1024, max_bytes=1024 * 1024
        )
        if piece.text:
            sys.stdout.write(piece.text)
            sys.stdout.flush()
            pos = piece.end_offset
            continue
        if sv.runs.get(args.run_id).status not in ("ready", "queued", "launching", "running"):
            return 0
        time.sleep(0.5)


def cmd_doctor(args: argparse.Namespace) -> int:
    from mcp_server.core.doctor import check, repair
    from mcp_server.core.paths import StateDir

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
    from mcp_server.demo import train

    sv = _services(args)
    command = f"{shlex.quote(sys.executable)} {shlex.quote(train.__file__)} --steps {int(args.steps)}"
    run = sv.runs.create(
        name="demo-linear-regression", command=command, workdir=os.getcwd(), params={"steps": args.steps}
    )
    print(f"launched {run.id} in tmux ({run.backend_ref}); waiting for it to finish...")
    done = sv.runs.wait(run.id, args.timeout)
    print()
    print(format_table(sv.runs.list(limit=10).runs))
    print()
    print(f"--- last lines of {done.id} output ---")
    print(sv.runs.logs(done.id, lines=8).text.rstrip())
    print(f"--- state dir: {sv.state.root}")
    return 0 if done.status == "finished" else 1
