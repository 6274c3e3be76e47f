"""``python -m sidecar --state-dir D --run-id R``: watch one run until it ends.

Started detached by the server right after a run is submitted (and restarted by the
server's reconcile if it dies); safe to start by hand — a second sidecar for a run that
already has a live one exits at once. Logs go to the run's sidecar.log.
"""

from __future__ import annotations

import argparse
import logging
import signal
import sys
from collections.abc import Sequence


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="sidecar", description="Monitor one research-mcp run.")
    parser.add_argument("--state-dir", default=None, help="the state dir (default: $RESEARCH_MCP_HOME)")
    parser.add_argument("--run-id", required=True, help="the run to watch")
    return parser


def _stop(signum: int, _frame: object) -> None:
    raise SystemExit(128 + signum)


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    from mcp_server.core.errors import ResearchError
    from mcp_server.core.ids import validate_id
    from mcp_server.core.monitoring.monitor_settings import MonitorSettings
    from mcp_server.core.paths import StateDir
    from mcp_server.core.settings import Settings

    try:
        validate_id(args.run_id, "run", "--run-id")
        state = StateDir.open(args.state_dir)
        run_dir = state.run_dir(args.run_id)
        if not run_dir.is_dir():
            raise ResearchError(f"no run directory {run_dir}; is {args.run_id} a run of {state.root}?")
        settings = MonitorSettings.from_env()
        launch_grace_s = Settings.from_env().launch_grace_s
    except ResearchError as err:
        print(f"sidecar: {err}", file=sys.stderr)
        return 2
    handler = logging.FileHandler(run_dir / "sidecar.log", encoding="utf-8")
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(message)s"))
    root = logging.getLogger()
    root.addHandler(handler)
    root.setLevel(logging.INFO)
    for noisy in ("LiteLLM", "litellm", "httpx", "httpcore", "openai"):
        logging.getLogger(noisy).setLevel(logging.ERROR)
    signal.signal(signal.SIGTERM, _stop)

    from mcp_server.core.workflow.notifications.watch import NotifyWatch
    from sidecar.monitor import Monitor

    monitor = Monitor(state, args.run_id, settings, launch_grace_s)
    watch = NotifyWatch(state.root).start()  # starts a sender process when there is news to send
    try:
        monitor.run_forever()
    finally:
        watch.stop()  # one last look: the ending just recorded gets a sender before this exits
        monitor.db.close()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
