"""``research-mcp notify add | list | test | remove``: where notifications go, and whether they arrive.

A URL typed on a command line stays in the shell's history and is visible to ``ps``, so
``notify add`` without a URL (or with ``-``) reads it from a hidden prompt or from stdin.
Listings show masked labels only.
"""

from __future__ import annotations

import argparse
import getpass
import socket
import sys
import time
from contextlib import closing


def add_parser(sub: argparse._SubParsersAction, state_dir_arg) -> None:  # type: ignore[type-arg,no-untyped-def]
    notify = sub.add_parser(
        "notify", help="send run endings, alerts and finished sweeps to Slack, Telegram..."
    )
    actions = notify.add_subparsers(
        dest="notify_command", required=True, metavar="ACTION", help="add, list, test or remove"
    )
    add = actions.add_parser(
        "add", help="add an apprise URL (read from a hidden prompt or stdin if not given)"
    )
    state_dir_arg(add)
    add.add_argument("url", nargs="?", default="-", help="apprise URL, or - (default) to read it from stdin")
    add.add_argument(
        "--events",
        default=None,
        help="comma-separated: run_finished, run_failed, run_lost, run_stopped, sweep_done, alert, "
        "alert>=warning|critical (default: run_finished,run_failed,run_lost,sweep_done,alert>=warning)",
    )
    listing = actions.add_parser(
        "list", help="configured targets (masked) and what was sent, waits or failed"
    )
    state_dir_arg(listing)
    test = actions.add_parser("test", help="send a test message now and say whether it arrived")
    state_dir_arg(test)
    test.add_argument("id", nargs="?", help="a target id (prefix) from `notify list`; default: every target")
    remove = actions.add_parser("remove", help="remove a target added with `notify add`")
    state_dir_arg(remove)
    remove.add_argument("id", help="the target id (prefix) from `notify list`")


def _read_url(arg: str) -> str:
    if arg != "-":
        print(
            "research-mcp: note: a URL given as an argument stays in your shell history; "
            "`research-mcp notify add` alone asks for it without echoing it.",
            file=sys.stderr,
        )
        return arg
    if sys.stdin.isatty():
        return getpass.getpass("apprise URL (not echoed): ")
    return sys.stdin.readline().strip()


def run(args: argparse.Namespace) -> int:
    from mcp_server.core.paths import StateDir
    from mcp_server.core.storage.store import Store
    from mcp_server.core.workflow.notifications import outbox
    from mcp_server.core.workflow.notifications.settings import NotifySettings
    from mcp_server.core.workflow.notifications.targets import NotifyConfig

    state = StateDir.open(args.state_dir)
    Store(state.db_path).close()  # create or migrate the store, so the outbox tables exist
    config = NotifyConfig(state.root)
    command = args.notify_command
    with closing(outbox.connect(state.db_path)) as conn:
        if command == "add":
            target = config.add(_read_url(args.url), args.events)
            outbox.ensure_targets(conn, [target], time.time())
            print(f"added {target.id}  {target.label}  events: {target.events.spec()}")
            print("notifications start with the next event; check the URL with `research-mcp notify test`")
            return 0
        if command == "remove":
            target = config.remove(args.id)
            outbox.forget(conn, target.id)
            print(f"removed {target.id}  {target.label}")
            return 0
        if command == "list":
            return _list(config, outbox.stats(conn, NotifySettings.from_env().lease_s))
        if command == "test":
            return _test(config, args.id, state.root)
    raise AssertionError(command)


def _list(config, stats) -> int:  # type: ignore[no-untyped-def]
    targets = config.targets()
    if not targets:
        print("no notification targets; add one with `research-mcp notify add` or set RESEARCH_MCP_NOTIFY")
        return 0
    rows = [("ID", "TARGET", "FROM", "EVENTS", "SENT", "WAITING", "FAILED", "SENDER", "LAST ERROR")]
    for t in targets:
        s = stats.get(t.id)
        rows.append(
            (
                t.id,
                t.label,
                t.source,
                t.events.spec(),
                str(s.sent if s else 0),
                str(s.unsent if s else 0),
                str(s.failed if s else 0),
                "running" if s and s.sender_alive else "-",
                (s.last_error if s else "")[:80],
            )
        )
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    for r in rows:
        print("  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip())
    return 0


def _test(config, ident: str | None, root) -> int:  # type: ignore[no-untyped-def]
    from mcp_server.core.workflow.notifications.deliver import send
    from mcp_server.core.workflow.notifications.settings import NotifySettings

    targets = [config.find(ident)] if ident else config.targets()
    if not targets:
        print("no notification targets to test; add one with `research-mcp notify add`")
        return 1
    timeout = NotifySettings.from_env().timeout_s
    failed = 0
    for t in targets:
        error = send(
            t.url,
            "research-mcp: test notification",
            f"notifications from {socket.gethostname()} ({root}) reach you here.",
            "info",
            timeout,
        )
        print(f"{t.id}  {t.label}  " + ("ok" if error is None else f"FAILED: {error}"))
        failed += error is not None
    return 1 if failed else 0
