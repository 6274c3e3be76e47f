"""The watch every server and sidecar runs: start a sender when there is something to send.

Once per ``poll_s`` a daemon thread reads the configured targets (environment plus the
state dir's ``notify.json``; a stat when nothing changed) and, for each target no live
sender holds, asks the store whether an event after its cursor could notify or a message
waits. If so it reserves the target's lease (compare-and-set) and starts a detached sender
process with the reservation's token. The thread reads and writes only a few tiny rows and
never sends anything itself, so neither a slow endpoint nor apprise's import cost can reach
a server's or a sidecar's monitoring loop. Stdlib only: a sidecar stays small.
"""

from __future__ import annotations

import contextlib
import logging
import os
import secrets
import sqlite3
import subprocess
import sys
import threading
import time
from pathlib import Path

from mcp_server.core.errors import ResearchError
from mcp_server.core.workflow.notifications import outbox
from mcp_server.core.workflow.notifications.settings import NotifySettings
from mcp_server.core.workflow.notifications.targets import NotifyConfig

log = logging.getLogger(__name__)

_PACKAGE_ROOT = Path(__file__).resolve().parents[3]
_PRIVATE_TO_SERVER = ("RESEARCH_MCP_TOKEN",)
SENDER_MODULE = "mcp_server.core.workflow.notifications.sender"
LOG_NAME = "notify.log"


def sender_argv(state_root: Path, token: str) -> list[str]:
    # No URL on the command line: the sender reads them from its environment and notify.json.
    return [sys.executable, "-m", SENDER_MODULE, "--state-dir", str(state_root), "--token", token]


def spawn_sender(state_root: Path, token: str) -> int:
    """Start a detached sender (its own session: it outlives the sidecar or server that starts it)."""
    env = {k: v for k, v in os.environ.items() if k not in _PRIVATE_TO_SERVER}
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(_PACKAGE_ROOT), env.get("PYTHONPATH", "")) if p)
    fd = os.open(state_root / LOG_NAME, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
    try:
        proc = subprocess.Popen(
            sender_argv(state_root, token),
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=fd,
            start_new_session=True,
            close_fds=True,
            cwd=str(state_root),
            env=env,
        )
    finally:
        os.close(fd)
    threading.Thread(target=proc.wait, name=f"reap-notify-sender-{proc.pid}", daemon=True).start()
    return proc.pid


class NotifyWatch:
    def __init__(self, state_root: Path, settings: NotifySettings | None = None) -> None:
        self.state_root = state_root
        self.db_path = state_root / "research.db"
        self._last_error = ""
        if settings is None:
            try:
                settings = NotifySettings.from_env()
            except ResearchError as err:
                log.warning("notifications: %s; using the defaults", err)
                settings = NotifySettings()
        self.settings = settings
        self.config = NotifyConfig(state_root)
        self._conn: sqlite3.Connection | None = None
        self._known: set[str] = set()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()
        self.spawned: list[int] = []

    def start(self) -> NotifyWatch:
        """First look at once (so targets exist before this process writes events), then a thread."""
        self.check()
        self._thread = threading.Thread(target=self._loop, name="research-mcp-notify-watch", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop the thread, then look once more: an ending this process just recorded gets a sender."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)
        self.check()
        with self._lock:
            if self._conn is not None:
                self._conn.close()
                self._conn = None

    def _loop(self) -> None:
        while not self._stop.wait(self.settings.poll_s):
            self.check()

    def check(self) -> None:
        """One look; never raises (a busy store or a bad config file is logged and retried)."""
        with self._lock:
            try:
                self._check()
                self._last_error = ""
            except (sqlite3.Error, OSError) as err:
                log.debug("notification watch: %s", err)  # a busy or young store: look again later
                if self._conn is not None:
                    with contextlib.suppress(sqlite3.Error):
                        self._conn.close()
                    self._conn = None
            except Exception as err:  # a bad notify.json or filter: say so once, keep looking
                if str(err) != self._last_error:
                    self._last_error = str(err)
                    log.warning("notifications are paused: %s", err)

    def _check(self) -> None:
        targets = self.config.targets()
        if not targets or not self.db_path.exists():
            return
        if self._conn is None:
            self._conn = outbox.connect(self.db_path)
        conn = self._conn
        now = time.time()
        new = [t for t in targets if t.id not in self._known]
        if new:
            outbox.ensure_targets(conn, new, now)
            self._known.update(t.id for t in new)
        latest = outbox.latest_event(conn)
        needy = []
        for state in outbox.target_states(conn, [t.id for t in targets]):
            if not outbox.is_stale(state, now, self.settings.lease_s):
                continue  # a live sender serves it
            if state.unsent:
                needy.append(state.id)
            elif state.cursor < latest:
                if outbox.has_candidates(conn, state.cursor):
                    needy.append(state.id)
                else:
                    outbox.skip_quiet(conn, state.id, state.cursor, latest)
        if not needy:
            return
        token = secrets.token_hex(8)
        if outbox.reserve(conn, needy, token, now, self.settings.lease_s):
            pid = spawn_sender(self.state_root, token)
            self.spawned.append(pid)
            log.info("started notification sender pid %s for %d target(s)", pid, len(needy))
