"""The sender process: ``python -m mcp_server.core.workflow.notifications.sender --state-dir D --token T``.

Started detached by a server's or sidecar's watch (see ``watch``) with a reserved lease. It
holds the leases of the targets it knows (heartbeat every poll), queues their messages from
the event feed, and sends each target's messages in order, one at a time per target, in a
small thread pool: a hanging endpoint holds up only its own queue, and only for the send
timeout. A failed send is retried with a doubling back-off up to a bound; the last failure
raises a ``notify`` alert on the run (so ``get_run`` shows it) and stays in the outbox for
``research-mcp notify list``. It exits after ``idle_s`` with nothing to do; any server or
sidecar starts a new one when there is news. Its log (``notify.log`` in the state dir)
names targets by their masked labels, never by URL.
"""

from __future__ import annotations

import argparse
import logging
import os
import signal
import socket
import sqlite3
import threading
import time
from collections.abc import Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import closing
from pathlib import Path
from typing import TYPE_CHECKING

from mcp_server.core.workflow.notifications import outbox
from mcp_server.core.workflow.notifications.settings import NotifySettings
from mcp_server.core.workflow.notifications.targets import NotifyConfig, Target

if TYPE_CHECKING:
    from mcp_server.core.services import Services

log = logging.getLogger("research_mcp.notify")

WORKERS = 4


class Sender:
    def __init__(self, state_root: Path, token: str, settings: NotifySettings | None = None) -> None:
        self.state_root = state_root
        self.db_path = state_root / "research.db"
        self.token = token
        self.settings = settings or NotifySettings.from_env()
        self.config = NotifyConfig(state_root)
        self.pid = os.getpid()
        self.host = socket.gethostname()
        self.who = f"{self.host}:{self.pid}:{token}"
        self.conn = outbox.connect(self.db_path)
        self.pool = ThreadPoolExecutor(max_workers=WORKERS, thread_name_prefix="notify-send")
        self.inflight: dict[str, Future[None]] = {}
        self.owned: list[str] = []
        self.stopping = threading.Event()
        self._services: Services | None = None
        self._services_lock = threading.Lock()

    def services(self) -> Services:
        with self._services_lock:
            if self._services is None:
                from mcp_server.core.services import Services

                self._services = Services(self.state_root)
            return self._services

    # ---- the loop ------------------------------------------------------------------------

    def run(self) -> str:
        last_busy = time.monotonic()
        next_hold = 0.0
        reason = "idle"
        try:
            while not self.stopping.is_set():
                now = time.time()
                targets = {t.id: t for t in self.config.targets()}
                if now >= next_hold:
                    self.owned = outbox.hold(
                        self.conn, list(targets), self.token, self.pid, self.host, now, self.settings.lease_s
                    )
                    next_hold = now + self.settings.poll_s
                    if not self.owned and not self.inflight:
                        reason = "no target to serve (another sender holds them, or none is configured)"
                        break
                try:
                    busy = self.tick([targets[i] for i in self.owned if i in targets], now)
                except sqlite3.Error as err:  # a store busy past its timeout: look again shortly
                    log.warning("could not read the outbox (%s); retrying", err)
                    busy = True
                if busy:
                    last_busy = time.monotonic()
                elif time.monotonic() - last_busy >= self.settings.idle_s:
                    break
                self.stopping.wait(self.settings.poll_s / 2)
            else:
                reason = "stopped by a signal"
        finally:
            self.pool.shutdown(wait=True)  # in-flight sends end within their timeout
            outbox.release(self.conn, self.owned, self.token)
            if self._services is not None:
                self._services.close()
            self.conn.close()
        return reason

    def tick(self, targets: list[Target], now: float) -> bool:
        """Queue news and start due sends; True while anything is queued, waiting or in flight."""
        busy = False
        outbox.reclaim_expired(self.conn, now)
        latest = outbox.latest_event(self.conn)
        states = {s.id: s for s in outbox.target_states(self.conn, [t.id for t in targets])}
        for target in targets:
            state = states.get(target.id)
            if state is None:
                continue
            if state.cursor < latest:
                queued, more = outbox.enqueue(self.conn, target, self.settings, now)
                busy = busy or more or queued > 0
            running = self.inflight.get(target.id)
            if running is not None and not running.done():
                busy = True
                continue
            self.inflight.pop(target.id, None)
            delivery = outbox.claim_next(self.conn, target.id, self.who, now, self.settings.claim_s)
            if delivery is not None:
                self.inflight[target.id] = self.pool.submit(self.deliver, target, delivery)
                busy = True
            elif state.unsent:
                busy = True  # a message waits for its back-off (or another sender's send)
        return busy

    # ---- one message ---------------------------------------------------------------------

    def deliver(self, target: Target, d: outbox.Delivery) -> None:
        from mcp_server.core.workflow.notifications import messages
        from mcp_server.core.workflow.notifications.deliver import send

        with closing(outbox.connect(self.db_path)) as conn:
            try:
                if d.title is None or d.body is None:
                    message = messages.render(self.services(), d)
                    d.title, d.body, d.level = message.title, message.body, message.level
                    outbox.save_text(conn, d.id, d.title, d.body, d.level)
                error = send(target.url, d.title, d.body, d.level, self.settings.timeout_s)
            except Exception as err:  # rendering read the store; a failure is retried like a send's
                log.warning("could not prepare %s for %s", d.key, target.label, exc_info=True)
                error = f"could not prepare the message: {type(err).__name__}"
            if error is None:
                outbox.finish(conn, d.id, self.who, state="sent")
                log.info("sent %s (%s) to %s", d.kind, d.key, target.label)
            elif d.attempts > self.settings.retries:
                outbox.finish(conn, d.id, self.who, state="failed", error=error)
                log.warning("gave up on %s (%s) to %s after %d tries: %s", d.kind, d.key, target.label,
                            d.attempts, error)  # fmt: skip
                self.alert_failure(target, d, error)
            else:
                wait = self.settings.backoff(d.attempts)
                outbox.finish(conn, d.id, self.who, state="pending", error=error, next_at=time.time() + wait)
                log.info("try %d of %s to %s failed (%s); next in %.1f s", d.attempts, d.key, target.label,
                         error, wait)  # fmt: skip

    def alert_failure(self, target: Target, d: outbox.Delivery, error: str) -> None:
        """Make the failure visible where people look: an alert on the run (get_run, list_alerts)."""
        from mcp_server.core.monitoring.alert_specs import IGNORE
        from mcp_server.core.monitoring.alerts import raise_alert

        try:
            with self.services().store.write() as s:
                raise_alert(
                    s,
                    run_id=d.run_id,
                    kind="notify",
                    severity="warning",
                    message=f"notification ({d.kind}) to {target.label} failed after {d.attempts} tries: "
                    f"{error}; see `research-mcp notify list`",
                    signature=f"notify:{target.id}:{d.kind}",
                    choices=(IGNORE,),
                    data={"target": target.label, "key": d.key, "error": error},
                )
        except Exception:
            log.exception("could not record the failed notification %s as an alert", d.key)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="research-mcp-notify", description="Send research-mcp notifications."
    )
    parser.add_argument("--state-dir", required=True)
    parser.add_argument("--token", required=True, help="the lease reservation this sender takes over")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    from mcp_server.core.paths import StateDir

    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s notify[%(process)d] %(levelname)s %(message)s"
    )
    sender = Sender(StateDir.open(args.state_dir).root, args.token)
    signal.signal(signal.SIGTERM, lambda *_: sender.stopping.set())
    log.info("sender started")
    reason = sender.run()
    log.info("sender exits: %s", reason)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
